"""A recipe's code as it enters its key: its source, tokenised and normalised.

Only the classes the user wrote count (not dagger_wf's, the standard library's or an
installed package's); comments, docstrings and layout do not.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import keyword
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

    Token-based, not AST-based: the output must not depend on the Python version that
    computes it (a login node and a compute node may differ), and ``ast.unparse`` and
    ``ast.dump`` output does (3.12 added fields, 3.13 changed what ``ast.dump`` shows).
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


def normalised_code(source: str) -> str:
    """``source`` (whole statements) as a code version sees it: two texts that differ
    only in docstrings, comments and layout give the same string."""
    return " ".join(_meaningful_tokens(source))


Position = tuple[int, int]  # (row, column in characters), as tokenize gives them


def _docstrings(source: str) -> dict[Position, tuple[Position, bool]]:
    """Each docstring's start: its end, and whether it is its body's only statement.

    A docstring is the first statement of a module, class or function body when it is a
    string literal, as ``ast.get_docstring`` reads it.
    """
    lines = source.splitlines(keepends=True)
    docstrings = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                start = _position(lines, first.lineno, first.col_offset)
                end = _position(lines, first.end_lineno or first.lineno, first.end_col_offset or 0)
                docstrings[start] = (end, len(node.body) == 1)
    return docstrings


def _position(lines: list[str], row: int, byte_offset: int) -> Position:
    """The (row, character column) of an AST (row, UTF-8 byte offset)."""
    return row, len(lines[row - 1].encode("utf-8")[:byte_offset].decode("utf-8", "replace"))


def _meaningful_tokens(source: str) -> Iterable[str]:
    """Tokens of ``source`` that carry meaning, in a layout-free canonical spelling.

    Dropped: comments, blank and continuation lines, docstrings with the statement end
    after them, a statement's trailing semicolon, and trailing commas (ruff's "magic
    trailing comma"), except the one comma of a one-element tuple or tuple index. A body
    that is only a docstring reads as ``pass``, so documenting ``class Rewind(Train):
    pass`` changes nothing either. Strings are respelled canonically (``'a'`` is
    ``"a"``). Indentation and statement ends are kept as markers, since they carry
    meaning. Redundant parentheses still count.
    """
    docstrings = _docstrings(source)
    lines = source.splitlines(keepends=True)
    emitted: list[str] = []
    brackets: list[list[int]] = []  # per open bracket: [commas, whether one counts]
    docstring_end: Position | None = None  # inside a docstring, until this position
    only_statement = after_docstring = False  # then "pass"; else drop its newline or ";"
    fstring_start: Position | None = None
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
        if docstring_end is None and token.start in docstrings:
            docstring_end, only_statement = docstrings[token.start]
            if only_statement:
                emitted.append("pass")
        if docstring_end is not None:
            if token.start < docstring_end:
                continue
            docstring_end, after_docstring = None, not only_statement
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        if after_docstring:
            after_docstring = False
            if token.type == tokenize.NEWLINE or token.string == ";":
                continue
        if token.type == tokenize.NEWLINE and emitted[-1:] == [";"]:
            emitted.pop()  # a statement's trailing semicolon is layout
        text = token.string
        if token.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            text = f"<{name}>"
        elif token.type == tokenize.STRING:
            text = _canonical_string(text)
        elif text in "([{":
            brackets.append([0, _one_comma_counts(text, emitted[-1] if emitted else "")])
        elif text == "," and brackets:
            brackets[-1][0] += 1
        elif text in ")]}":
            _drop_magic_trailing_comma(emitted, brackets.pop() if brackets else [0, True])
        emitted.append(text)
    return emitted


def _drop_magic_trailing_comma(emitted: list[str], bracket: list[int]) -> None:
    """At a closing bracket: drop a trailing comma (a layout choice), except the one comma
    that makes a one-element tuple: ``(1,)``, or a subscript ``x[1,]`` indexing by one."""
    commas, one_comma_counts = bracket
    if emitted[-1:] == [","] and (commas > 1 or not one_comma_counts):
        emitted.pop()


def _one_comma_counts(opening: str, previous: str) -> bool:
    """Whether a lone trailing comma inside the bracket opened here makes a tuple.

    A bracket after a value (a name, a literal, a closing bracket) is a call's or a
    subscript's; else a display's or a grouping's. Soft keywords (``match``) count as
    keywords before ``(`` and as names before ``[``, so that a doubt keeps the comma.
    """
    if opening == "{":
        return False
    if opening == "(":
        return not _is_value(previous, {*keyword.kwlist, *keyword.softkwlist})
    return _is_value(previous, set(keyword.kwlist))


def _is_value(text: str, keywords: set[str]) -> bool:
    if text in (")", "]", "}") or text[-1:] in ("'", '"') or text[:1].isdigit():
        return True
    return text.isidentifier() and text not in keywords


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
