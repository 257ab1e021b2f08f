"""The job side of the Snakemake workflow: what a rule's ``run:`` block calls.

Runs inside the Snakemake process (locally) or inside the cluster job's Snakemake process,
computes one state with the very code the Dask runner uses, and raises on failure so that
Snakemake marks the job failed (its target stays missing; --keep-going runs the rest).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import cloudpickle

from ..errors import CorruptStateError, StateNotComputedError
from ..events import FAILURES, EventKind, RunEvent, RunReport
from ..plan import Plan
from ..store import ExperimentStore
from ..store.definitions import finish_definition
from ..tracking.changes import warn_about_changes, warn_about_repairs
from .interruptions import record_interrupted_states
from .snakemake import SPECS_NAME
from .transition import (
    PlanLookup,
    StepContext,
    apply_function,
    compute_state,
    merge_tags,
    now,
)

_LOG = logging.getLogger(__name__)


@functools.cache
def _load_plan(specs_path: Path, modified: float) -> Plan:
    """The emitted plan; cached per process, so a group job unpickles it once."""
    with open(specs_path, "rb") as file:
        # After the job's own path: the emitting process's entries must not shadow
        # packages of the node's environment.
        sys.path.extend(entry for entry in pickle.load(file) if entry not in sys.path)
        return cloudpickle.load(file)


def load_plan(store_directory: str | Path) -> Plan:
    specs_path = ExperimentStore(store_directory).workflow_directory / SPECS_NAME
    return _load_plan(specs_path, specs_path.stat().st_mtime)


def _runner() -> tuple[str, str]:
    """(runner label, run id) for records: the SLURM job if there is one."""
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if slurm_job:
        return f"slurm:{slurm_job}", f"slurm-{slurm_job}"
    return "snakemake", f"snakemake-{os.getpid()}"


def sync_targets(store_directory: str | Path, states: dict[str, dict], target: str) -> None:
    """Make the target of each state of the manifest (``target`` with ``{key}``) exist
    exactly when the store holds that state whole, whichever runner stored it: Snakemake
    then runs a job for each missing state and none for a stored one. The target, not the
    state's own files, is what Snakemake deletes before it runs a job (or after a failed
    one). A state another runner stored gets this workflow's tags, as a job would give.
    A stored state whose payload a cheap look finds damaged (its header, its length, its
    blobs' presence and lengths) counts as missing."""
    store = ExperimentStore(store_directory)
    whole = store.whole_states(states.keys())
    for key, state in states.items():
        path = Path(target.format(key=key))
        if key not in whole:  # not stored, or damaged: its job computes it (again)
            path.unlink(missing_ok=True)
        elif not path.exists():
            try:
                merge_tags(store, key, set(state["tags"]), _runner()[0], whole[key])
            except CorruptStateError:
                continue  # its record is damaged: its job computes it again
            _touch(path)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _job_context(store_directory: str | Path, durable: bool) -> tuple[Plan, StepContext]:
    """The emitted plan, and what its steps share in this job."""
    store = ExperimentStore(store_directory)
    plan = load_plan(store.directory)
    runner, run_id = _runner()
    directory = str(store.directory)
    lineage = PlanLookup(plan.states)
    return plan, StepContext(
        directory, plan.state_class, run_id, runner, plan.seed, durable, lineage
    )


def compute_state_job(
    store_directory: str | Path, key: str, target: str, durable: bool = False
) -> None:
    """Compute state ``key`` of the emitted plan (or find it stored by another runner
    meanwhile) and touch ``target``; raise its error if the recipe failed."""
    plan, context = _job_context(store_directory, durable)
    event = compute_state(context, plan.states[key], None)
    warn_about_repairs(dict(event.repaired))  # on the job's log: no run process sees it
    if event.kind in FAILURES:
        # Snakemake shows an error's message, never its notes: the traceback (and, on a
        # full disk, what to do) reaches the job's log this way.
        _LOG.error("dagger_wf: state %s (%s) failed:\n%s", key[:12], event.label, event.traceback)
        error = event.exception()
        error.add_note(f"dagger_wf: state {key[:12]} ({event.label}) failed:")
        error.add_note(event.traceback or "")
        raise error
    _touch(Path(target))


def apply_functions_job(
    store_directory: str | Path, key: str, done_marker: str, durable: bool = False
) -> None:
    """Run every Function defined on ``key``; touch ``done_marker`` when all succeeded."""
    plan, context = _job_context(store_directory, durable)
    for function in plan.states[key].functions:
        event = apply_function(context, key, function, None)
        warn_about_repairs(dict(event.repaired))
        if event.kind is EventKind.FUNCTION_FAILED:
            raise event.exception()
    _touch(Path(done_marker))


def workflow_ended(store_directory: str | Path, definition: str | None, started: str) -> list[str]:
    """What the Snakefile does when a workflow that began at ``started`` ends, well or
    not: record as failed every state whose job was killed mid-way (time limit, node
    loss), returning their keys; give the code, environment and seed warnings a Dask run
    gives (the environment the jobs ran in, not this process's); mark the workflow's run
    of the current tree as ended."""
    if definition is not None:
        finish_definition(Path(definition))
    store = ExperimentStore(store_directory)
    plan = load_plan(store.directory)
    interrupted = record_interrupted_states(store, plan)
    report = _workflow_report(store, plan, started)
    for warning in _warnings_of(lambda: warn_about_changes(report, plan, store.directory)):
        _LOG.warning("%s: %s", warning.category.__name__, warning.message)
    return interrupted


def _warnings_of(action: Callable[[], object]) -> list[warnings.WarningMessage]:
    """The warnings ``action`` gives. Snakemake shows none raised in its hooks (one
    attributed to a line of the Snakefile is lost), so the Snakefile logs them instead."""
    with warnings.catch_warnings(record=True) as given:
        warnings.simplefilter("always")
        action()
    return given


def _workflow_report(store: ExperimentStore, plan: Plan, started: str) -> RunReport:
    """What the workflow did, as a run's report: each stored state of the plan, computed
    (started since the workflow began) or reused, with the snapshots that made it."""
    events = []
    for key in plan.states:
        try:
            record = store.read_record(key)
        except (StateNotComputedError, CorruptStateError):  # failed, or another's to repair
            continue
        kind = EventKind.RAN if (record.started or "") >= started else EventKind.CACHED
        events.append(
            RunEvent(
                "workflow",
                key,
                kind,
                "",
                stored_code=record.code,
                stored_environment=record.environment,
                stored_seed=record.seed,
            )
        )
    return RunReport("workflow", tuple(events))


def workflow_started() -> str:
    """When the workflow began: the Snakefile asks when it is read in the main process."""
    return now()
