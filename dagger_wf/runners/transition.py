"""Computing one state, or applying one Function, against the store.

Every runner calls these, so a state computed by any runner is the same state: same key,
same seed, same payload bytes, same metadata.
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import time
import traceback
from typing import Any

import cloudpickle

from ..errors import RecipeFailedError, RecipeReturnError
from ..events import FAILURES, SKIPS, EventKind, RunEvent
from ..hashing import module_name
from ..plan import PlannedState
from ..recipe import Function, Recipe
from ..state import ExperimentState
from ..store import ExperimentStore, RecipeRecord, StateRecord
from ..tracking.seeding import seed_everything, seed_from_key


def load_state(store: ExperimentStore, key: str, state_class: type) -> ExperimentState:
    """A computed state with its payload loaded."""
    state = state_class.from_record(store.read_record(key), store.directory)
    state.__dict__.update(store.load_payload(key))
    state.slim_loaded = False
    state.from_cache = True
    return state


def recipe_record(recipe: Recipe | RecipeRecord | None) -> RecipeRecord | None:
    if recipe is None or isinstance(recipe, RecipeRecord):
        return recipe
    identity = recipe.identity()
    return RecipeRecord(
        identity.class_name, module_name(type(recipe)), identity.properties, identity.code_version
    )


def _record_of(state: ExperimentState, status: str, **details: Any) -> StateRecord:
    return StateRecord(
        key=state.sha(),
        parent_key=state.parent_sha,
        state_class=type(state).__qualname__,
        recipe=recipe_record(state.recipe),
        properties=state.property_values(),
        tags=tuple(sorted(set(state.tags))),
        status=status,
        **details,
    )


def store_state(store: ExperimentStore, state: ExperimentState, details: dict[str, Any]) -> None:
    """Write a computed state (payload, then metadata), running its save hooks around it."""
    for hook in state.save_pre_hooks:
        hook()
    state.record = store.write_state(_record_of(state, "done", **details), state.payload())
    for hook in state.save_post_hooks:
        hook()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _portable(error: Exception) -> Exception:
    """The error itself if it survives pickling (process runners send it back), else a
    RecipeFailedError that carries its type and message."""
    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return RecipeFailedError(f"{type(error).__qualname__}: {error}")
    return error


def _label(planned: PlannedState, state_class: type) -> str:
    if planned.recipe is None:
        return f"root {state_class.__qualname__}"
    return repr(planned.recipe)


def _merge_tags(store: ExperimentStore, planned: PlannedState) -> None:
    """A cached state defined under new tags carries them from now on."""
    if not planned.tags:
        return
    record = store.read_record(planned.key)
    if not planned.tags <= set(record.tags):
        tags = tuple(sorted(planned.tags | set(record.tags)))
        store.write_record(dataclasses.replace(record, tags=tags))


def _checked_result(recipe: Recipe, result: object) -> ExperimentState:
    if not isinstance(result, ExperimentState):
        raise RecipeReturnError(
            f"{type(recipe).__qualname__}.run() returned {type(result).__name__}, not an "
            "ExperimentState; end run() with `return state`."
        )
    return result


def _build_state(
    store: ExperimentStore, planned: PlannedState, state_class: type, seed: int
) -> ExperimentState:
    if planned.recipe is None:
        state = state_class()
        state.__dict__.update(planned.root_properties)
        state._directory = store.directory
        state._sha = planned.key
        seed_everything(seed)
        state.initialize_state(**planned.root_properties)
    else:
        parent = load_state(store, planned.parent_key, state_class)
        state = parent.new_state(planned.recipe)
        del parent
        seed_everything(seed)
        state = _checked_result(planned.recipe, planned.recipe.run(state))
    # Whatever object run() returned, it is the state this key names.
    state._sha, state.parent_sha, state.recipe = planned.key, planned.parent_key, planned.recipe
    state.root_state = planned.recipe is None
    state._directory = store.directory
    state.tags = sorted(planned.tags)
    return state


def compute_state(
    store_directory: str,
    planned: PlannedState,
    state_class: type,
    parent_event: RunEvent | None,
    run_id: str,
    runner: str,
) -> RunEvent:
    """Compute and store one state unless it is stored already or its parent failed."""
    label = _label(planned, state_class)
    if parent_event is not None and parent_event.kind in (*FAILURES, *SKIPS):
        return RunEvent(run_id, planned.key, EventKind.SKIPPED, label)
    store = ExperimentStore(store_directory)
    if store.is_done(planned.key):
        _merge_tags(store, planned)
        return RunEvent(run_id, planned.key, EventKind.CACHED, label)
    seed = seed_from_key(planned.key)
    details = {"started": _now(), "host": socket.gethostname(), "runner": runner, "seed": seed}
    start = time.perf_counter()
    try:
        state = _build_state(store, planned, state_class, seed)
        details.update(finished=_now(), duration_s=time.perf_counter() - start)
        store_state(store, state, details)
    except Exception as error:
        duration = time.perf_counter() - start
        text = traceback.format_exc()
        store.write_failure(failure_record(planned, state_class, details, duration, error, text))
        return RunEvent(
            run_id, planned.key, EventKind.FAILED, label, duration, _portable(error), text
        )
    return RunEvent(run_id, planned.key, EventKind.RAN, label, details["duration_s"])


def failure_record(
    planned: PlannedState,
    state_class: type,
    details: dict[str, Any],
    duration: float,
    error: Exception,
    text: str,
) -> StateRecord:
    details = {**details, "finished": _now(), "duration_s": duration}
    return StateRecord(
        key=planned.key,
        parent_key=planned.parent_key,
        state_class=state_class.__qualname__,
        recipe=recipe_record(planned.recipe),
        properties=dict(planned.root_properties or {}),
        tags=tuple(sorted(planned.tags)),
        status="failed",
        error=text,
        error_type=type(error).__qualname__,
        **details,
    )


def apply_function(
    store_directory: str,
    key: str,
    state_class: type,
    function: Function,
    state_event: RunEvent | None,
    run_id: str,
) -> RunEvent:
    """Run ``function`` on the stored state ``key`` (always, cached or not), unless the
    event of computing that state says it failed (None: the state is known to be done)."""
    if state_event is not None and state_event.kind in (*FAILURES, *SKIPS):
        return RunEvent(run_id, key, EventKind.FUNCTION_SKIPPED, repr(function))
    start = time.perf_counter()
    try:
        state = load_state(ExperimentStore(store_directory), key, state_class)
        seed_everything(seed_from_key(key))
        function.op(state)
    except Exception as error:
        return RunEvent(
            run_id,
            key,
            EventKind.FUNCTION_FAILED,
            repr(function),
            time.perf_counter() - start,
            _portable(error),
            traceback.format_exc(),
        )
    return RunEvent(
        run_id, key, EventKind.FUNCTION_RAN, repr(function), time.perf_counter() - start
    )
