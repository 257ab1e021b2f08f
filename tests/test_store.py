"""The store: atomic, crash-safe, payloads apart from metadata, few copies."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import flip_byte
from trees import build_lottery_tree

import dagger_wf as dg
from dagger_wf.store.payload import read_payload, write_payload


def test_payload_round_trips_numpy_and_torch_without_extra_copies(tmp_path):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    payload = {
        "array": np.arange(1000, dtype=np.float64).reshape(10, 100),
        "tensor": torch.arange(1000, dtype=torch.float32),
        "transposed": torch.ones(3, 5).t(),
        "bfloat": torch.ones(4, dtype=torch.bfloat16),
        "module": torch.nn.Linear(3, 2),
        "plain": {"a": [1, 2.5, "x"]},
    }
    write_payload(tmp_path / "p", payload, tmp_path / "blobs")
    loaded = read_payload(tmp_path / "p", tmp_path / "blobs")
    np.testing.assert_array_equal(loaded["array"], payload["array"])
    assert torch.equal(loaded["tensor"], payload["tensor"])
    assert torch.equal(loaded["transposed"], payload["transposed"])
    assert torch.equal(loaded["bfloat"], payload["bfloat"])
    assert torch.equal(loaded["module"].weight, payload["module"].weight)
    assert loaded["module"].weight.requires_grad
    assert loaded["plain"] == payload["plain"]
    assert loaded["array"].flags.writeable and loaded["tensor"].numpy().flags.writeable


def test_loaded_arrays_are_aligned_views_into_the_one_buffer_read_from_the_file(tmp_path):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    payload = {"array": np.ones(5000), "tensor": torch.ones(7000)}
    size = write_payload(tmp_path / "p", payload, tmp_path / "blobs")
    loaded = read_payload(tmp_path / "p", tmp_path / "blobs")
    distance = loaded["tensor"].data_ptr() - loaded["array"].ctypes.data
    assert 0 < distance < size
    assert distance % 64 == 0


def test_a_large_array_inherited_by_many_states_is_stored_once(tmp_path):
    np = pytest.importorskip("numpy")
    array = np.random.default_rng(0).random(1_000_000)
    for name in ["first", "second", "third"]:
        write_payload(tmp_path / name, {"data": array, "name": name}, tmp_path / "blobs")
    stored = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    assert stored < array.nbytes + 3 * 4096
    np.testing.assert_array_equal(
        read_payload(tmp_path / "third", tmp_path / "blobs")["data"], array
    )


def test_missing_blob_is_a_corrupt_state_error(tmp_path):
    np = pytest.importorskip("numpy")
    write_payload(tmp_path / "p", {"data": np.zeros(100_000)}, tmp_path / "blobs")
    for blob in (tmp_path / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    with pytest.raises(dg.CorruptStateError, match="blob"):
        read_payload(tmp_path / "p", tmp_path / "blobs")


def test_slim_restore_never_reads_a_payload(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    for payload in experiment_dir.glob("payloads/*"):
        payload.unlink()
    tree = dg.Experiment.restore(experiment_dir, slim=True).graph
    assert len(tree) == 5
    assert tree.node(promises["trained 0.1"].key).recipe.lr == 0.1


def test_fully_cached_run_without_functions_reads_no_payload_past_its_header(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    for payload in experiment_dir.glob("payloads/*"):  # found damaged only if read whole
        flip_byte(payload, -1)
    rerun, _ = build_lottery_tree(experiment_dir)
    rerun.plan.states[promises["trained 0.1"].key].functions.clear()
    rerun.plan.states[promises["trained 0.01"].key].functions.clear()
    assert rerun.run().ran == set()


def test_full_restore_loads_every_payload(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    tree = dg.Experiment.restore(experiment_dir, slim=False).graph
    assert all(len(node.weights) == 4 for node in tree.nodes)


def test_writes_leave_no_temporary_files(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    assert not [path for path in experiment_dir.rglob("*") if path.name.startswith(".")]


SLOW_TREE = textwrap.dedent(
    """
    import sys, time
    import dagger_wf as dg

    class State(dg.ExperimentState):
        PROPERTIES = ["name"]
        NONHASHED_ATTRIBUTES = ["blob"]
        def initialize_state(self, **kwargs):
            self.blob = b""

    class Grow(dg.Recipe):
        PROPERTIES = ["step"]
        def __init__(self, step):
            self.step = step
        def run(self, state):
            time.sleep(0.05)
            state.blob = state.blob[:1000] + bytes([self.step]) * 3_000_000
            return state

    def define(directory):
        exp = dg.Experiment(directory, State)
        promise = exp.spawn_new_tree(name="slow")
        for step in range(40):
            promise = Grow(step)(promise)
        return exp

    if __name__ == "__main__":
        define(sys.argv[1]).run()
    """
)


def test_kill_9_mid_run_leaves_whole_states_and_resume_computes_the_rest(tmp_path):
    script = tmp_path / "slow_tree.py"
    script.write_text(SLOW_TREE)
    directory = tmp_path / "experiment"
    process = subprocess.Popen([sys.executable, str(script), str(directory)])
    deadline = time.monotonic() + 60
    while len(list(directory.glob("states/*.json"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {path.stem for path in directory.glob("states/*.json")}
    assert 6 <= len(done_before) < 41

    for key in done_before:  # every state that counts as done is whole
        tree_node = read_payload(directory / "payloads" / f"{key}.payload", directory / "blobs")
        assert isinstance(tree_node["blob"], bytes)

    sys.path.insert(0, str(tmp_path))
    try:
        import slow_tree

        report = slow_tree.define(directory).run()
    finally:
        sys.path.remove(str(tmp_path))
    assert report.cached == done_before
    assert len(report.ran) == 41 - len(done_before)


class Large(dg.ExperimentState):
    """A payload above the size whose new blobs are hashed while they are written."""

    PROPERTIES = ["name"]
    NONHASHED_ATTRIBUTES = ["data"]

    def initialize_state(self, **kwargs):
        import numpy as np

        self.data = np.arange(2**21, dtype=np.float64)  # 16 MiB


class Bump(dg.Recipe):
    PROPERTIES = ["by"]

    def __init__(self, by):
        self.by = by

    def run(self, state):
        if self.by:
            state.data = state.data + self.by
        return state


@pytest.mark.parametrize("durable", [False, True])
def test_large_buffers_are_stored_once_each_under_their_sha256(tmp_path, durable):
    """A changed buffer is a new blob; one a child inherits unchanged is its parent's."""
    import hashlib

    import numpy as np

    exp = dg.Experiment(tmp_path / "exp", state_class=Large, durable=durable)
    root = exp.spawn_new_tree(name="large")
    unchanged, changed = Bump(0)(root), Bump(1)(root)
    exp.run()
    blobs = [path for path in (tmp_path / "exp" / "blobs").rglob("*") if path.is_file()]
    original = np.arange(2**21, dtype=np.float64)
    assert sorted(path.name for path in blobs) == sorted(
        hashlib.sha256(data.tobytes()).hexdigest() for data in (original, original + 1)
    )
    tree = dg.Experiment.restore(tmp_path / "exp", Large, slim=False).graph
    np.testing.assert_array_equal(tree.node(unchanged.key).data, original)
    np.testing.assert_array_equal(tree.node(changed.key).data, original + 1)
    assert not list((tmp_path / "exp").rglob("*.partial"))
