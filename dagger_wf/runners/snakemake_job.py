"""The job side of the Snakemake workflow: what a rule's ``run:`` block calls.

Runs inside the Snakemake process (locally) or inside the cluster job's Snakemake process,
computes one state with the very code the Dask runner uses, and raises on failure so that
Snakemake marks the job failed (its target stays missing; --keep-going runs the rest).
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import cloudpickle

from ..errors import RecipeFailedError
from ..events import FAILURES, EventKind
from ..plan import Plan
from ..store import ExperimentStore
from ..store.atomic import atomic_write_json
from .snakemake import SPECS_FILE
from .transition import apply_function, compute_state, failure_record


@functools.cache
def _load_plan(specs_path: Path, modified: float) -> Plan:
    """The emitted plan; cached per process, so a group job unpickles it once."""
    with open(specs_path, "rb") as file:
        for entry in reversed(pickle.load(file)):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        return cloudpickle.load(file)


def load_plan(store_directory: str | Path) -> Plan:
    specs_path = Path(store_directory).absolute() / SPECS_FILE
    return _load_plan(specs_path, specs_path.stat().st_mtime)


def _runner() -> tuple[str, str]:
    """(runner label, run id) for records: the SLURM job if there is one."""
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if slurm_job:
        return f"slurm:{slurm_job}", f"slurm-{slurm_job}"
    return "snakemake", f"snakemake-{os.getpid()}"


def _running_path(store: ExperimentStore, key: str) -> Path:
    return store.directory / "running" / f"{key}.json"


def compute_state_job(store_directory: str | Path, key: str) -> None:
    """Compute state ``key`` of the emitted plan; raise its error if the recipe failed."""
    store = ExperimentStore(store_directory)
    plan = load_plan(store.directory)
    runner, run_id = _runner()
    marker = _running_path(store, key)
    atomic_write_json(
        marker,
        {
            "key": key,
            "runner": runner,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )
    try:
        event = compute_state(
            str(store.directory), plan.states[key], plan.state_class, None, run_id, runner
        )
    finally:
        marker.unlink(missing_ok=True)
    if event.kind in FAILURES:
        event.error.add_note(f"dagger_wf: state {key[:12]} ({event.label}) failed")
        raise event.error


def apply_functions_job(store_directory: str | Path, key: str, done_marker: str) -> None:
    """Run every Function defined on ``key``; touch ``done_marker`` when all succeeded."""
    store = ExperimentStore(store_directory)
    plan = load_plan(store.directory)
    _, run_id = _runner()
    for function in plan.states[key].functions:
        event = apply_function(str(store.directory), key, plan.state_class, function, None, run_id)
        if event.kind is EventKind.FUNCTION_FAILED:
            raise event.error
    Path(done_marker).parent.mkdir(parents=True, exist_ok=True)
    Path(done_marker).touch()


def _slurm_job_state(job_id: str) -> str | None:
    """The SLURM state of a job (TIMEOUT, FAILED, RUNNING, ...), None if unknown."""
    commands = [
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
        ["squeue", "-h", "-j", job_id, "-o", "%T"],
    ]
    for command in commands:
        try:
            output = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False
            ).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if output:
            return output[0].split()[0].rstrip("+")
    return None


_STILL_GOING = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING"}


def _interruption(marker: dict) -> str | None:
    """Why the job that was computing a state is gone, or None while it may still run."""
    job_id = marker.get("slurm_job_id")
    if job_id:
        state = _slurm_job_state(job_id)
        if state is None or state in _STILL_GOING:
            return None
        if state == "TIMEOUT":
            return (
                f"SLURM job {job_id} hit its time limit before this state was finished. "
                "Raise RESOURCES['runtime'] (minutes) on the recipe, emit the workflow "
                "again and rerun."
            )
        return f"SLURM job {job_id} ended with state {state} before this state was finished."
    if marker.get("host") != socket.gethostname() or _pid_alive(marker.get("pid")):
        return None
    return f"The process {marker.get('pid')} computing this state ended before it finished."


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reconcile_interrupted_states(store_directory: str | Path) -> list[str]:
    """Record as failed every state whose job was killed mid-way (time limit, node loss);
    return their keys. Called when a workflow ends, successfully or not."""
    store = ExperimentStore(store_directory)
    plan = load_plan(store.directory)
    failed = []
    for path in sorted((store.directory / "running").glob("*.json")):
        marker = json.loads(path.read_text())
        key = marker["key"]
        reason = _interruption(marker)
        if reason is None or store.is_done(key) or key not in plan.states:
            continue
        error = RecipeFailedError(reason)
        details = {"runner": marker.get("runner"), "host": marker.get("host")}
        text = f"{type(error).__name__}: {reason}\n"
        store.write_failure(
            failure_record(plan.states[key], plan.state_class, details, 0.0, error, text)
        )
        path.unlink(missing_ok=True)
        failed.append(key)
    return failed
