"""The small metadata kept per state, apart from its payload."""

from __future__ import annotations

import dataclasses
import enum
import sys
from typing import Any

from .codec import from_json, to_json
from .hashing import RecipeIdentity
from .metrics import from_json_series, to_json_series

RECORD_FORMAT = 1


class Status(enum.StrEnum):
    """Where a state stands; equal to its plain string: ``state.dagger.status == "done"``."""

    DONE = "done"  # computed and stored
    FAILED = "failed"  # its latest attempt failed; the traceback is kept
    PENDING = "pending"  # not computed (or being computed now); never stored as a record


def identity_to_json(identity: RecipeIdentity) -> dict[str, Any]:
    return {
        "class_name": identity.class_name,
        "module": identity.module,
        "properties": to_json(dict(identity.properties)),
        "code_version": identity.code_version,
    }


def identity_from_json(document: dict[str, Any]) -> RecipeIdentity:
    return RecipeIdentity(
        class_name=document["class_name"],
        module=document["module"],
        properties=from_json(document["properties"]),
        code_version=document["code_version"],
    )


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """A state's metadata: identity, lineage, labels, and how its computation went."""

    key: str
    parent_key: str | None
    state_class: str
    recipe: RecipeIdentity | None
    properties: dict[str, Any]
    tags: tuple[str, ...]
    status: Status  # DONE or FAILED
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    host: str | None = None
    runner: str | None = None
    seed: int | None = None
    error: str | None = None
    error_type: str | None = None
    payload_bytes: int | None = None
    metrics: dict[str, list[list[float]]] = dataclasses.field(default_factory=dict)
    environment: str | None = None  # digest of the environment snapshot it ran in
    code: str | None = None  # digest of the code snapshot of its recipe
    run_id: str | None = None  # the run that computed it

    def run_details(self) -> dict[str, Any]:
        """How the state was computed, to keep when it is stored again."""
        names = (
            "started",
            "finished",
            "duration_s",
            "host",
            "runner",
            "seed",
            "code",
            "environment",
            "run_id",
        )
        return {name: getattr(self, name) for name in names}

    def to_json(self) -> dict[str, Any]:
        document = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        document.update(
            format=RECORD_FORMAT,
            recipe=identity_to_json(self.recipe) if self.recipe else None,
            properties=to_json(self.properties),
            tags=sorted(self.tags),
            metrics=to_json_series(self.metrics),
        )
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> StateRecord:
        if document.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {document.get('format')!r}, not {RECORD_FORMAT}")
        values = {name: value for name, value in document.items() if name in _RECORD_FIELDS}
        values.update(
            recipe=identity_from_json(document["recipe"]) if document["recipe"] else None,
            properties=from_json(document["properties"]),
            tags=tuple(map(sys.intern, document["tags"])),
            status=Status(document["status"]),
            metrics=from_json_series(document.get("metrics", {})),
        )
        return cls(**values)


# Asked once per record read (a restore reads thousands): computed once.
_RECORD_FIELDS = frozenset(field.name for field in dataclasses.fields(StateRecord))
