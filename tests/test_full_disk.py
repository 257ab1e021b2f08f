"""A full disk, for real: a tmpfs of a few MiB under the experiment directory.

A run that fills the disk fails the states it cannot store, naming them and ENOSPC and
saying what to do; every state stored before is whole; nothing half-written is left that
reads as done or corrupt; after space is freed, a rerun computes only what is missing.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_snakemake
from trees import FillDisk, Grow, State, fill_disk

import dagger_wf as dg
from dagger_wf.errors import CorruptStateError
from dagger_wf.state import load_state
from dagger_wf.store import ExperimentStore

np = pytest.importorskip("numpy")

PAGE = 4096  # what a tmpfs hands out: a file of one byte takes a page
FULL_NOTE = "the disk is full (or the quota is used up). Free space there and run again"


class SmallDisk:
    """A tmpfs of its own, filled up by a filler file; freed by deleting it or growing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self, leave_bytes: int = 0) -> None:
        fill_disk(self.filler, leave_bytes)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def grow(self, size_mib: int) -> None:
        command = ["mount", "-o", f"remount,size={size_mib}m", str(self.path)]
        subprocess.run(command, check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 2 MiB tmpfs, unmounted after the test."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, and mounting one takes root on Linux")
    path = tmp_path / "disk"
    path.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where Grow leaves one line per computation (off the small disk)."""
    path = tmp_path / "visits"
    path.touch()
    monkeypatch.setenv("DAGGER_TEST_VISITS", str(path))
    return path


def log_losses(state):
    """A Function whose evaluation takes a few pages of the disk: it logs 200 values."""
    for step in range(200):
        state.dagger.log_metric("loss", 1 / (step + 1))


def _define(directory: Path, sizes_kib: list[list[int]], function: bool = False):
    """A root with one chain of Grow states per entry of ``sizes_kib`` (their arrays'
    sizes), the first of each evaluated by ``log_losses`` if ``function``; returns the
    experiment, the root's key, and each Grow state's array."""
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    arrays = {}
    for branch, sizes in enumerate(sizes_kib):
        promise = root
        for level, kib in enumerate(sizes):
            step = 10 * branch + level
            promise = Grow(step, kib)(promise)
            arrays[promise.key] = np.full(kib * 128, float(step))
            if function and level == 0:
                dg.Function(log_losses)(promise)
    return exp, root.key, arrays


def _whole_states(directory: Path, arrays: dict) -> set[str]:
    """The states stored in ``directory``, after checking that each loads with the bytes
    its recipe made, and that nothing half-written is left: no temporary file, no claim,
    no record or failure record that does not read, no done mark without its payload."""
    store = ExperimentStore(directory)
    stored = store.stored_keys()
    assert set(store.done_keys()) == stored
    for key in stored:
        state = load_state(store, key, State)
        if key in arrays:
            np.testing.assert_array_equal(state.weights, arrays[key])
    assert not [error for error in store.iter_attempts() if isinstance(error, CorruptStateError)]
    leftovers = [
        path
        for path in directory.rglob("*")
        if path.is_file() and (path.name.startswith(".") or path.parent.name == "running")
    ]
    assert leftovers == []
    return stored


def _visited(visits: Path) -> list[str]:
    """The keys Grow computed since the last call, sorted; forgets them."""
    keys = sorted(visits.read_text().split())
    visits.write_text("")
    return keys


def _notes(error: BaseException) -> str:
    return "\n".join(getattr(error, "__notes__", []))


def test_a_full_disk_fails_the_states_it_cannot_store_and_a_rerun_computes_only_those(
    small_disk, visits
):
    directory = small_disk.path / "experiment"
    tree = [[300, 300]] * 4  # 8 arrays of 300 KiB: 2.4 MB on a 2 MiB disk
    exp, root, arrays = _define(directory, tree)
    with pytest.raises(OSError) as raised:
        exp.run()

    assert raised.value.errno == errno.ENOSPC
    report = exp.last_run
    stored = _whole_states(directory, arrays)
    assert report.ran == stored and root in stored and len(stored) < 9
    assert report.failed and report.ran | report.failed | report.skipped == {root, *arrays}
    for event in report.failures:
        assert isinstance(event.error, OSError) and event.error.errno == errno.ENOSPC
        assert f"state {event.key[:12]} in {directory}: {FULL_NOTE}" in _notes(event.error)
        assert f"for state {event.key[:12]}: OSError: [Errno 28]" in _notes(raised.value)
    assert report.ran - {root} <= set(_visited(visits)) <= report.ran | report.failed

    small_disk.grow(8)
    rerun, _, _ = _define(directory, tree)
    again = rerun.run()
    assert again.cached == stored
    assert again.ran == {root, *arrays} - stored
    assert _visited(visits) == sorted(again.ran - {root})
    assert _whole_states(directory, arrays) == {root, *arrays}


WRITES = {
    "root <key> (roots/)",
    "experiment.json",
    "the snapshot <key> (code/)",
    "the claim on state <key> (running/)",
    "the snapshot <key> (environments/)",
    "the payload of state <key>",
    "the record of state <key>",
    "the failure record of state <key>",
    "an evaluation of state <key> (evaluations/)",
}


def test_wherever_the_disk_fills_up_the_run_says_what_it_could_not_write_and_loses_nothing(
    small_disk, visits
):
    """The disk is left one page fuller each time, until the run needs no more: so each
    of its writes, in turn, is the one that finds the disk full."""
    tree = [[64, 8], [8]]  # a blob, and payloads that hold their arrays inline
    failed_writes = set()
    for pages in itertools.count():
        directory = small_disk.path / f"experiment-{pages}"
        small_disk.fill(leave_bytes=pages * PAGE)
        exp, root, arrays = _define(directory, tree, function=True)
        try:
            exp.run()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            assert FULL_NOTE in _notes(error)
            texts = [_notes(error)]
            if exp.last_run is not None:  # it got as far as computing states
                failures = exp.last_run.failures
                assert all(event.key[:12] in _notes(error) for event in failures)
                texts += [event.traceback or "" for event in failures]
            for text in texts:
                for what in re.findall(rf"could not write (.+?) in {directory}", text):
                    failed_writes.add(re.sub("[0-9a-f]{12}", "<key>", what))
        else:
            assert pages > 0
            break
        finally:
            stored = _whole_states(directory, arrays)
            computed_before = _visited(visits)
            small_disk.free()
        again = _define(directory, tree, function=True)[0].run()
        assert again.cached == stored, pages
        assert again.ran == {root, *arrays} - stored, pages
        assert _visited(visits) == sorted(again.ran - {root}), pages
        assert computed_before == sorted(set(computed_before))
        assert _whole_states(directory, arrays) == {root, *arrays}
        shutil.rmtree(directory)
    assert failed_writes == WRITES


def test_a_claim_that_cannot_be_written_fails_its_state_and_the_run_goes_on(small_disk, visits):
    directory = small_disk.path / "experiment"
    first = _define(directory, [[8]])[0]
    first.run()
    _visited(visits)
    small_disk.fill()
    exp, _, arrays = _define(directory, [[8], [8, 8], [8]])
    with pytest.raises(OSError, match="No space left on device"):
        exp.run()

    report = exp.last_run
    new = {key for key in arrays if key not in first.plan.states}
    assert report.cached == set(first.plan.states)
    assert report.failed | report.skipped == new and len(report.failed) == 2
    for event in report.failures:
        assert f"could not write the claim on state {event.key[:12]} (running/)" in event.traceback
    assert not list((directory / "running").iterdir())  # no claim, no temporary claim file
    assert _visited(visits) == []

    small_disk.free()
    assert _define(directory, [[8], [8, 8], [8]])[0].run().ran == new
    assert _visited(visits) == sorted(new)


def test_a_failure_that_cannot_be_recorded_is_still_reported_and_its_claim_released(
    small_disk,
):
    directory = small_disk.path / "experiment"
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    filling = FillDisk(small_disk.filler)(root)
    with pytest.raises(ValueError, match="after the disk filled up") as raised:
        exp.run()

    [event] = exp.last_run.failures
    assert event.key == filling.key
    unrecorded = f"could not write the failure record of state {filling.key[:12]}"
    assert "The failure could not be recorded" in event.traceback
    assert unrecorded in event.traceback and unrecorded in _notes(raised.value)
    assert not list((directory / "running").iterdir())
    assert not list(directory.glob("failures/*/*"))
    assert _whole_states(directory, {}) == {root.key}


def test_new_tags_that_cannot_be_written_are_a_named_error_and_leave_the_record_whole(
    small_disk, visits
):
    directory = small_disk.path / "experiment"
    first, root, arrays = _define(directory, [[8]])
    first.run()
    small_disk.fill(leave_bytes=PAGE)  # room for the claim, not for the record as well
    exp = dg.Experiment(directory, State)
    with exp.tag("late"):
        exp.spawn_new_tree(dataset_name="d", model_name="m")
    with pytest.raises(OSError) as raised:
        exp.run()

    assert f"the tags of state {root[:12]} in {directory}: {FULL_NOTE}" in _notes(raised.value)
    assert _whole_states(directory, arrays) == set(first.plan.states)
    assert ExperimentStore(directory).read_record(root).tags == ()
    small_disk.free()
    exp.run()
    assert ExperimentStore(directory).read_record(root).tags == ("late",)


@pytest.mark.slow
def test_a_snakemake_job_on_a_full_disk_fails_naming_enospc_and_a_rerun_computes_the_rest(
    small_disk, visits, tmp_path
):
    directory = small_disk.path / "experiment"
    tree = [[300, 300]] * 4
    exp, root, arrays = _define(directory, tree)
    snakefile = exp.emit_snakefile(tmp_path / "Snakefile")
    result = run_snakemake(snakefile, "local", check=False)

    assert result.returncode != 0
    assert "No space left on device" in result.stderr and FULL_NOTE in result.stderr
    stored = _whole_states(directory, arrays)
    assert root in stored and len(stored) < 9
    _visited(visits)

    small_disk.grow(8)
    run_snakemake(snakefile, "local")
    assert _visited(visits) == sorted({*arrays} - stored)
    assert _whole_states(directory, arrays) == {root, *arrays}


SAME_DATA_SCRIPT = """
import sys

