"""Computing one state, or applying one Function, against the store.

Every runner calls these, so a state computed by any runner is the same state: same key,
same seed, same payload bytes, same metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import (
    CorruptStateError,
    RecipeFailedError,
    StateNotComputedError,
)
from ..events import EMITTED, FAILURES, SKIPS, EventKind, RunEvent
from ..metrics import metrics_from_return, to_json_series
from ..plan import Plan, PlannedState
from ..records import StateRecord, Status, identity_to_json
from ..state import ExperimentState, load_state, store_state
from ..steps import StepFunction, logged_metrics
from ..store import ExperimentStore
from ..store.claims import Claim
from ..tracking.changes import environment_digest
from ..tracking.seeding import seed_everything, seed_from_key
from .step import initial_state, run_step, running_step


def now() -> str:
    """This moment, as records spell it (ISO 8601, UTC, milliseconds): such strings sort
    in time order."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def worker_description(runner: str) -> dict[str, Any]:
    """Who computes a state: enough to tell later whether that worker is still alive."""
    return {
        "runner": runner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }


def _portable(error: Exception) -> Exception:
    """The error itself, without its traceback (which would keep the failed state's
    payload alive through its frames), if it survives pickling (process runners send it
    back), else a RecipeFailedError that carries its type and message."""
    error = error.with_traceback(None)
    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return RecipeFailedError(f"{type(error).__qualname__}: {error}")
    return error


def _placing(planned: PlannedState) -> dict[str, Any]:
    """What a claim says of the state besides who computes it, so that a view of the
    store (the dashboard) can place a state being computed in its tree."""
    return {
        "parent": planned.parent_key,
        "recipe": identity_to_json(planned.identity) if planned.identity else None,
        "tags": sorted(planned.tags),
    }


def step_label(planned: PlannedState, state_class: type[ExperimentState]) -> str:
    """How messages name the step that makes a state."""
    if planned.stored:
        return f"stored state {planned.key[:12]}"
    if planned.recipe is None:
        return f"root {state_class.__qualname__}"
    return repr(planned.recipe)


def merge_tags(
    store: ExperimentStore,
    key: str,
    tags: set[str],
    runner: str,
    record: StateRecord | None = None,
) -> StateRecord:
    """A stored state defined under new tags carries them from now on (merged under the
    state's claim: a tag another process adds at the same time is kept too). ``record``:
    its record, read already."""
    record = record or store.read_record(key)
    if tags <= set(record.tags):
        return record
    with store.claim(key, worker_description(runner)):
        return store.add_tags(key, tags)


def stored_state_events(plan: Plan, store: ExperimentStore) -> tuple[RunEvent, ...]:
    """The stored states an emitted workflow will reuse, as a run's CACHED events: each
    given the tags the plan adds now, as a run gives them (the workflow leaves stored
    states alone), so that emitting can warn about their code and seeds as a run does.
    A state whose record is damaged is left out: a job computes it again."""
    events = []
    for planned in plan.states.values():
        if store.is_done(planned.key):
            label = step_label(planned, plan.state_class)
            with contextlib.suppress(CorruptStateError):
                events.append(_cached(store, planned, EMITTED, "snakemake", label))
    return tuple(events)


def _cached(
    store: ExperimentStore,
    planned: PlannedState,
    run_id: str,
    runner: str,
    label: str,
    record: StateRecord | None = None,
) -> RunEvent:
    """The event of a stored state, after giving it the tags it is defined with now. A
    state this run stored before it lost a worker and started again counts as computed.
    ``record``: its record, read already."""
    record = merge_tags(store, planned.key, planned.tags, runner, record)
    if record.run_id == run_id:
        return RunEvent(run_id, planned.key, EventKind.RAN, label, record.duration_s or 0.0)
    return RunEvent(
        run_id,
        planned.key,
        EventKind.CACHED,
        label,
        stored_code=record.code,
        stored_environment=record.environment,
        stored_seed=record.seed,
    )


