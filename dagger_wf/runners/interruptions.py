"""States whose worker died mid-way: recorded as failed, with the reason when known.

Every worker marks the state it computes (``running/<key>.json``: runner, host, pid,
SLURM job). A marker whose worker is gone (a process killed for memory, a SLURM job that
hit its time limit, a lost node) means the state was interrupted; it gets a failure
record so that it shows up as failed, with a message that says what happened.
"""

from __future__ import annotations

import subprocess
from typing import Any

from ..errors import RecipeFailedError
from ..plan import Plan
from ..store import ExperimentStore
from ..store.claims import may_still_run
from .transition import failure_record

_STILL_GOING = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "RESIZING",
    "SUSPENDED",
}


def parse_job_state(output: str) -> str | None:
    """The state in ``sacct -X -n -P -o State`` or ``squeue -h -o %T`` output: its first
    word ("CANCELLED by 0" is CANCELLED, a truncated "RUNNING+" is RUNNING); None when
    the command knows no such job (empty output)."""
    words = output.split()
    return words[0].rstrip("+") if words else None


def slurm_job_state(job_id: str) -> str | None:
    """The SLURM state of a job (TIMEOUT, FAILED, RUNNING, ...), None if unknown."""
    commands = [
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
        ["squeue", "-h", "-j", job_id, "-o", "%T"],
    ]
    for command in commands:
        try:
            output = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        state = parse_job_state(output)
        if state is not None:
            return state
    return None


def job_end_reason(job_id: str, state: str | None) -> str | None:
    """Why the states of SLURM job ``job_id`` in ``state`` were not finished; None while
    the job may still run (or nothing is known of it)."""
    if state is None or state in _STILL_GOING:
        return None
    if state == "TIMEOUT":
        return (
            f"SLURM job {job_id} hit its time limit before this state was finished. "
            "Raise RESOURCES['runtime'] (minutes) on the recipe, emit the workflow "
            "again and rerun."
        )
    return f"SLURM job {job_id} ended ({state}) before this state was finished."


def interruption_reason(marker: dict[str, Any]) -> str | None:
    """Why the worker of a running marker is gone, or None while it may still run."""
    job_id = marker.get("slurm_job_id")
    if job_id:
        return job_end_reason(job_id, slurm_job_state(job_id))
    if may_still_run(marker.get("host"), marker.get("pid")):
        return None
    return (
        f"The worker process {marker.get('pid')} computing this state ended before it "
        "finished (killed, or out of memory?)."
    )


def record_interrupted_states(store: ExperimentStore, plan: Plan) -> list[str]:
    """Give every state whose worker died a failure record; return their keys."""
    interrupted = []
    for marker in store.running_markers():
        key = marker.get("key")
        reason = interruption_reason(marker)
        if reason is None or key not in plan.states:
            continue
        if not store.is_done(key):
            error = RecipeFailedError(reason)
            details = {"runner": marker.get("runner"), "host": marker.get("host")}
            text = f"{type(error).__name__}: {reason}\n"
            store.write_failure(
                failure_record(plan.states[key], plan.state_class, details, 0.0, error, text)
            )
            interrupted.append(key)
        store.clear_running(key)
    return interrupted
