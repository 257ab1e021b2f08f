"""Script parameters that ``dagger-wf run SCRIPT key=value ...`` can override.

A script declares its parameters with defaults, ``params = dg.parameters(epochs=8,
lr=0.1)``; command-line overrides are parsed as YAML scalars and lists and must fit the
default's type, so ``epochs=3`` is an int, ``lr=1e-3`` a float, ``augment=false`` a bool
and ``lrs=[0.1,0.01]`` a list.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import yaml

from .errors import InvalidOverrideError, UnknownParameterError, UnusedOverridesError

# Set by ``dagger-wf run`` for the whole process (the script's threads too): overrides as
# given ("key" -> "text"), and a list that records each time they were asked for.
_overrides: dict[str, str] | None = None
_used: list[bool] | None = None


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


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(key: str, text: str, default: Any) -> Any:
    """``text`` as a value of the default's type, by explicit rules: ints in base 10,
    floats as Python writes them (``1e-3``), bools as true/false, lists as YAML flow
    lists whose items fit the type of the default's first item."""
    expected = type(default)
    try:
        if default is None:
            return yaml.safe_load(text)
        if expected is str:
            return text
        if expected is bool:
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError("not true or false")
            return word in _TRUE
        if expected in (int, float):
            return expected(text.strip())
        if expected in (list, tuple):
            items = yaml.safe_load(text)
            if not isinstance(items, list):
                raise ValueError("not a list such as [0.1, 0.01]")
            if default:
                items = [
                    parse_value(f"{key}[{index}]", str(item), default[0])
                    for index, item in enumerate(items)
                ]
            return expected(items)
    except (ValueError, yaml.YAMLError) as error:
        raise InvalidOverrideError(
            f"Override {key}={text!r} does not fit {key}, a {expected.__name__} (default "
            f"{default!r}): {error}."
        ) from None
    raise InvalidOverrideError(
        f"Parameter {key} has a default of type {expected.__name__}, which the command line "
        "cannot set; use a str, int, float, bool or list default."
    )


def check_overrides_used() -> None:
    """Refuse to run an experiment whose script never asked for the overrides given."""
    if _overrides and _used == []:
        raise UnusedOverridesError(
            f"Overrides {sorted(_overrides)} were given, but the script runs its "
            "experiment without calling dg.parameters(...); declare its parameters with "
            "params = dg.parameters(name=default) before defining the tree."
        )


def parameters(**defaults: Any) -> types.SimpleNamespace:
    """The script's parameters: ``defaults``, with ``dagger-wf run`` overrides applied."""
    overrides = _overrides or {}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise UnknownParameterError(
            f"Unknown parameter {unknown[0]!r}; this script's parameters are {sorted(defaults)}."
        )
    if _used is not None:
        _used.append(True)
    values = dict(defaults)
    values.update({key: parse_value(key, text, defaults[key]) for key, text in overrides.items()})
    return types.SimpleNamespace(**values)


@contextlib.contextmanager
def script_overrides(overrides: dict[str, str]) -> Iterator[list[bool]]:
    """Within the block, ``parameters()`` applies ``overrides``; the list it yields gets
    an entry each time the script asks for its parameters."""
    global _overrides, _used
    outer = _overrides, _used
    _overrides, _used = overrides, []
    try:
        yield _used
    finally:
        _overrides, _used = outer
