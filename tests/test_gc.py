"""gc removes exactly what its dry run lists, and a gc killed anywhere leaves a store
that the next gc finishes cleaning, with every reachable state whole."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from trees import Explode, State

import dagger_wf as dg
from dagger_wf.store import ExperimentStore
from dagger_wf.store.gc import find_garbage, remove_garbage

TWO_HOURS_AGO = time.time() - 7200


class Heavy(dg.Recipe):
    """Stores an array large enough to be a blob of its own."""

    PROPERTIES = ["seed"]

    def __init__(self, seed):
        self.seed = seed

    def run(self, state):
        import numpy as np

        state.weights = np.random.default_rng(self.seed).random(20_000)
        return state


def _store_with_garbage(directory: Path) -> Path:
    """A tree one branch of which lost its first state, so the rest of that branch is
    unreachable (computed states, a failed attempt, their blobs); plus an old orphan
    snapshot and an old temporary file."""
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    Heavy(9)(Heavy(0)(root))
    lost = Heavy(1)(root)
    for seed in (2, 3, 4):
        Heavy(seed)(lost)
    Explode()(lost)
    with contextlib.suppress(ValueError):
        exp.run()
    store = ExperimentStore(directory)
    store.record_path(lost.key).unlink()
    store.payload_path(lost.key).unlink()
    (directory / "code" / "0123.json").write_text("{}")
    (directory / "payloads" / ".gone.x1.partial").write_text("half")
    for path in directory.rglob("*"):
        if path.is_file() and path.parent.name != "roots":
            os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return directory


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


def _gc(directory: Path, *arguments: str) -> list[Path]:
    """``dagger-wf gc`` as a user runs it; the files it says it removes (or would)."""
    result = subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "gc", str(directory), *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [
        Path(line.split(" ", 2)[-1]).resolve()
        for line in result.stdout.splitlines()
        if line.startswith(("would remove /", "removed /"))
    ]


def _every_reachable_state_loads(directory: Path) -> int:
    """How many states the root reaches, after checking that each of them loads."""
    reached, frontier = [], [dg.Experiment.restore(directory, slim=False).graph.root]
    while frontier:
        node = frontier.pop()
        reached.append(node)
        frontier += node.children
    assert all(node.weights is not None for node in reached)
    return len(reached)


def test_a_dry_run_lists_exactly_what_gc_then_removes(tmp_path):
    directory = _store_with_garbage(tmp_path / "store").resolve()
    before = _files(directory)
    listed = _gc(directory, "--dry-run")
    assert _files(directory) == before
    removed = _gc(directory)
    assert removed == listed
    assert before - _files(directory) == set(listed)
    names = {path.relative_to(directory).parts[0] for path in listed}
    assert names == {"states", "payloads", "failures", "blobs", "code"}
    assert sum(path.parent.name == "states" for path in listed) == 3
    assert _every_reachable_state_loads(directory) == 3
    assert _gc(directory, "--dry-run") == []


def _gc_killed_after(directory: Path, operations: int) -> bool:
    """Run gc in a child process that kill -9s itself right after its ``operations``-th
    removal or move of a file; whether it was killed before finishing."""
    child = os.fork()
    if child == 0:
        done = 0

        def then_die(operation):
            def wrapped(*arguments, **keywords):
                nonlocal done
                operation(*arguments, **keywords)
                done += 1
                if done == operations:
                    os.kill(os.getpid(), signal.SIGKILL)

            return wrapped

        os.unlink, os.rename, os.replace = map(then_die, (os.unlink, os.rename, os.replace))
        store = ExperimentStore(directory)
        remove_garbage(find_garbage(store))
        os._exit(0)
    _, status = os.waitpid(child, 0)
    return os.WIFSIGNALED(status)


def test_a_gc_killed_at_any_point_leaves_a_store_the_next_gc_finishes(tmp_path):
    template = _store_with_garbage(tmp_path / "template")
    expected = shutil.copytree(template, tmp_path / "expected")
    remove_garbage(find_garbage(ExperimentStore(expected)))
    wanted = {path.relative_to(expected) for path in _files(expected)}
    for operations in range(1, 100):
        directory = shutil.copytree(template, tmp_path / f"killed-after-{operations}")
        killed = _gc_killed_after(directory, operations)
        assert _every_reachable_state_loads(directory) == 3
        remove_garbage(find_garbage(ExperimentStore(directory)))
        assert {path.relative_to(directory) for path in _files(directory)} == wanted
        if not killed:
            break
    assert operations > 15, "gc finished sooner than expected: kill points untested"


def test_a_shared_file_a_run_reuses_while_gc_checks_it_is_kept(tmp_path):
    directory = _store_with_garbage(tmp_path / "store")
    garbage = find_garbage(ExperimentStore(directory))
    blobs = [path for path in garbage.files if path.parent.parent.name == "blobs"]
    os.utime(blobs[0])  # a run stores the same array again, reusing the blob
    removed = remove_garbage(garbage)
    assert blobs[0].is_file() and blobs[0] not in removed
    assert set(blobs[1:]) <= set(removed)