import numpy as np

import dagger_wf as dg


class Dataset(dg.ExperimentState):
    PROPERTIES = ["name"]
    NONHASHED_ATTRIBUTES = ["data"]

    def initialize_state(self, **kwargs):
        self.data = np.arange(9 * 2**17, dtype=np.float64)  # 9 MiB: one large blob


if __name__ == "__main__":
    exp = dg.Experiment(sys.argv[1], Dataset)
    exp.spawn_new_tree(name=sys.argv[2])
    exp.run()
"""


def test_a_large_buffer_stored_already_is_stored_on_a_full_disk_by_a_new_process(
    small_disk, tmp_path
):
    """Equal data made again by another process (another root, a Snakemake job) is the
    blob stored already: nothing of it needs writing, though that process hashed it
    while it tried to."""
    small_disk.grow(16)
    script = tmp_path / "same_data.py"
    script.write_text(SAME_DATA_SCRIPT)
    directory = small_disk.path / "exp"
    subprocess.run([sys.executable, str(script), str(directory), "first"], check=True)
    small_disk.fill(leave_bytes=256 * 1024)
    second = subprocess.run(
        [sys.executable, str(script), str(directory), "second"], capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    store = ExperimentStore(directory)
    assert len(store.stored_keys()) == 2
    assert len([path for path in store.blob_directory.rglob("*") if path.is_file()]) == 1
    assert not [path for path in directory.rglob(".*") if path.is_file()]
