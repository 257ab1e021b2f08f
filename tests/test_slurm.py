"""Runs on a real single-node SLURM cluster (../shared/services/slurm/start.sh).

Each SLURM job costs seconds of scheduling and polling, so these tests are few and run
whole trees. Skip them locally with -m "not slurm"; CI runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, TESTS_DIR, payload_bytes, run_snakemake
from trees import State, Train, build_lottery_tree

import dagger_wf as dg

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SERVICE = ROOT.parent / "shared" / "services" / "slurm"


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real cluster, started for the session (idempotent) and stopped after it."""
    if not (SERVICE / "start.sh").is_file():
        pytest.skip(f"no SLURM service at {SERVICE}")
    subprocess.run(["bash", str(SERVICE / "start.sh")], check=True, timeout=900)
    yield
    subprocess.run(["bash", str(SERVICE / "stop.sh")], check=False, timeout=300)


def _sacct_states(job_ids: list[str]) -> dict[str, str]:
    output = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|") for line in output.split())


def _example(*arguments: str, cwd) -> None:
    command = [sys.executable, str(ROOT / "examples" / "lottery_ticket.py"), *arguments]
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=600)


def test_example_tree_runs_as_slurm_jobs_and_matches_the_dask_run(slurm_cluster, tmp_path):
    # one seed's study: each SLURM job costs seconds
    small = ["--epochs", "1", "--finetune-epochs", "1", "--seeds", "1"]
    _example("--directory", "dask", "--scheduler", "single-threaded", *small, cwd=tmp_path)
    _example("--directory", "slurm", "--emit-snakefile", "Snakefile", *small, cwd=tmp_path)
    result = run_snakemake(tmp_path / "Snakefile", "slurm", timeout=900)
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", result.stdout + result.stderr)
    assert job_ids, "no job went through SLURM"
    assert set(_sacct_states(job_ids).values()) == {"COMPLETED"}
    manifest = json.loads((tmp_path / "slurm" / "workflow" / "manifest.json").read_text())
    groups = {state["group"] for state in manifest["states"].values()}
    assert len(job_ids) == len(groups) < len(manifest["states"]), "states not grouped into jobs"
    assert payload_bytes(tmp_path / "slurm") == payload_bytes(tmp_path / "dask")
    tree = dg.Experiment.restore(tmp_path / "slurm").graph
    assert len(tree) == 1 + 32  # the root; one seed: Initialise, Train, 6 prunings x 5 states
    assert {node.dagger.record.runner.split(":")[0] for node in tree.nodes} == {"slurm"}


class Overrun(dg.Recipe):
    """Runs past the one-minute time limit it asks for."""

    RESOURCES = {"runtime": 1}

    def run(self, state):
        import time

        time.sleep(300)
        return state


def test_a_job_past_its_time_limit_fails_its_state_saying_so(slurm_cluster, tmp_path):
    exp = dg.Experiment(tmp_path / "store", State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    healthy = Train(1, 0.1)(root)
    overrun = Overrun()(root)
    result = run_snakemake(exp.emit_snakefile(tmp_path / "Snakefile"), "slurm", check=False)
    assert result.returncode != 0
    tree = dg.Experiment.restore(tmp_path / "store").graph
    assert tree.node(healthy.key).dagger.status == "done"
    node = tree.node(overrun.key)
    assert node.dagger.status == "failed"
    assert "time limit" in node.dagger.error and "RESOURCES['runtime']" in node.dagger.error


def test_dask_jobqueue_slurm_cluster_runs_the_tree(slurm_cluster, tmp_path):
    jobqueue = pytest.importorskip("dask_jobqueue")
    distributed = pytest.importorskip("distributed")
    build_lottery_tree(tmp_path / "reference")[0].run()
    cluster = jobqueue.SLURMCluster(
        queue="debug",
        cores=1,
        processes=1,
        memory="1GB",
        walltime="00:10:00",
        python=sys.executable,
        scheduler_options={"host": "127.0.0.1"},
        job_script_prologue=[f"export PYTHONPATH={TESTS_DIR}{os.pathsep}$PYTHONPATH"],
        log_directory=str(tmp_path / "logs"),
    )
    try:
        cluster.scale(jobs=1)
        with distributed.Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            exp, promises = build_lottery_tree(tmp_path / "store")
            report = exp.run(client=client)
    finally:
        cluster.close()
    assert report.ran == {promise.key for promise in promises.values()}
    assert payload_bytes(tmp_path / "store") == payload_bytes(tmp_path / "reference")
    assert all(
        node.dagger.record.host for node in dg.Experiment.restore(tmp_path / "store").graph.nodes
    )
