"""The code behind a state, kept so a changed result can be traced to a changed line.

The cache key holds only a digest of the recipe's normalised source; this keeps the text
itself, and the whole module around it, since a recipe's behaviour often hides in the
helper functions it calls.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

from ..hashing import module_name, read_source


def capture_code(recipe_class: type) -> dict[str, str | None]:
    """The recipe's qualified name, its class source and its module's source.

    A source that cannot be read (a class made in a notebook cell or by ``exec``) is
    ``None``; that is not an error here, since the code version pinned by ``VERSION``
    already guards the cache. A script run as ``__main__`` is named after its file.
    """
    module = sys.modules.get(recipe_class.__module__)
    return {
        "recipe": f"{module_name(recipe_class)}.{recipe_class.__qualname__}",
        "recipe_source": _source(recipe_class),
        "module": module_name(recipe_class),
        "module_source": _source(module) if module is not None else None,
    }


def _source(obj: Any) -> str | None:
    try:
        return read_source(obj)
    except (OSError, TypeError):  # no file behind it: a notebook, exec(), a C module
        return None


def code_diff(old: dict[str, str | None], new: dict[str, str | None]) -> str:
    """A unified diff from the ``old`` (stored) capture to the ``new`` one; ``""`` if equal.

    Compares whole modules when both are known, else the recipe classes alone; a source
    unknown on one side counts as empty.
    """
    both_modules_known = old["module_source"] is not None and new["module_source"] is not None
    field = "module_source" if both_modules_known else "recipe_source"
    lines = difflib.unified_diff(
        (old[field] or "").splitlines(),
        (new[field] or "").splitlines(),
        fromfile=f"{old['recipe']} (stored)",
        tofile=f"{new['recipe']} (now)",
        lineterm="",
    )
    return "\n".join(lines)