class PlanLookup:
    """The planned states of a run, by key: what a step needs to compute again a stored
    ancestor it finds damaged. Within one process it is the plan itself; pickled for a
    worker process, it is the path of a file the runner wrote, read there only if a
    step needs it (so a task ships a path, not the plan)."""

    def __init__(self, states: Mapping[str, PlannedState], path: Path | None = None) -> None:
        self.path = path
        self._states: Mapping[str, PlannedState] | None = states

    def get(self, key: str) -> PlannedState | None:
        if self._states is None:
            self._states = _read_plan_file(str(self.path))
        return self._states.get(key)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_states": None if self.path else self._states}


@functools.cache
def _read_plan_file(path: str) -> Mapping[str, PlannedState]:
    with open(path, "rb") as file:
        states: Mapping[str, PlannedState] = cloudpickle.load(file)
    return states


# (key, what was damaged): a stored state found damaged and computed again.
Repair = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What every step of one run shares, shipped with each step to its worker."""

    store_directory: str
    state_class: type[ExperimentState]
    run_id: str
    runner: str  # recorded with each state: "dask", "snakemake", "slurm:<job id>"
    global_seed: int | None = None  # the run's own seed, if the user gave one
    durable: bool = False  # flush each state to the disk before it counts as done
    lineage: PlanLookup | None = None  # None: a damaged ancestor fails the step


@contextlib.contextmanager
def _holding(claim: Claim) -> Iterator[None]:
    """Hold ``claim`` inside the block. Stopped by a signal (a SLURM time limit) or an
    interrupt, the claim stays, so that the interruption is found and recorded afterwards."""
    try:
        yield
    except Exception:
        claim.release()
        raise
    except BaseException:
        claim.abandon()
        raise
    claim.release()


def load_checked(
    context: StepContext, store: ExperimentStore, key: str, repairs: list[Repair]
) -> ExperimentState:
    """The stored state ``key``, payload loaded and checked. Found damaged, it is
    computed again under its claim (its own parent loaded the same way) and noted in
    ``repairs``, if the plan says how; else its CorruptStateError is raised. Found gone
    (another worker is computing it again), it is waited for under its claim."""
    try:
        return load_state(store, key, context.state_class)
    except (CorruptStateError, StateNotComputedError):
        planned = context.lineage.get(key) if context.lineage is not None else None
        if planned is None:
            raise
    damage: CorruptStateError | None = None
    with _holding(store.claim(key, worker_description(context.runner))):
        try:
            return load_state(store, key, context.state_class)  # repaired meanwhile
        except CorruptStateError as error:
            damage = error
            store.remove_damaged_state(error)
        except StateNotComputedError:
            pass  # removed by a worker that found it damaged, then failed to compute it
        event = _compute(context, dataclasses.replace(planned, functions=[]), store)
    if event.kind is EventKind.FAILED:
        raise CorruptStateError(
            f"{damage or f'State {key} is not stored.'} Computing it again failed:\n"
            f"{event.traceback}"
        ) from event.error
    repairs.extend(event.repaired)
    if damage is not None:
        repairs.append((key, damage.detail or str(damage)))
    return load_state(store, key, context.state_class)


def compute_state(
    context: StepContext, planned: PlannedState, parent_event: RunEvent | None
) -> RunEvent:
    """Compute and store one state unless it is stored already or its parent failed.

    The state is claimed first: while another worker computes it, this one waits, then
    reuses what that worker stored (or tries itself, if that worker failed). A stored
    state that a cheap look (:meth:`ExperimentStore.damage`) finds damaged is removed
    under the claim and computed again; its event says so (``repaired``)."""
    label = step_label(planned, context.state_class)
    if parent_event is not None and parent_event.kind in (*FAILURES, *SKIPS):
        return RunEvent(context.run_id, planned.key, EventKind.SKIPPED, label)
    store = ExperimentStore(context.store_directory, context.durable)
    if planned.stored:
        return _stored_only(context, planned, store, label)
    reused = reuse_stored(store, planned, context.run_id, context.runner, label)
    if reused is not None:
        return reused
    try:
        claim = store.claim(
            planned.key, {**worker_description(context.runner), **_placing(planned)}
        )
    except OSError as error:  # running/ cannot be written (a full disk): this state fails
        return _unwritable(context.run_id, planned.key, EventKind.FAILED, label, 0.0, error)
    with _holding(claim):
        damage = store.damage(planned.key)  # None also when not stored
        if damage is not None:  # still, under the claim: then compute it again
            store.remove_damaged_state(damage)
        event = None if store.is_done(planned.key) else _compute(context, planned, store)
    if event is None:  # stored meanwhile by the worker that held the claim
        return _cached(store, planned, context.run_id, context.runner, label)
    if damage is not None:
        repair = (planned.key, damage.detail or str(damage))
        return dataclasses.replace(event, repaired=(*event.repaired, repair))
    return event


def reuse_stored(
    store: ExperimentStore, planned: PlannedState, run_id: str, runner: str, label: str
) -> RunEvent | None:
    """The event of reusing the stored state ``planned`` when a cheap look finds it whole
    (given the tags it is defined with now); None when it must be computed, or its damage
    looked at under its claim (:func:`compute_state` does both)."""
    if store.is_done(planned.key) and store.payload_damage(planned.key) is None:
        return reuse_whole(store, planned, run_id, runner, label)
    return None


def reuse_whole(
    store: ExperimentStore,
    planned: PlannedState,
    run_id: str,
    runner: str,
    label: str,
    record: StateRecord | None = None,
) -> RunEvent | None:
    """:func:`reuse_stored` for a state a cheap look found whole (``record``: its record,
    read already): one damaged or removed since is left to its task."""
    with contextlib.suppress(CorruptStateError, StateNotComputedError):  # under the claim
        return _cached(store, planned, run_id, runner, label, record)
    return None


def _stored_only(
    context: StepContext, planned: PlannedState, store: ExperimentStore, label: str
) -> RunEvent:
    """A state the plan knows only by its key (``to_promise()`` on a stored state): it
    is reused, never computed, since the plan holds no step that makes it."""
    damage = store.damage(planned.key)
    if store.is_done(planned.key) and damage is None:
        return _cached(store, planned, context.run_id, context.runner, label)
    problem = "is gone now (removed by gc?)" if damage is None else f"is damaged: {damage}"
    error = StateNotComputedError(
        f"State {planned.key[:12]} was stored when its steps were defined and {problem}. "
        "Run the script that defines it with its recipes, so that it is computed again."
    )
    return RunEvent(context.run_id, planned.key, EventKind.FAILED, label, 0.0, error, str(error))


def _compute(context: StepContext, planned: PlannedState, store: ExperimentStore) -> RunEvent:
    """Compute ``planned`` and store it, or record its failure; the caller holds its claim."""
    state_class, run_id, runner = context.state_class, context.run_id, context.runner
    label = step_label(planned, state_class)
    seed = seed_from_key(planned.key, context.global_seed)
    details: dict[str, Any] = {
        "started": now(),
        "host": socket.gethostname(),
        "runner": runner,
        "seed": seed,
        "code": planned.code,
        "run_id": run_id,
    }
    start = time.perf_counter()
    state = None
    repairs: list[Repair] = []
    try:
        details["environment"] = environment_digest(store.directory)
        state = initial_state(
            store, planned, state_class, lambda key: load_checked(context, store, key, repairs)
        )
        state = run_step(planned, state, seed)
        state.tags = sorted(planned.tags)
        details.update(finished=now(), duration_s=time.perf_counter() - start)
        if store.is_done(planned.key):  # by a worker that broke this one's expired claim
            store.add_tags(planned.key, planned.tags)
        else:
            store_state(store, state, planned.identity, details)
    except Exception as error:
        duration = time.perf_counter() - start
        text = traceback.format_exc()
        properties = state.dagger.properties() if state is not None else None
        record = failure_record(planned, state_class, details, duration, error, text, properties)
        if state is not None:  # what it logged before failing
            record = dataclasses.replace(record, metrics=logged_metrics(state))
        text += _record_or_explain(lambda: store.write_failure(record))
        return RunEvent(
            run_id,
            planned.key,
            EventKind.FAILED,
            label,
            duration,
            _portable(error),
            text,
            repaired=tuple(repairs),
        )
    duration = details["duration_s"]
    return RunEvent(run_id, planned.key, EventKind.RAN, label, duration, repaired=tuple(repairs))


def failure_record(
    planned: PlannedState,
    state_class: type[ExperimentState],
    details: dict[str, Any],
    duration: float,
    error: Exception,
    text: str,
    properties: dict[str, Any] | None = None,
) -> StateRecord:
    """The record of a failed attempt: what was being computed, by whom, and why not."""
    details = {**details, "finished": now(), "duration_s": duration}
    return StateRecord(
        key=planned.key,
        parent_key=planned.parent_key,
        state_class=state_class.__qualname__,
        recipe=planned.identity,
        properties=properties if properties is not None else dict(planned.root_properties or {}),
        tags=tuple(sorted(planned.tags)),
        status=Status.FAILED,
        error=text,
        error_type=type(error).__qualname__,
        **details,
    )


def apply_function(
    context: StepContext, key: str, function: StepFunction, state_event: RunEvent | None
) -> RunEvent:
    """Run ``function`` on the stored state ``key`` (always, cached or not), unless the
    event of computing that state says it failed (None: the state is known to be done).

    Each run is recorded (``evaluations/<key>/``) with its status and the metrics the
    Function logged or returned (a dict of numbers)."""
    run_id = context.run_id
    if state_event is not None and state_event.kind in (*FAILURES, *SKIPS):
        return RunEvent(run_id, key, EventKind.FUNCTION_SKIPPED, repr(function))
    store = ExperimentStore(context.store_directory, context.durable)
    evaluation = {"key": key, "function": function.name, "run_id": run_id, "started": now()}
    start = time.perf_counter()
    state = None
    repairs: list[Repair] = []
    try:
        state = load_checked(context, store, key, repairs)
        seed_everything(seed_from_key(key, context.global_seed))
        with running_step(state):
            returned = function.op(state)
        metrics = {**logged_metrics(state), **metrics_from_return(returned)}
    except Exception as error:
        text = traceback.format_exc()
        duration = time.perf_counter() - start
        metrics = logged_metrics(state) if state is not None else {}
        evaluation.update(status=Status.FAILED, error=text, error_type=type(error).__qualname__)
        text += _record_or_explain(lambda: _write_evaluation(store, evaluation, duration, metrics))
        return RunEvent(
            run_id,
            key,
            EventKind.FUNCTION_FAILED,
            repr(function),
            duration,
            _portable(error),
            text,
            repaired=tuple(repairs),
        )
    duration = time.perf_counter() - start
    try:
        _write_evaluation(store, {**evaluation, "status": Status.DONE}, duration, metrics)
    except OSError as error:  # its metrics cannot be kept (a full disk): the call fails
        kind = EventKind.FUNCTION_FAILED
        return _unwritable(run_id, key, kind, repr(function), duration, error)
    return RunEvent(
        run_id, key, EventKind.FUNCTION_RAN, repr(function), duration, repaired=tuple(repairs)
    )


def _write_evaluation(
    store: ExperimentStore, evaluation: dict[str, Any], duration: float, metrics: dict
) -> None:
    evaluation.update(finished=now(), duration_s=duration, metrics=to_json_series(metrics))
    store.write_evaluation(evaluation["key"], evaluation)


def _unwritable(
    run_id: str, key: str, kind: EventKind, label: str, duration: float, error: OSError
) -> RunEvent:
    """The failure of a step whose result the store could not take (a full disk): only
    its event tells of it, since no failure record can be written either."""
    text = "".join(traceback.format_exception(error))
    return RunEvent(run_id, key, kind, label, duration, _portable(error), text)


def _record_or_explain(write_failure: Callable[[], object]) -> str:
    """Record a failure: "" once recorded; if the store cannot take even that (a full
    disk), what the failure's traceback text adds, so that the run still reports it."""
    try:
        write_failure()
    except OSError as error:
        return "\nThe failure could not be recorded:\n" + "".join(
            traceback.format_exception_only(error)
        )
    return ""
