"""Between state objects and the store: write a computed state, load one back."""

from __future__ import annotations

from typing import Any

from ..hashing import RecipeIdentity
from ..state import ExperimentState
from .records import StateRecord
from .state_store import ExperimentStore


def record_of(
    state: ExperimentState,
    identity: RecipeIdentity | None,
    status: str,
    details: dict[str, Any],
) -> StateRecord:
    return StateRecord(
        key=state.sha(),
        parent_key=state.parent_sha,
        state_class=type(state).__qualname__,
        recipe=identity,
        properties=state.property_values(),
        tags=tuple(sorted(set(state.tags))),
        status=status,
        metrics={**(state.record.metrics if state.record else {}), **state._metrics},
        **details,
    )


def store_state(
    store: ExperimentStore,
    state: ExperimentState,
    identity: RecipeIdentity | None,
    details: dict[str, Any],
) -> None:
    """Write a computed state (payload, then metadata), running its save hooks around it."""
    for hook in state.save_pre_hooks:
        hook()
    record = record_of(state, identity, "done", details)
    state.record = store.write_state(record, state.payload())
    for hook in state.save_post_hooks:
        hook()


def fill_payload(state: ExperimentState, store: ExperimentStore, record: StateRecord) -> None:
    """Load the stored payload (and metadata) of ``state`` into the object itself."""
    payload = store.load_payload(record.key)
    state.apply_record(record)
    state.__dict__.update(payload)
    state.from_cache = True
    state.slim_loaded = False


def load_state(store: ExperimentStore, key: str, state_class: type) -> ExperimentState:
    """A computed state with its payload loaded."""
    record = store.read_record(key)
    state = state_class.from_record(record, store.directory)
    fill_payload(state, store, record)
    return state
