"""Several processes on one store at once: nothing one of them finished is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from conftest import TESTS_DIR, run_snakemake
from trees import State

import dagger_wf as dg
from dagger_wf.runners.transition import worker_description
from dagger_wf.store import ExperimentStore
from dagger_wf.store.claims import EXPIRY_S, HEARTBEAT_S, try_claim
from dagger_wf.store.gc import find_garbage, remove_garbage
from dagger_wf.store.layout import CODE, ENVIRONMENTS
from dagger_wf.store.snapshots import load_snapshot

SPAWN_OWN_ROOTS = textwrap.dedent(
    """
    import sys
    import dagger_wf as dg
    from trees import State, Train

    directory, worker = sys.argv[1], sys.argv[2]
    for round in range(3):
        exp = dg.Experiment(directory, State)
        root = exp.spawn_new_tree(dataset_name=f"w{worker}-r{round}", model_name="m")
        Train(1, 0.1)(root)
        exp.run()
    """
)


def test_processes_spawning_their_own_roots_at_once_lose_no_root_and_gc_keeps_every_state(
    tmp_path,
):
    script = tmp_path / "spawn.py"
    script.write_text(SPAWN_OWN_ROOTS)
    environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "store"), str(worker)],
            env=environment,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(6)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr
    tree = dg.Experiment.restore(tmp_path / "store").graph
    assert len(tree.root_keys) == 18
    assert len(tree) == 36
    assert find_garbage(ExperimentStore(tmp_path / "store")).states == []


RUN_SLOW_TREE = textwrap.dedent(
    """
    import sys
    import dagger_wf as dg
    from trees import Sleep, State, Weights

    exp = dg.Experiment(sys.argv[1], State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    for size in range(4):
        Sleep(0.5)(Weights(size)(root))
    exp.run()
    """
)


def _old(path):
    stale = time.time() - 2 * 3600
    os.utime(path, (stale, stale))


def _gc_until_done(worker, store):
    while worker.poll() is None:
        remove_garbage(find_garbage(store))
    _, stderr = worker.communicate()
    assert worker.returncode == 0, stderr


def _everything_loads(directory):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = dg.Experiment.restore(directory, slim=False).graph
    store = ExperimentStore(directory)
    for state in tree.nodes:
        if state.dagger.record.code:  # a root has no recipe code
            load_snapshot(directory, CODE, state.dagger.record.code)
        load_snapshot(directory, ENVIRONMENTS, state.dagger.record.environment)
        assert store.load_payload(state.sha()) is not None
    return tree


def test_gc_in_a_loop_beside_a_run_and_a_resumed_run_deletes_nothing_they_use(tmp_path):
    store = ExperimentStore(tmp_path / "store")
    script = tmp_path / "slow.py"
    script.write_text(RUN_SLOW_TREE)
    environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}

    def start():
        command = [sys.executable, str(script), str(store.directory)]
        return subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)

    _gc_until_done(start(), store)
    assert len(_everything_loads(store.directory)) == 9
    # Resume after losing the states (not their blobs and snapshots, now old orphans):
    # the rerun stores the same arrays again, reusing those files while gc runs.
    for path in [*store.directory.glob("states/*"), *store.directory.glob("payloads/*")]:
        path.unlink()
    for path in [*store.directory.glob("blobs/*/*"), *store.directory.glob("code/*")]:
        _old(path)
    for path in store.directory.glob("environments/*"):
        _old(path)
    _gc_until_done(start(), store)
    assert len(_everything_loads(store.directory)) == 9


OVERLAPPING_BRANCHES = textwrap.dedent(
    """
    import os
    import sys
    import dagger_wf as dg
    from trees import State, Visit, gather

    def define(directory, tag):
        # One script run by every process at once: each run's own branches stay in the
        # current tree, since the runs overlap in time (gather makes sure they do).
        exp = dg.Experiment(directory, State)
        root = exp.spawn_new_tree(dataset_name="d", model_name="m")
        with exp.tag(tag):
            for branch in range(4):  # shared by every process
                Visit(0.05, f"own {tag}")(Visit(0.3, branch)(root))
        if "DAGGER_TEST_PROCESSES" in os.environ:
            dg.Function(gather)(root)
        return exp

    if __name__ == "__main__":
        directory, tag, runner = sys.argv[1:]
        exp = define(directory, tag)
        if runner == "snakemake":
            exp.emit_snakefile(sys.argv[1] + "-Snakefile")
        else:
            exp.run(scheduler="threads")
    """
)


def _overlapping(tmp_path):
    """A script defining a tree whose shared branches every process computes, tagged
    with the process's tag, and its environment (visits are logged to a file)."""
    (tmp_path / "overlapping.py").write_text(OVERLAPPING_BRANCHES)
    visits = tmp_path / "visits.txt"
    visits.touch()
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(tmp_path)]),
        "DAGGER_TEST_VISITS": str(visits),
    }
    return visits, environment


