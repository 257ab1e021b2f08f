"""The small metadata kept per state, apart from its payload."""

from __future__ import annotations

import dataclasses
from typing import Any

from .codec import from_json, to_json

RECORD_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class RecipeRecord:
    """What made a state: the recipe's class, properties and code version.

    Properties read as attributes too (``state.recipe.lr``), as on the live recipe.
    """

    class_name: str
    module: str
    properties: dict[str, Any]
    code_version: str

    def __getattr__(self, name: str) -> Any:
        properties = self.__dict__.get("properties", {})
        if name in properties:
            return properties[name]
        owner = self.__dict__.get("class_name", "RecipeRecord")
        raise AttributeError(f"recipe {owner} has no property {name!r}")

    def identity(self) -> Any:
        from ..hashing import RecipeIdentity

        return RecipeIdentity(self.class_name, self.properties, self.code_version)

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["properties"] = to_json(self.properties)
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RecipeRecord:
        return cls(**{**document, "properties": from_json(document["properties"])})


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """A state's metadata: identity, lineage, labels, and how its computation went."""

    key: str
    parent_key: str | None
    state_class: str
    recipe: RecipeRecord | None
    properties: dict[str, Any]
    tags: tuple[str, ...]
    status: str  # "done" or "failed"
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    host: str | None = None
    runner: str | None = None
    seed: int | None = None
    error: str | None = None
    error_type: str | None = None
    payload_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document.update(
            format=RECORD_FORMAT,
            recipe=self.recipe.to_json() if self.recipe else None,
            properties=to_json(self.properties),
            tags=sorted(self.tags),
        )
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> StateRecord:
        fields = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in document.items() if name in fields}
        values.update(
            recipe=RecipeRecord.from_json(document["recipe"]) if document["recipe"] else None,
            properties=from_json(document["properties"]),
            tags=tuple(document["tags"]),
        )
        return cls(**values)
