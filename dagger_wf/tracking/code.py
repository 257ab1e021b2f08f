"""The code behind a state, kept so a changed result can be traced to a changed line.

The cache key holds only a digest of the recipe's normalised source; this keeps the text
itself, and the whole module around it, since a recipe's behaviour often hides in the
helper functions it calls.
"""

from __future__ import annotations

import ast
import difflib
import io
import sys
from typing import Any

from ..hashing import module_name, normalised_code, parse_source, read_source


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


def unseen_code_diff(old: dict[str, str | None], new: dict[str, str | None]) -> str:
    """A diff of the code that ran for the ``old`` capture's states, as the recipe's key
    cannot see it, to what runs now; ``""`` if none of it changed in code that runs.

    That code is the module-level definitions the recipe class uses by name, directly or
    through each other (helper functions, constants, imports, other classes), each as a
    hunk of its own; the class itself only if its ``VERSION`` hid a change of it. What the
    recipe does not name (another recipe, a helper only another recipe uses) is left out,
    so an edit warns about the recipes that use the edited code and no other.
    """
    top_class = str(new["recipe"]).removeprefix(f"{new['module']}.").split(".")[0]
    old_parts, new_parts = (_used_definitions(capture, top_class) for capture in (old, new))
    recipe = str(new["recipe"])
    old_parts[recipe], new_parts[recipe] = old["recipe_source"] or "", new["recipe_source"] or ""
    hunks = []
    for name in dict.fromkeys([*new_parts, *old_parts]):
        before, after = old_parts.get(name, ""), new_parts.get(name, "")
        if normalised_code(before) != normalised_code(after):
            lines = difflib.unified_diff(
                before.splitlines(),
                after.splitlines(),
                fromfile=f"{name} (stored)",
                tofile=f"{name} (now)",
                lineterm="",
            )
            hunks.append("\n".join(lines))
    return "\n".join(hunks)


def _used_definitions(capture: dict[str, str | None], class_name: str) -> dict[str, str]:
    """``module.name`` -> source of the module-level statements binding each name that
    class ``class_name`` uses, directly or through each other."""
    source = capture["module_source"]
    if source is None:
        return {}
    try:
        module = parse_source(source)
    except SyntaxError:  # stored by a Python with newer syntax: the whole module counts
        return {f"{capture['module']} (module)": source}
    lines = io.StringIO(source).readlines()  # split as the AST counts lines, at "\n"
    statements: dict[str, list[ast.stmt]] = {}
    for statement in module.body:
        for name in _bound_names(statement):
            statements.setdefault(name, []).append(statement)
    pending = [
        name
        for statement in statements.get(class_name, [])
        if isinstance(statement, ast.ClassDef)
        for name in _used_names(statement)
    ]
    used: dict[str, str] = {}
    seen = {class_name}
    while pending:
        name = pending.pop(0)
        if name in seen or name not in statements:
            continue
        seen.add(name)
        used[f"{capture['module']}.{name}"] = "".join(
            _statement_text(lines, statement) for statement in statements[name]
        )
        pending += [inner for statement in statements[name] for inner in _used_names(statement)]
    return used


def _bound_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in statement.names]
    return [
        node.id
        for node in ast.walk(statement)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    ]


def _used_names(statement: ast.stmt) -> set[str]:
    return {node.id for node in ast.walk(statement) if isinstance(node, ast.Name)}


def _statement_text(lines: list[str], statement: ast.stmt) -> str:
    """The statement's lines, its decorators included."""
    decorators = getattr(statement, "decorator_list", [])
    first = min([statement.lineno, *(decorator.lineno for decorator in decorators)])
    return "".join(lines[first - 1 : statement.end_lineno])
