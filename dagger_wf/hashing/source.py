"""A recipe's code as it enters its key: its source, tokenised and normalised.

Only the classes the user wrote count (not dagger_wf's, the standard library's or an
installed package's); comments, docstrings and layout do not.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import keyword
import linecache
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

    Tokens, not ``ast.unparse`` or ``ast.dump`` text: the output must not depend on the
    Python version that computes it (a login node and a compute node may differ), and
    theirs does (3.12 added fields, 3.13 changed what ``ast.dump`` shows). The AST only
    says where the docstrings, slot parentheses and one-line bodies among them are.
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
        if isinstance(obj, type) and sys.version_info < (3, 13):
            return _class_source(obj)
        return inspect.getsource(obj)


def _class_source(cls: type) -> str:
    """``inspect.getsource(cls)``, the same text, with each module parsed once per
    version of its source rather than once per class (before 3.13, ``inspect`` parses
    the class's whole module each time: 37 ms for a 1 000-line one)."""
    file = inspect.getsourcefile(cls)
    if not file or hasattr(cls, "__wrapped__"):  # inspect's to read, or to refuse
        return inspect.getsource(cls)
    linecache.checkcache(file)
    module = inspect.getmodule(cls, file)
    lines = linecache.getlines(file, module.__dict__ if module else None)
    first = _class_first_lines("".join(lines)).get(cls.__qualname__) if lines else None
    if first is None:
        return inspect.getsource(cls)
    return "".join(inspect.getblock(lines[first:]))


@functools.lru_cache(maxsize=64)
def _class_first_lines(source: str) -> dict[str, int]:
    """The first line (0-based, decorators included) of each class in ``source``, by
    qualified name; the first definition of a name wins, as in ``inspect.findsource``."""
    first_lines: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                stack.extend([child.name, "<locals>"])
                visit(child)
                del stack[-2:]
            elif isinstance(child, ast.ClassDef):
                stack.append(child.name)
                start = child.decorator_list[0] if child.decorator_list else child
                first_lines.setdefault(".".join(stack), start.lineno - 1)
                visit(child)
                stack.pop()
            else:
                visit(child)

    visit(ast.parse(source))
    return first_lines


def normalised_code(source: str) -> str:
    """``source`` (whole statements) as a code version sees it: two texts that differ
    only in docstrings, comments and layout give the same string."""
    with _PARSING:
        return " ".join(_meaningful_tokens(source))


def parse_source(source: str) -> ast.Module:
    """``ast.parse(source)``, one thread at a time (SyntaxError if it does not parse)."""
    with _PARSING:
        return ast.parse(source)


Position = tuple[int, int]  # (row, column in characters), as tokenize gives them

_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_BODY_FIELDS = ("body", "orelse", "finalbody")
# Fields holding an expression that fills a whole slot of its statement: parentheses
# around it never change what it means, and formatters add them to split long lines.
_WHOLE_SLOTS = {
    ast.Assign: ("value",),
    ast.AugAssign: ("value",),
    ast.AnnAssign: ("value",),
    ast.Return: ("value",),
    ast.Expr: ("value",),
    ast.If: ("test",),
    ast.While: ("test",),
    ast.For: ("iter",),
    ast.AsyncFor: ("iter",),
    ast.Assert: ("test", "msg"),
    ast.Raise: ("exc", "cause"),
}


@dataclasses.dataclass
class _Layout:
    """What the AST says about the tokens of a source: where layout hides."""

    docstrings: dict[Position, tuple[Position, bool]]  # start: (end, only statement?)
    redundant_parens: set[Position]  # parentheses around a whole statement slot
    inline_bodies: set[Position]  # the first statement of ``if x: return y``


def _layout(source: str, tokens: list[tokenize.TokenInfo]) -> _Layout:
    lines = io.StringIO(source).readlines()
    layout = _Layout({}, set(), set())
    index_at = {token.start: index for index, token in enumerate(tokens)}
    index_ending_at = {token.end: index for index, token in reversed(list(enumerate(tokens)))}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, _DOCUMENTED) and node.body and _is_docstring(node.body[0]):
            first = node.body[0]
            end = _position(lines, first.end_lineno or first.lineno, first.end_col_offset or 0)
            layout.docstrings[_start(lines, first)] = (end, len(node.body) == 1)
        for field in _BODY_FIELDS:
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                index = index_at.get(_start(lines, body[0]))
                if index is not None and tokens[_significant(tokens, index, -1)].string == ":":
                    layout.inline_bodies.add(tokens[index].start)
        for field in _WHOLE_SLOTS.get(type(node), ()):
            value = getattr(node, field)
            if value is not None:
                layout.redundant_parens |= _parens_around(
                    tokens, index_at, index_ending_at, lines, value
                )
    return layout


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _parens_around(
    tokens: list[tokenize.TokenInfo],
    index_at: dict[Position, int],
    index_ending_at: dict[Position, int],
    lines: list[str],
    node: ast.expr,
) -> set[Position]:
    """The positions of each pair of parentheses that wraps ``node`` and nothing else."""
    first = index_at.get(_start(lines, node))
    last = index_ending_at.get(_position(lines, node.end_lineno or 0, node.end_col_offset or 0))
    found: set[Position] = set()
    while first is not None and last is not None:
        first, last = _significant(tokens, first, -1), _significant(tokens, last, +1)
        if tokens[first].string != "(" or tokens[last].string != ")":
            break
        found |= {tokens[first].start, tokens[last].start}
    return found


