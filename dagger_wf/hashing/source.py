"""A recipe's code as it enters its key: its source, tokenised and normalised.

Only the classes the user wrote count (not dagger_wf's, the standard library's or an
installed package's); comments, docstrings and layout do not.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import os
import pathlib
import sys
import sysconfig
import textwrap
import threading
import tokenize
import types
from collections.abc import Iterable

from ..errors import RecipeSourceUnavailableError

# CPython 3.11's ast and inspect can fail (SystemError) when threads parse at once.
_PARSING = threading.RLock()


def user_classes(recipe_class: type) -> Iterable[type]:
    """The classes of the MRO written by the user: not dagger_wf's, not the standard
    library's, not an installed package's (their source may differ between Python
    versions, or not exist, and their behaviour is pinned by the environment)."""
    for cls in recipe_class.__mro__:
        if not _is_installed_code(cls):
            yield cls


@functools.cache
def _installed_code_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"]}
    roots.add(str(pathlib.Path(__file__).parents[1]))  # dagger_wf itself, however installed
    return tuple(str(pathlib.Path(root).resolve()) + os.sep for root in roots)


@functools.cache
def _is_installed_code(cls: type) -> bool:
    source = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if source is None:  # a C type has no Python methods; a class made by exec() has
        return not any(isinstance(value, types.FunctionType) for value in vars(cls).values())
    return str(pathlib.Path(source).resolve()).startswith(_installed_code_roots())


@functools.cache
def normalised_source(cls: type) -> str:
    """The class's tokens without comments, docstrings, blank lines or layout.

    Token-based, not ``ast.unparse``-based: the output must not depend on the Python
    version that computes it (a login node and a compute node may differ).
    """
    with _PARSING:
        try:
            source = textwrap.dedent(read_source(cls))
        except (OSError, TypeError) as error:
            raise RecipeSourceUnavailableError(
                f"Cannot read the source of recipe {cls.__qualname__} ({error}), so its code "
                "version is unknown. Set a class attribute VERSION = '1' on it (and bump it "
                "whenever run() changes)."
            ) from None
        return " ".join(_meaningful_tokens(source))


def read_source(obj: type | types.ModuleType) -> str:
    """``inspect.getsource(obj)``, one thread at a time (OSError, TypeError if none)."""
    with _PARSING:
        return inspect.getsource(obj)


def _docstring_starts(source: str) -> set[tuple[int, int]]:
    starts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                starts.add((first.lineno, first.col_offset))
    return starts


def _meaningful_tokens(source: str) -> Iterable[str]:
    """Tokens of ``source`` that carry meaning, in a layout-free canonical spelling.

    Dropped: comments, blank and continuation lines, docstrings, and the trailing comma
    of a multi-element bracket (ruff's "magic trailing comma"). Strings are respelled
    canonically (``'a'`` is ``"a"``). Indentation and statement ends are kept as markers,
    since they carry meaning. Redundant parentheses still count.
    """
    docstrings = _docstring_starts(source)
    lines = source.splitlines(keepends=True)
    emitted: list[str] = []
    commas_per_bracket: list[int] = []
    in_docstring = False
    fstring_start: tuple[int, int] | None = None
    fstring_depth = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name[token.type]
        # Python >= 3.12 splits f-strings into parts; rejoin them as 3.11's single token.
        if name == "FSTRING_START":
            fstring_depth += 1
            fstring_start = fstring_start or token.start
            continue
        if fstring_depth:
            if name == "FSTRING_END":
                fstring_depth -= 1
                if not fstring_depth:
                    emitted.append(_source_slice(lines, fstring_start or token.start, token.end))
                    fstring_start = None
            continue
        if token.type == tokenize.STRING and (in_docstring or token.start in docstrings):
            in_docstring = True
            continue
        in_docstring = False
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        text = token.string
        if token.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            text = f"<{name}>"
        elif token.type == tokenize.STRING:
            text = _canonical_string(text)
        elif text in "([{":
            commas_per_bracket.append(0)
        elif text == "," and commas_per_bracket:
            commas_per_bracket[-1] += 1
        elif text in ")]}":
            _drop_magic_trailing_comma(emitted, commas_per_bracket)
        emitted.append(text)
    return emitted


def _drop_magic_trailing_comma(emitted: list[str], commas_per_bracket: list[int]) -> None:
    """At a closing bracket: drop a trailing comma after two or more elements (a layout
    choice), never the comma of a one-element tuple (which makes it a tuple)."""
    commas = commas_per_bracket.pop() if commas_per_bracket else 0
    if commas > 1 and emitted[-1:] == [","]:
        emitted.pop()


def _canonical_string(literal: str) -> str:
    """One spelling per string value; f-strings (not literals) stay as written."""
    try:
        return repr(ast.literal_eval(literal))
    except (ValueError, SyntaxError):
        return literal


def _source_slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    (start_row, start_col), (end_row, end_col) = start, end
    if start_row == end_row:
        return lines[start_row - 1][start_col:end_col]
    middle = lines[start_row : end_row - 1]
    return "".join([lines[start_row - 1][start_col:], *middle, lines[end_row - 1][:end_col]])
