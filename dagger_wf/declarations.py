"""Checks of the attribute names users declare on states and recipes."""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Iterable, Set
from typing import Any

from .errors import DeclarationTypeError, OverlappingAttributesError, ReservedPropertyNameError


def check_declared_names(
    owner: type, declaration: str, names: Iterable[object], reserved: Set[str]
) -> None:
    """Every name is a plain identifier that dagger_wf does not use itself."""
    if isinstance(names, str) or not isinstance(names, list | tuple):
        shown = (
            f"the string {names!r}, which would be read as its letters"
            if isinstance(names, str)
            else f"a {type(names).__name__}"
        )
        raise DeclarationTypeError(
            f"{owner.__qualname__}.{declaration} must be a list of attribute names such as "
            f"['model_name'], not {shown}."
        )
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ReservedPropertyNameError(
                f"{owner.__qualname__}.{declaration} holds {name!r}, which is not a valid "
                "attribute name; use plain identifiers such as 'model_name'."
            )
        if name.startswith("__") and name.endswith("__"):
            raise ReservedPropertyNameError(
                f"{owner.__qualname__}.{declaration} declares {name!r}: names of the form "
                f"__name__ belong to Python; use a plain name such as {name.strip('_')!r}."
            )
        if name in reserved:
            raise ReservedPropertyNameError(
                f"{owner.__qualname__}.{declaration} declares {name!r}, which dagger_wf "
                f"uses itself; rename it (e.g. '{name}_value')."
            )


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("__")}


def check_state_declarations(cls: type, reserved: Set[str]) -> None:
    """A state class's PROPERTIES and NONHASHED_ATTRIBUTES: valid, free, and disjoint."""
    properties = getattr(cls, "PROPERTIES", [])
    nonhashed = getattr(cls, "NONHASHED_ATTRIBUTES", [])
    check_declared_names(cls, "PROPERTIES", properties, reserved)
    check_declared_names(cls, "NONHASHED_ATTRIBUTES", nonhashed, reserved)
    overlap = sorted(set(properties) & set(nonhashed))
    if overlap:
        raise OverlappingAttributesError(
            f"{cls.__qualname__} declares {overlap} in both PROPERTIES (hashed) and "
            "NONHASHED_ATTRIBUTES (not hashed); keep each name in exactly one of them."
        )


def unexpected_root_arguments(cls: Any, arguments: Iterable[str]) -> list[str]:
    """The keywords of ``spawn_new_tree`` that no declaration takes: not a property, not a
    nonhashed attribute, and not a parameter that ``initialize_state`` names (its
    ``**kwargs`` take anything, so a typo would pass unseen)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(cls.initialize_state).parameters.values()
    named = {parameter.name for parameter in parameters if parameter.kind in kinds}
    known = {*getattr(cls, "PROPERTIES", []), *getattr(cls, "NONHASHED_ATTRIBUTES", []), *named}
    return [name for name in arguments if name not in known]