def _significant(tokens: list[tokenize.TokenInfo], index: int, step: int) -> int:
    """The index of the nearest token before (``step`` -1) or after (+1) ``index`` that
    is not a comment or a line break inside brackets."""
    index += step
    while 0 < index < len(tokens) - 1 and tokens[index].type in (tokenize.COMMENT, tokenize.NL):
        index += step
    return index


def _start(lines: list[str], node: ast.stmt | ast.expr) -> Position:
    return _position(lines, node.lineno, node.col_offset)


def _position(lines: list[str], row: int, byte_offset: int) -> Position:
    """The (row, character column) of an AST (row, UTF-8 byte offset)."""
    return row, len(lines[row - 1].encode("utf-8")[:byte_offset].decode("utf-8", "replace"))


def _meaningful_tokens(source: str) -> Iterable[str]:
    """Tokens of ``source`` that carry meaning, in a layout-free canonical spelling.

    Dropped: comments, blank and continuation lines, docstrings with the statement end
    after them, a statement's trailing semicolon, parentheses around the whole of a
    statement's value or condition (``return (a + b)``, ``if (x):``), and trailing commas
    (ruff's "magic trailing comma") except the one comma of a one-element tuple or tuple
    index. A body that is only a docstring reads as ``pass``, so documenting ``class
    Rewind(Train): pass`` changes nothing either; a body on its header's line reads as
    the same body on lines of its own, and ``a; b`` as two lines. Strings are respelled
    canonically (``'a'`` is ``"a"``). Indentation and statement ends are kept as markers,
    since they carry meaning. Other redundant parentheses still count.
    """
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    layout = _layout(source, tokens)
    lines = io.StringIO(source).readlines()
    emitted: list[str] = []
    brackets: list[list[int]] = []  # per open bracket: [commas, whether one counts]
    docstring_end: Position | None = None  # inside a docstring, until this position
    only_statement = after_docstring = False  # then "pass"; else drop its newline or ";"
    inline_bodies = 0  # bodies opened on this line, closed at its end
    fstring_start: Position | None = None
    fstring_depth = 0
    for token in tokens:
        name = tokenize.tok_name[token.type]
        if token.start in layout.inline_bodies and not fstring_depth:
            emitted += ["<NEWLINE>", "<INDENT>"]
            inline_bodies += 1
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
        if docstring_end is None and token.start in layout.docstrings:
            docstring_end, only_statement = layout.docstrings[token.start]
            if only_statement:
                emitted.append("pass")
        if docstring_end is not None:
            if token.start < docstring_end:
                continue
            docstring_end, after_docstring = None, not only_statement
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        if token.type == tokenize.OP and token.start in layout.redundant_parens:
            continue
        if after_docstring:
            after_docstring = False
            if token.type == tokenize.NEWLINE or token.string == ";":
                continue
        text = token.string
        if token.type == tokenize.NEWLINE or text == ";":
            if emitted[-1:] != ["<NEWLINE>"]:  # ";" before a newline is layout
                emitted.append("<NEWLINE>")
            if token.type == tokenize.NEWLINE:
                emitted += ["<DEDENT>"] * inline_bodies
                inline_bodies = 0
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
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
