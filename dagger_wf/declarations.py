"""Checks of the attribute names users declare on states and recipes."""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Set

from .errors import ReservedPropertyNameError


def check_declared_names(
    owner: type, declaration: str, names: Iterable[object], reserved: Set[str]
) -> None:
    """Every name is a plain identifier that dagger_wf does not use itself."""
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ReservedPropertyNameError(
                f"{owner.__qualname__}.{declaration} holds {name!r}, which is not a valid "
                "attribute name; use plain identifiers such as 'model_name'."
            )
        if name in reserved:
            raise ReservedPropertyNameError(
                f"{owner.__qualname__}.{declaration} declares {name!r}, which dagger_wf "
                f"uses itself; rename it (e.g. '{name}_value')."
            )


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("__")}
