"""Property values to JSON and back.

JSON-native values, tuples, sets and bytes stay readable in the metadata files; anything
else (enums, dataclasses, numpy scalars, ...) is stored as a cloudpickle next to its
``repr``. Decoding such a value unpickles it (open only stores you trust); one that no
longer unpickles (its class moved or was deleted) reads back as a :class:`StoredRepr`,
so one odd value never stops a tree from loading.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import cloudpickle

_PICKLED = "__pickled__"
_FLOAT = "__float__"
_TUPLE = "__tuple__"
_SET = "__set__"
_BYTES = "__bytes__"
_TAGS = {_PICKLED, _FLOAT, _TUPLE, _SET, _BYTES}


@dataclasses.dataclass(frozen=True)
class StoredRepr:
    """A stored value that could not be rebuilt; ``text`` is its repr when it was stored."""

    text: str
    reason: str

    def __repr__(self) -> str:
        return f"<unloadable {self.text} ({self.reason})>"


def to_json(value: Any) -> Any:
    """A JSON document that :func:`from_json` turns back into an equal value."""
    kind = type(value)
    if value is None or kind in (bool, str, int):
        return value
    if kind is float:
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if kind is list:
        return [to_json(item) for item in value]
    if kind is tuple:
        return {_TUPLE: [to_json(item) for item in value]}
    if kind in (set, frozenset) and all(type(item) in (str, int) for item in value):
        return {_SET: sorted(value, key=repr), "frozen": kind is frozenset}
    if kind is bytes:
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if kind is dict and all(type(key) is str and key not in _TAGS for key in value):
        return {key: to_json(item) for key, item in value.items()}
    pickled = base64.b64encode(cloudpickle.dumps(value, protocol=5)).decode("ascii")
    return {_PICKLED: pickled, "repr": repr(value)[:200]}


def from_json(document: Any) -> Any:
    if isinstance(document, list):
        return [from_json(item) for item in document]
    if not isinstance(document, dict):
        return document
    if _PICKLED in document:
        try:
            return cloudpickle.loads(base64.b64decode(document[_PICKLED]))
        except Exception as error:  # a class that moved, a module not installed here, ...
            return StoredRepr(document.get("repr", "?"), f"{type(error).__name__}: {error}")
    if _FLOAT in document:
        return float(document[_FLOAT])
    if _TUPLE in document:
        return tuple(from_json(item) for item in document[_TUPLE])
    if _SET in document:
        return (frozenset if document.get("frozen") else set)(document[_SET])
    if _BYTES in document:
        return base64.b64decode(document[_BYTES])
    return {key: from_json(item) for key, item in document.items()}
