"""Everything read is verified: damage is named, recomputed by a run, skipped by a full
restore, found and repaired by ``dagger-wf verify``; a finished state is never lost to it
silently and a run is never aborted by it."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from conftest import TESTS_DIR, flip_byte, run_snakemake
from trees import Shift, build_array_tree

import dagger_wf as dg
from dagger_wf.store.payload import blob_digests, blob_path, read_payload
from dagger_wf.store.payload_format import read_header

np = pytest.importorskip("numpy")


def _payload(directory: Path, key: str) -> Path:
    return directory / "payloads" / f"{key}.payload"


def _own_blob(directory: Path, key: str, parent_key: str) -> Path:
    """The one blob the state ``key`` holds and its parent does not."""
    (digest,) = blob_digests(_payload(directory, key)) - blob_digests(
        _payload(directory, parent_key)
    )
    return blob_path(directory / "blobs", digest)


def _stored_bytes(directory: Path, key: str) -> bytes:
    """The payload of ``key`` and every blob it refers to, as stored."""
    payload = _payload(directory, key)
    blobs = sorted(blob_digests(payload))
    return payload.read_bytes() + b"".join(
        blob_path(directory / "blobs", digest).read_bytes() for digest in blobs
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _pickle_stream_offset(path: Path) -> int:
    """Where the pickle stream starts: after the header, 64-byte aligned."""
    header_size = read_header(path)[0].size
    return header_size + (-header_size % 64)


def _foreign_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))


# How each damage is done to the state "shifted", and what its error says.
DAMAGE = {
    "flipped byte in a blob": (lambda payload, blob: flip_byte(blob, 1000), "blob.*checksum"),
    "flipped byte in the pickle stream": (
        lambda payload, blob: flip_byte(payload, _pickle_stream_offset(payload) + 20),
        "pickle stream fails its checksum",
    ),
    "truncated payload": (lambda payload, blob: _truncate(payload), "truncated"),
    "deleted blob": (lambda payload, blob: blob.unlink(), "blob.*missing"),
    "foreign pickle": (lambda payload, blob: _foreign_pickle(payload), "payload marker"),
    "truncated blob": (lambda payload, blob: _truncate(blob), "blob.*holds"),
}
# What a cached check finds without reading the data: the rest is found on load.
FOUND_WITHOUT_LOADING = ["truncated payload", "deleted blob", "foreign pickle", "truncated blob"]


def _computed_then_damaged(directory: Path, damage: str) -> tuple[dict[str, str], bytes]:
    """The array tree, computed, then "shifted" damaged; the keys, and the bytes that
    "shifted" had."""
    exp, promises = build_array_tree(directory)
    exp.run()
    keys = {name: promise.key for name, promise in promises.items()}
    original = _stored_bytes(directory, keys["shifted"])
    blob = _own_blob(directory, keys["shifted"], keys["root"])
    DAMAGE[damage][0](_payload(directory, keys["shifted"]), blob)
    return keys, original


@pytest.mark.parametrize("damage", DAMAGE)
def test_loading_a_damaged_state_is_a_corrupt_state_error_naming_it_and_what_to_do(
    experiment_dir, damage
):
    keys, _ = _computed_then_damaged(experiment_dir, damage)
    node = dg.Experiment.restore(experiment_dir).graph.node(keys["shifted"])
    with pytest.raises(dg.CorruptStateError, match=DAMAGE[damage][1]) as caught:
        node.restore()
    message = str(caught.value)
    assert keys["shifted"] in message and "verify" in message and "--repair" in message
    assert caught.value.key == keys["shifted"]


@pytest.mark.parametrize("damage", FOUND_WITHOUT_LOADING)
def test_a_rerun_computes_again_only_the_damaged_state_with_a_warning_and_the_same_bytes(
    experiment_dir, damage
):
    keys, original = _computed_then_damaged(experiment_dir, damage)
    rerun, _ = build_array_tree(experiment_dir)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        report = rerun.run()
    assert report.ran == {keys["shifted"]}
    assert set(report.repaired) == {keys["shifted"]}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


@pytest.mark.parametrize("damage", FOUND_WITHOUT_LOADING)
def test_damage_done_after_cached_reruns_is_found_by_the_next_rerun_all_the_same(
    experiment_dir, damage
):
    """Cached reruns remember the looks they took (the record index): never past a change."""
    build_array_tree(experiment_dir)[0].run()
    for _ in range(2):
        assert build_array_tree(experiment_dir)[0].run().ran == set()
    keys = {name: promise.key for name, promise in build_array_tree(experiment_dir)[1].items()}
    original = _stored_bytes(experiment_dir, keys["shifted"])
    blob = _own_blob(experiment_dir, keys["shifted"], keys["root"])
    DAMAGE[damage][0](_payload(experiment_dir, keys["shifted"]), blob)
    rerun, _ = build_array_tree(experiment_dir)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        report = rerun.run()
    assert report.ran == {keys["shifted"]}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


def test_a_record_damaged_after_cached_reruns_is_found_by_the_next_rerun(experiment_dir):
    build_array_tree(experiment_dir)[0].run()
    for _ in range(2):
        assert build_array_tree(experiment_dir)[0].run().ran == set()
    rerun, promises = build_array_tree(experiment_dir)
    record = experiment_dir / "states" / f"{promises['shifted'].key}.json"
    record.write_bytes(record.read_bytes()[:-10])
    with pytest.warns(dg.CorruptStateWarning, match=promises["shifted"].key):
        assert rerun.run().ran == {promises["shifted"].key}


def test_a_rerun_computes_again_a_state_whose_record_is_damaged(experiment_dir):
    exp, promises = build_array_tree(experiment_dir)
    exp.run()
    keys = {name: promise.key for name, promise in promises.items()}
    original = _stored_bytes(experiment_dir, keys["shifted"])
    record = experiment_dir / "states" / f"{keys['shifted']}.json"
    record.write_text(record.read_text()[:40])
    rerun, _ = build_array_tree(experiment_dir)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        assert rerun.run().ran == {keys["shifted"]}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


def test_compute_of_a_child_of_a_damaged_state_warns_and_returns_the_child(experiment_dir):
    keys, _ = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        child = rerun.compute(promises["new child"].key)
    assert child.own[0] == 4.0 and child.data[7] == 7.0


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_parent_is_computed_again_and_its_new_child_computed_from_it(
    experiment_dir, damage
):
    keys, original = _computed_then_damaged(experiment_dir, damage)
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]) as caught:
        report = rerun.run()
    assert len([warning for warning in caught if keys["shifted"] in str(warning.message)]) == 1
    assert promises["new child"].key in report.ran
    assert report.ran <= {promises["new child"].key, keys["shifted"]}
    assert set(report.repaired) == {keys["shifted"]}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original
    child = dg.Experiment.restore(experiment_dir).graph.node(promises["new child"].key)
    child.restore()
    assert child.data[7] == 7.0 and child.own[0] == 4.0


def test_a_damaged_blob_that_every_state_shares_is_written_again_by_the_state_that_made_it(
    experiment_dir,
):
    exp, promises = build_array_tree(experiment_dir)
    exp.run()
    keys = {name: promise.key for name, promise in promises.items()}
    originals = {key: _stored_bytes(experiment_dir, key) for key in keys.values()}
    shared = hashlib.sha256(np.arange(20_000, dtype=np.float64).tobytes()).digest()  # data
    flip_byte(blob_path(experiment_dir / "blobs", shared), 1000)
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    with pytest.warns(dg.CorruptStateWarning, match=f"{keys['shifted']}|{keys['root']}"):
        report = rerun.run()
    assert report.ran == {promises["new child"].key}
    assert set(report.repaired) == {keys["shifted"], keys["root"]}  # the blob is the root's
    assert {key: _stored_bytes(experiment_dir, key) for key in keys.values()} == originals
    assert _verify(experiment_dir).returncode == 0


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_a_damaged_parent_found_by_a_worker_is_repaired_and_warned_about_here(
    experiment_dir, scheduler
):
    keys, original = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        report = rerun.run(scheduler=scheduler)
    assert report.ran == {promises["new child"].key}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original
    assert not list(experiment_dir.glob("running/*"))  # no claim, no plan file left


@pytest.mark.slow
def test_a_damaged_parent_found_on_a_distributed_worker_is_repaired_and_warned_about_here(
    experiment_dir, monkeypatch
):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))  # workers import the test recipes
    keys, original = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster) as client,
        pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]),
    ):
        report = rerun.run(client=client)
    assert report.ran == {promises["new child"].key}
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


def test_two_workers_finding_one_damaged_parent_compute_it_again_once(experiment_dir):
    keys, original = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    rerun, promises = build_array_tree(experiment_dir, extra_child=True)
    second_child = Shift(5)(promises["shifted"])
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        report = rerun.run(scheduler="threads")
    assert report.ran == {promises["new child"].key, second_child.key}
    assert [repair for event in report.events for repair in event.repaired] == [
        (keys["shifted"], report.repaired[keys["shifted"]])
    ]
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


EXTEND_THE_DAMAGED_STATE = textwrap.dedent(
    """
    import sys, warnings
    from trees import Shift, build_array_tree

    exp, promises = build_array_tree(sys.argv[1])
    Shift(10 + int(sys.argv[2]))(promises["shifted"])  # a child of its own
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp.run()
    print(sum("was damaged" in str(warning.message) for warning in caught))
    """
)


def test_two_processes_extending_one_damaged_state_compute_it_again_once(tmp_path):
    keys, original = _computed_then_damaged(tmp_path / "store", "flipped byte in a blob")
    script, visits = tmp_path / "extend.py", tmp_path / "visits.txt"
    script.write_text(EXTEND_THE_DAMAGED_STATE)
    environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "DAGGER_TEST_VISITS": str(visits)}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "store"), str(worker)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert sum(int(stdout.split()[-1]) for stdout, _ in outputs) == 1  # one warning in all
    assert visits.read_text().split().count(keys["shifted"]) == 1
    assert len(visits.read_text().split()) == 3  # it, and each process's new child
    assert _stored_bytes(tmp_path / "store", keys["shifted"]) == original


def test_a_function_on_a_damaged_state_runs_on_it_computed_again(experiment_dir):
    keys, original = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    rerun, promises = build_array_tree(experiment_dir)
    dg.Function(lambda state: {"first": float(state.own[0])})(promises["shifted"])
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        rerun.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(keys["shifted"])
    assert node.dagger.load_metric("first") == [(0, 1.0)]
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated payload", "flipped byte in a blob"])
def test_a_snakemake_job_computes_a_damaged_state_again_and_logs_the_warning(tmp_path, damage):
    keys, original = _computed_then_damaged(tmp_path / "store", damage)
    exp, promises = build_array_tree(tmp_path / "store", extra_child=True)
    result = run_snakemake(exp.emit_snakefile(tmp_path / "Snakefile"), "local")
    assert "CorruptStateWarning" in result.stderr and keys["shifted"] in result.stderr
    assert _stored_bytes(tmp_path / "store", keys["shifted"]) == original
    assert (tmp_path / "store" / "states" / f"{promises['new child'].key}.json").exists()


@pytest.mark.slow
def test_a_snakemake_job_computes_again_a_parent_whose_record_is_damaged(tmp_path):
    exp, promises = build_array_tree(tmp_path / "store")
    exp.run()
    shifted = promises["shifted"].key
    original = _stored_bytes(tmp_path / "store", shifted)
    record = tmp_path / "store" / "states" / f"{shifted}.json"
    record.write_text(record.read_text()[:40])
    rerun, promises = build_array_tree(tmp_path / "store", extra_child=True)
    result = run_snakemake(rerun.emit_snakefile(tmp_path / "Snakefile"), "local")
    assert "CorruptStateWarning" in result.stderr and shifted in result.stderr
    assert _stored_bytes(tmp_path / "store", shifted) == original
    assert dg.Experiment.restore(tmp_path / "store").graph.node(shifted).dagger.record is not None


def test_a_full_restore_skips_a_damaged_state_with_a_warning_and_loads_the_rest(experiment_dir):
    keys, _ = _computed_then_damaged(experiment_dir, "flipped byte in a blob")
    with pytest.warns(dg.CorruptStateWarning, match=keys["shifted"]):
        tree = dg.Experiment.restore(experiment_dir, slim=False).graph
    assert [error.key for error in tree.corrupt] == [keys["shifted"]]
    assert tree.node(keys["shifted"]).slim_loaded
    assert tree.node(keys["below"]).own[0] == 2.0 and tree.node(keys["beside"]).own[0] == 3.0


def _verify(directory: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "verify", str(directory), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("damage", DAMAGE)
def test_verify_names_the_damaged_state_and_repair_makes_the_next_run_compute_it(
    experiment_dir, damage
):
    keys, original = _computed_then_damaged(experiment_dir, damage)
    found = _verify(experiment_dir)
    assert found.returncode == 1
    assert f"damaged {keys['shifted']}" in found.stdout and "4 state(s)" in found.stdout
    assert "1 damaged" in found.stdout
    repaired = _verify(experiment_dir, "--repair")
    assert repaired.returncode == 1 and "removed 1 damaged state(s)" in repaired.stdout
    assert _verify(experiment_dir).returncode == 0
    rerun, _ = build_array_tree(experiment_dir)
    assert rerun.run().ran == {keys["shifted"]}  # no warning: nothing damaged is left
    assert _stored_bytes(experiment_dir, keys["shifted"]) == original
    assert _verify(experiment_dir).returncode == 0


def test_verify_of_a_sound_store_exits_0_and_of_a_non_experiment_2(experiment_dir, tmp_path):
    build_array_tree(experiment_dir)[0].run()
    sound = _verify(experiment_dir)
    assert sound.returncode == 0 and "0 damaged" in sound.stdout
    elsewhere = _verify(tmp_path / "nothing here")
    assert elsewhere.returncode == 2 and "NotAnExperimentError" in elsewhere.stderr


def _write_old_payload(path: Path, value: object, blob_directory: Path, version: int) -> None:
    """A payload as an older dagger_wf wrote it. Version 2, before checksums:
    "DWFPAYL2", pickle length and buffer count, then each buffer's length and sha256
    (zero: inline, 64-byte aligned). Version 3 adds crc32s: the pickle's after the
    count, each buffer's after its digest, and the header's at its end."""
    stream, buffers = io.BytesIO(), []
    pickle.Pickler(stream, protocol=5, buffer_callback=buffers.append).dump(value)
    raws = [buffer.raw() for buffer in buffers]
    pickled = stream.getvalue()
    entries, inline = [], []
    for raw in raws:
        if raw.nbytes >= 64 * 1024:
            digest = hashlib.sha256(raw).digest()
            blob = blob_path(blob_directory, digest)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(raw)
        else:
            digest = bytes(32)
            inline.append(bytes(raw))
        entry = struct.pack("<Q32s", raw.nbytes, digest)
        entries.append(entry + (struct.pack("<I", zlib.crc32(raw)) if version == 3 else b""))
    if version == 3:
        header = b"DWFPAYL3" + struct.pack("<QQI", len(pickled), len(raws), zlib.crc32(pickled))
        header += b"".join(entries)
        data = header + struct.pack("<I", zlib.crc32(header))
    else:
        data = b"DWFPAYL2" + struct.pack("<QQ", len(pickled), len(raws)) + b"".join(entries)
    for section in [pickled, *inline]:
        data += b"\0" * (-len(data) % 64) + section
    path.write_bytes(data)


@pytest.mark.parametrize(("version", "found_by"), [(2, "sha256"), (3, "checksum")])
def test_a_payload_of_an_older_version_still_loads_and_its_blobs_are_checked(
    tmp_path, version, found_by
):
    value = {"big": np.arange(20_000.0), "small": np.ones(3), "name": "old"}
    _write_old_payload(tmp_path / "old.payload", value, tmp_path / "blobs", version)
    loaded = read_payload(tmp_path / "old.payload", tmp_path / "blobs")
    np.testing.assert_array_equal(loaded["big"], value["big"])
    np.testing.assert_array_equal(loaded["small"], value["small"])
    assert loaded["name"] == "old"
    (blob,) = (tmp_path / "blobs").glob("*/*")
    flip_byte(blob, 500)
    with pytest.raises(dg.CorruptStateError, match=found_by):
        read_payload(tmp_path / "old.payload", tmp_path / "blobs")


def test_a_version_3_payload_with_a_changed_inline_byte_is_damaged(tmp_path):
    value = {"small": np.ones(3), "name": "old"}
    _write_old_payload(tmp_path / "old.payload", value, tmp_path / "blobs", 3)
    flip_byte(tmp_path / "old.payload", (tmp_path / "old.payload").stat().st_size - 3)
    with pytest.raises(dg.CorruptStateError, match="checksum"):
        read_payload(tmp_path / "old.payload", tmp_path / "blobs")


def test_a_restored_state_extended_and_then_damaged_fails_its_children_naming_it(
    experiment_dir,
):
    from trees import Prune, State, Train

    exp = dg.Experiment(experiment_dir, State)
    Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    restored = dg.Experiment.restore(experiment_dir)
    (trained,) = restored.root.children
    pruned = Prune("magnitude", 0.5)(trained.to_promise())
    _truncate(_payload(experiment_dir, trained.sha()))
    # The restored experiment knows the state by its key only: it cannot compute it again.
    with pytest.raises(dg.StateNotComputedError, match=f"{trained.sha()[:12]}.*damaged"):
        restored.run()
    assert restored.last_run.skipped == {pruned.key}