def _start(tmp_path, environment, tag, runner="dask"):
    command = [sys.executable, str(tmp_path / "overlapping.py"), str(tmp_path / "store")]
    return subprocess.Popen(
        [*command, tag, runner], env=environment, stderr=subprocess.PIPE, text=True
    )


def _finish(worker):
    _, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr


def _shared_and_own(tree):
    shared = [node for node in tree.nodes if node.parent is not None and node.children]
    return shared, [node for node in tree.nodes if node.parent is not None and not node.children]


@pytest.mark.parametrize("processes", [2, 6])
def test_processes_on_overlapping_branches_compute_each_state_once_and_keep_every_tag(
    tmp_path, processes
):
    visits, environment = _overlapping(tmp_path)
    (tmp_path / "gathered").mkdir()
    environment["DAGGER_TEST_GATHER"] = str(tmp_path / "gathered")
    environment["DAGGER_TEST_PROCESSES"] = str(processes)
    tags = [f"p{index}" for index in range(processes)]
    workers = [_start(tmp_path, environment, tag) for tag in tags]
    for worker in workers:
        _finish(worker)
    computed = visits.read_text().split()
    assert len(computed) == len(set(computed)) == 4 + processes * 4
    tree = _everything_loads(tmp_path / "store")
    shared, own = _shared_and_own(tree)
    assert all(set(node.tags) == set(tags) for node in shared)
    assert sorted(len(node.tags) for node in own) == [1] * processes * 4


def test_snakemake_and_dask_at_once_compute_each_state_once_and_delete_nothing(tmp_path):
    visits, environment = _overlapping(tmp_path)
    _finish(_start(tmp_path, environment, "snake", runner="snakemake"))
    snakefile = tmp_path / "store-Snakefile"
    profile = str(TESTS_DIR.parent / "profiles" / "local")
    snakemake = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--profile", profile, "--snakefile", str(snakefile)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not visits.read_text() and time.monotonic() < deadline:  # its DAG is built
        time.sleep(0.05)
    _finish(_start(tmp_path, environment, "dask"))
    output, _ = snakemake.communicate(timeout=300)
    assert snakemake.returncode == 0, output
    computed = visits.read_text().split()
    assert len(computed) == len(set(computed)) == 4 + 2 * 4
    tree = _everything_loads(tmp_path / "store")
    assert len(tree) == 1 + 4 + 2 * 4
    shared, _ = _shared_and_own(tree)
    assert all(set(node.tags) == {"snake", "dask"} for node in shared)
    # Everything is stored now: Snakemake, even told to rerun all, stores nothing anew.
    records = {path: path.read_bytes() for path in (tmp_path / "store").glob("states/*")}
    run_snakemake(snakefile, "local", "--forceall")
    assert {path: path.read_bytes() for path in (tmp_path / "store").glob("states/*")} == records
    assert len(visits.read_text().split()) == len(computed)


HOLD_A_CLAIM = textwrap.dedent(
    """
    import sys, time
    from dagger_wf.runners.transition import worker_description
    from dagger_wf.store import ExperimentStore

    directory, key, seconds, released = sys.argv[1:]
    with ExperimentStore(directory).claim(key, worker_description("dask")):
        print("held", flush=True)
        time.sleep(float(seconds))
        open(released, "w").close()
    """
)


