"""Property values to JSON and back, exactly.

JSON-native values stay readable in the metadata files; anything else (tuples, sets,
enums, numpy scalars, ...) is stored as a cloudpickle next to its ``repr``. Decoding such
a value unpickles it: open only stores you trust.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import cloudpickle

_PICKLED = "__pickled__"
_FLOAT = "__float__"


def to_json(value: Any) -> Any:
    """A JSON document that :func:`from_json` turns back into an equal value."""
    if value is None or isinstance(value, bool | str):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if type(value) is list:
        return [to_json(item) for item in value]
    if type(value) is dict and all(
        isinstance(key, str) and key not in (_PICKLED, _FLOAT) for key in value
    ):
        return {key: to_json(item) for key, item in value.items()}
    pickled = base64.b64encode(cloudpickle.dumps(value, protocol=5)).decode("ascii")
    return {_PICKLED: pickled, "repr": repr(value)[:200]}


def from_json(document: Any) -> Any:
    if isinstance(document, list):
        return [from_json(item) for item in document]
    if isinstance(document, dict):
        if _PICKLED in document:
            return cloudpickle.loads(base64.b64decode(document[_PICKLED]))
        if _FLOAT in document:
            return float(document[_FLOAT])
        return {key: from_json(item) for key, item in document.items()}
    return document
