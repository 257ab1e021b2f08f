"""What a state needs of the store it lives in.

The definition layer must not import the store (the store builds on states), so a state
is handed an object with this shape instead: :class:`dagger_wf.store.ExperimentStore`
is the one implementation, and a new backend implements these few methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .records import StateRecord


class StateStorage(Protocol):
    """Reads and writes the states of one experiment, by key."""

    @property
    def directory(self) -> Path: ...

    def is_done(self, key: str) -> bool: ...

    def payload_path(self, key: str) -> Path: ...

    def read_record(self, key: str) -> StateRecord: ...

    def load_payload(self, key: str) -> dict[str, Any]: ...

    def write_state(self, record: StateRecord, payload: dict[str, Any]) -> StateRecord: ...

    def recorded_metrics(self, record: StateRecord) -> dict[str, list[list[float]]]: ...