def _holder(tmp_path, key, seconds):
    """A process holding the claim on ``key`` for ``seconds``, once it has it."""
    script = tmp_path / "hold.py"
    script.write_text(HOLD_A_CLAIM)
    command = [sys.executable, str(script), str(tmp_path / "store"), key, str(seconds)]
    holder = subprocess.Popen(
        [*command, str(tmp_path / "released")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_claim_held_by_a_live_process_is_waited_for(tmp_path):
    holder = _holder(tmp_path, "a" * 64, 1.0)
    with ExperimentStore(tmp_path / "store").claim("a" * 64, worker_description("dask")):
        assert (tmp_path / "released").exists()
    holder.wait(timeout=60)


def test_the_claim_of_a_killed_process_is_taken_at_once(tmp_path):
    holder = _holder(tmp_path, "b" * 64, 600)
    holder.kill()
    holder.wait(timeout=60)
    start = time.monotonic()
    with ExperimentStore(tmp_path / "store").claim("b" * 64, worker_description("dask")):
        assert time.monotonic() - start < 5
    assert not (tmp_path / "released").exists()


def test_a_claim_left_empty_by_an_owner_killed_as_it_wrote_it_is_taken_a_heartbeat_later(
    tmp_path,
):
    store = ExperimentStore(tmp_path / "store")
    path = store.running_path("e" * 64)
    path.parent.mkdir(parents=True)
    path.touch()  # created (O_EXCL), its owner gone before the document was written
    assert try_claim(path, worker_description("dask")) is None  # may be being written now
    late = time.time() - HEARTBEAT_S - 1
    os.utime(path, (late, late))
    taken = try_claim(path, worker_description("dask"))
    assert taken is not None and len(store.running_markers()) == 1  # whole, readable now
    taken.release()
    assert store.running_markers() == []


def test_a_claim_of_another_host_holds_until_its_heartbeat_is_overdue(tmp_path):
    store = ExperimentStore(tmp_path / "store")
    path = store.running_path("c" * 64)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "another-node", "pid": 1, "key": "c" * 64}))
    assert try_claim(path, worker_description("dask")) is None
    overdue = time.time() - EXPIRY_S - 1
    os.utime(path, (overdue, overdue))
    taken = try_claim(path, worker_description("dask"))
    assert taken is not None and store.running_markers()[0]["host"] != "another-node"
    taken.release()
    assert store.running_markers() == []


def test_tags_added_from_many_threads_at_once_are_all_kept(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    exp.run()
    store = ExperimentStore(experiment_dir)

    def tag(index):
        with store.claim(root.key, worker_description("dask")):
            store.add_tags(root.key, [f"t{index}"])

    threads = [threading.Thread(target=tag, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(store.read_record(root.key).tags) == {f"t{index}" for index in range(20)}


KEEP_A_CLAIM_FRESH = textwrap.dedent(
    """
    import os, sys, time
    from dagger_wf.runners.transition import worker_description
    from dagger_wf.store import ExperimentStore, claims

    claims.HEARTBEAT_S = 0.1
    store = ExperimentStore(sys.argv[1])
    with store.claim("d" * 64, worker_description("dask")):
        long_ago = time.time() - 3600
        os.utime(store.running_path("d" * 64), (long_ago, long_ago))
        time.sleep(1.0)
        print(time.time() - store.running_path("d" * 64).stat().st_mtime)
    """
)


def test_a_held_claim_is_kept_fresh_by_its_heartbeat(tmp_path):
    script = tmp_path / "fresh.py"
    script.write_text(KEEP_A_CLAIM_FRESH)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(result.stdout) < 1.0


def test_a_claim_this_process_gave_up_mid_way_is_taken_again_at_once(tmp_path):
    store = ExperimentStore(tmp_path / "store")
    store.claim("e" * 64, worker_description("dask")).abandon()  # as an interrupt does
    assert store.running_markers()[0]["key"] == "e" * 64
    start = time.monotonic()
    with store.claim("e" * 64, worker_description("dask")):
        assert time.monotonic() - start < 1
