"""Script parameters that ``dagger-wf run SCRIPT key=value ...`` can override.

A script declares its parameters with defaults, ``params = dg.parameters(epochs=8,
lr=0.1)``; command-line overrides are parsed as YAML scalars and lists and must fit the
default's type, so ``epochs=3`` is an int, ``lr=1e-3`` a float, ``augment=false`` a bool
and ``lrs=[0.1,0.01]`` a list.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
from collections.abc import Iterator
from typing import Any

import yaml

from ..errors import InvalidOverrideError, UnknownParameterError

# Set by ``dagger-wf run``: overrides as given ("key" -> "text"), and whether they were used.
OVERRIDES: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "OVERRIDES", default=None
)
_USED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("_USED", default=None)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["epochs=3", "lr=0.1"]`` as ``{"epochs": "3", "lr": "0.1"}``."""
    overrides = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip().isidentifier():
            raise InvalidOverrideError(
                f"Override {assignment!r} is not key=value (e.g. epochs=3, lr=0.01)."
            )
        overrides[key.strip()] = text
    return overrides


def parse_value(key: str, text: str, default: Any) -> Any:
    """``text`` as a value of the default's type."""
    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError as error:
        raise InvalidOverrideError(f"Override {key}={text!r} does not parse: {error}") from None
    expected = type(default)
    if default is None or expected is str:
        return text if expected is str else value
    if expected is float and type(value) in (int, str):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads 1e-3 as a string
            return float(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    if type(value) is not expected:
        raise InvalidOverrideError(
            f"Override {key}={text!r} gives a {type(value).__name__}, but {key} is a "
            f"{expected.__name__} (default {default!r})."
        )
    return value


def parameters(**defaults: Any) -> types.SimpleNamespace:
    """The script's parameters: ``defaults``, with ``dagger-wf run`` overrides applied."""
    overrides = OVERRIDES.get() or {}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise UnknownParameterError(
            f"Unknown parameter {unknown[0]!r}; this script's parameters are {sorted(defaults)}."
        )
    used = _USED.get()
    if used is not None:
        used.append(True)
    values = dict(defaults)
    values.update({key: parse_value(key, text, defaults[key]) for key, text in overrides.items()})
    return types.SimpleNamespace(**values)


@contextlib.contextmanager
def script_overrides(overrides: dict[str, str]) -> Iterator[list[bool]]:
    """Within the block, ``parameters()`` applies ``overrides``; the list it yields gets
    an entry each time the script asks for its parameters."""
    used: list[bool] = []
    override_token, used_token = OVERRIDES.set(overrides), _USED.set(used)
    try:
        yield used
    finally:
        OVERRIDES.reset(override_token)
        _USED.reset(used_token)
