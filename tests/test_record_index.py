"""The record index: a restore reads every record from one file of the user's cache, never
writes to the store, and never trusts the index over the records themselves (new,
retagged, damaged or removed states show as they are)."""

from __future__ import annotations

import os
import time

import pytest
from trees import Prune, build_lottery_tree

import dagger_wf as dg


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dagger_wf" / "record-index"


def files(directory):
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def restored(directory):
    tree = dg.Experiment.restore(directory, slim=True).graph
    return {node.sha(): (sorted(node.tags), node.recipe) for node in tree.nodes}


def test_a_restore_writes_the_index_in_the_cache_and_nothing_in_the_store(experiment_dir, cache):
    build_lottery_tree(experiment_dir)[0].run()
    stored = files(experiment_dir)
    first = restored(experiment_dir)
    assert len(list(cache.iterdir())) == 1
    assert restored(experiment_dir) == first
    assert len(first) == 5
    assert files(experiment_dir) == stored


def test_states_computed_after_the_index_was_written_are_restored(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    restored(experiment_dir)
    exp, promises = build_lottery_tree(experiment_dir)
    extra = Prune("random", 0.9)(promises["trained 0.1"])
    exp.run()
    assert extra.key in restored(experiment_dir)


def test_tags_added_after_the_index_was_written_are_restored(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    restored(experiment_dir)
    exp, promises = build_lottery_tree(experiment_dir)
    with exp.tag("baseline"):
        Prune("magnitude", 0.5)(promises["trained 0.1"])  # the same state, one more tag
    exp.run()
    tags, _ = restored(experiment_dir)[promises["pruned 0.1"].key]
    assert tags == ["baseline", "lr:0.1", "pruned"]


def test_a_record_damaged_after_the_index_was_written_is_reported_not_hidden(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    restored(experiment_dir)
    damaged = promises["pruned 0.01"].key
    record = experiment_dir / "states" / f"{damaged}.json"
    record.write_bytes(record.read_bytes()[:40])  # truncated in place: same file, cut
    with pytest.warns(dg.CorruptStateWarning, match=damaged[:12]):
        tree = dg.Experiment.restore(experiment_dir, slim=True).graph
    assert damaged not in {node.sha() for node in tree.nodes}
    assert [error.key for error in tree.corrupt] == [damaged]


def test_a_state_removed_after_the_index_was_written_is_not_restored(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    restored(experiment_dir)
    removed = promises["pruned 0.1"].key
    (experiment_dir / "states" / f"{removed}.json").unlink()
    assert removed not in restored(experiment_dir)
    assert len(restored(experiment_dir)) == 4


@pytest.mark.parametrize("index", ["garbage", "cut", "directory"])
def test_an_index_that_cannot_be_read_or_written_is_no_index(experiment_dir, cache, index):
    build_lottery_tree(experiment_dir)[0].run()
    expected = restored(experiment_dir)
    [path] = cache.iterdir()
    if index == "garbage":
        path.write_bytes(b"not a pickle at all")
    elif index == "cut":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.unlink()
        path.mkdir()  # cannot be read, nor replaced by a new index
    assert restored(experiment_dir) == expected
    assert restored(experiment_dir) == expected


def test_index_files_not_written_for_a_month_are_removed_when_another_is_written(tmp_path, cache):
    for name in ("a", "b"):
        build_lottery_tree(tmp_path / name)[0].run()
        restored(tmp_path / name)
    old, kept = sorted(cache.iterdir(), key=lambda path: path.stat().st_mtime)
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    build_lottery_tree(tmp_path / "c")[0].run()
    restored(tmp_path / "c")
    assert old not in set(cache.iterdir())
    assert kept in set(cache.iterdir())
