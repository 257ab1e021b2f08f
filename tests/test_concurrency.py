"""Several processes on one store at once: nothing one of them finished is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

from conftest import TESTS_DIR

import dagger_wf as dg
from dagger_wf.store import ExperimentStore
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
        if state.record.code:  # a root has no recipe code
            load_snapshot(directory, CODE, state.record.code)
        load_snapshot(directory, ENVIRONMENTS, state.record.environment)
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
