"""The durable option: a state is on the disk, files and names, before it counts as done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_snakemake
from trees import State, Weights

import dagger_wf as dg


@pytest.fixture
def flushed(monkeypatch):
    """The path of every file and directory flushed with fsync, in order (the real
    fsync still runs)."""
    paths: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor):
        paths.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def _first(paths, directory: Path, name_part: str) -> int:
    return next(
        index
        for index, path in enumerate(paths)
        if Path(path).parent == directory and name_part in Path(path).name
    )


def test_a_durable_experiment_flushes_payload_blobs_and_names_before_the_done_mark(
    experiment_dir, flushed
):
    exp = dg.Experiment(experiment_dir, State, durable=True)
    heavy = Weights(3)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    states, payloads = experiment_dir / "states", experiment_dir / "payloads"
    record = _first(flushed, states, heavy.key)
    payload = _first(flushed, payloads, heavy.key)
    assert str(states) in flushed[record + 1 :]  # the record's name, after its bytes
    assert str(payloads) in flushed[payload + 1 : record]  # the payload's, before both
    assert any("/blobs/" in path for path in flushed[:payload])


def test_an_experiment_is_not_durable_unless_asked(experiment_dir, flushed):
    exp = dg.Experiment(experiment_dir, State)
    Weights(3)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    assert flushed == []


@pytest.mark.slow
def test_an_emitted_workflow_stores_as_durably_as_its_experiment(tmp_path):
    exp = dg.Experiment(tmp_path / "store", State, durable=True)
    Weights(3)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    snakefile = exp.emit_snakefile(tmp_path / "Snakefile")
    settings = json.loads(Path(f"{snakefile}.dagger_wf.yaml").read_text())
    assert settings["durable"] is True
    run_snakemake(snakefile, "local")
    assert len(dg.Experiment.restore(tmp_path / "store").graph) == 2
