"""The cache key: one place, one function per ingredient.

A state's key is known before it runs:

* root  = digest("State", state class qualname, PROPERTIES values)
* child = digest("Recipe", parent key, recipe class qualname, recipe PROPERTIES values,
  recipe code version)

Every value is first encoded canonically into tagged JSON (``["int", "1"]`` is not
``["bool", true]``; dict and set members are sorted), so the same definition gives the
same key in any process, on any machine, under any ``PYTHONHASHSEED``. Class names enter
the key by ``__qualname__`` alone, so a script run as ``__main__`` and the same file
imported as a module (as a cluster job does) give the same keys.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import inspect
import io
import json
import math
import os
import pathlib
import sys
import sysconfig
import textwrap
import tokenize
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import RecipeSourceUnavailableError, UnhashablePropertyError

Encoded = Any  # a JSON-compatible nested list, headed by its kind


@dataclasses.dataclass(frozen=True)
class RecipeIdentity:
    """What made a state: the recipe's class, property values and code version.

    Fixed when the recipe is applied, so changing the recipe object afterwards changes
    nothing. Its properties read as attributes too (``state.recipe.lr``), as on the live
    recipe. ``module`` is shown, not hashed.
    """

    class_name: str
    module: str
    properties: Mapping[str, object]
    code_version: str

    def __getattr__(self, name: str) -> Any:
        properties = self.__dict__.get("properties", {})
        if name in properties:
            return properties[name]
        owner = self.__dict__.get("class_name", "RecipeIdentity")
        raise AttributeError(f"recipe {owner} has no property {name!r}")


def identity_of(recipe: Any) -> RecipeIdentity:
    """The identity of a live recipe, or the stored identity itself."""
    return recipe if isinstance(recipe, RecipeIdentity) else recipe.identity()


class _Unhashable(Exception):
    """Internal: carries the reason a value cannot be encoded up to the property level."""


# ---------------------------------------------------------------- values


def encode_value(value: object) -> Encoded:
    """Encode ``value`` canonically; raise ``_Unhashable`` for values with no stable form.

    The encoding of a value never depends on what was encoded before: numpy and torch
    support is registered before any dispatch once they are imported (``np.float64`` is
    a ``float`` subclass and must not be encoded as one merely because no array was seen
    yet), and enums are encoded as enums even when they subclass int or str.
    """
    if _LAZY_REGISTRARS:
        _register_imported_libraries()
    if isinstance(value, enum.Enum):
        return ["enum", _qualified_name(type(value)), value.name]
    return _encode(value)


@functools.singledispatch
def _encode(value: object) -> Encoded:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, encode_value(getattr(value, f.name))] for f in dataclasses.fields(value)]
        return ["dataclass", _qualified_name(type(value)), fields]
    raise _Unhashable(
        f"a {type(value).__module__}.{type(value).__qualname__} has no canonical encoding"
    )


@_encode.register(type(None))
def _(value: None) -> Encoded:
    return ["None"]


@_encode.register(bool)
def _(value: bool) -> Encoded:
    return ["bool", value]


@_encode.register(int)
def _(value: int) -> Encoded:
    return ["int", str(value)]


@_encode.register(float)
def _(value: float) -> Encoded:
    return ["float", "nan" if math.isnan(value) else value.hex()]


@_encode.register(str)
def _(value: str) -> Encoded:
    return ["str", value]


@_encode.register(bytes)
@_encode.register(bytearray)
def _(value: bytes | bytearray) -> Encoded:
    return ["bytes", bytes(value).hex()]


@_encode.register(list)
def _(value: list) -> Encoded:
    return ["list", [encode_value(item) for item in value]]


@_encode.register(tuple)
def _(value: tuple) -> Encoded:
    return ["tuple", [encode_value(item) for item in value]]


@_encode.register(dict)
def _(value: dict) -> Encoded:
    pairs = [[encode_value(k), encode_value(v)] for k, v in value.items()]
    return ["dict", sorted(pairs, key=lambda pair: _canonical_json(pair[0]))]


@_encode.register(set)
@_encode.register(frozenset)
def _(value: set | frozenset) -> Encoded:
    return ["set", sorted((encode_value(item) for item in value), key=_canonical_json)]


@_encode.register(pathlib.PurePath)
def _(value: pathlib.PurePath) -> Encoded:
    return ["path", value.as_posix()]


@_encode.register(type)
def _(value: type) -> Encoded:
    return ["class", _qualified_name(value)]


@_encode.register(types.FunctionType)
@_encode.register(types.BuiltinFunctionType)
def _(value: Callable) -> Encoded:
    return ["function", _qualified_name(value)]


def _register_imported_libraries() -> None:
    """Register numpy/torch encoders once the user has imported them.

    ``import dagger_wf`` must not import numpy or torch; a value of theirs can only
    exist once the user imported them.
    """
    for name in [name for name in _LAZY_REGISTRARS if name in sys.modules]:
        _LAZY_REGISTRARS.pop(name)()


def _register_numpy() -> None:
    import numpy as np

    @_encode.register(np.generic)
    def _(value: np.generic) -> Encoded:
        return ["numpy.scalar", value.dtype.str, encode_value(value.item())]

    @_encode.register(np.ndarray)
    def _(value: np.ndarray) -> Encoded:
        if value.dtype.hasobject:
            raise _Unhashable("an array of Python objects has no canonical encoding")
        contiguous = np.ascontiguousarray(value)
        digest = hashlib.sha256(contiguous.view(np.uint8).reshape(-1)).hexdigest()
        return ["numpy.ndarray", value.dtype.str, list(value.shape), digest]


def _register_torch() -> None:
    import torch

    @_encode.register(torch.Tensor)
    def _(value: torch.Tensor) -> Encoded:
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest = hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()
        return ["torch.tensor", str(value.dtype), list(value.shape), digest]

    @_encode.register(torch.dtype)
    @_encode.register(torch.device)
    def _(value: object) -> Encoded:
        return [f"torch.{type(value).__name__}", str(value)]


_LAZY_REGISTRARS: dict[str, Callable[[], None]] = {
    "numpy": _register_numpy,
    "torch": _register_torch,
}


def module_name(obj: type | Callable) -> str:
    """The module that defines ``obj``; a script run directly is named after its file.

    A script run as ``python script.py`` is module ``__main__``; naming it ``script``
    instead gives the same name whether the file is run or imported.
    """
    module = getattr(obj, "__module__", None) or "?"
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m package.script
        return spec.name.removesuffix(".__main__")
    main_file = getattr(main, "__file__", None)
    return pathlib.Path(main_file).stem if main_file else module


def _qualified_name(obj: type | Callable) -> str:
    """``module.qualname`` of a module-level class or function; anything local is unhashable."""
    qualname = getattr(obj, "__qualname__", None)
    if not qualname or "<lambda>" in qualname or "<locals>" in qualname:
        raise _Unhashable(
            f"{obj!r} is a lambda or local definition; only module-level functions and "
            "classes have a stable name"
        )
    return f"{module_name(obj)}.{qualname}"


def _canonical_json(encoded: Encoded) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(kind: str, *ingredients: Encoded) -> str:
    """Hex sha256 of a kind-headed sequence of encoded ingredients."""
    payload = _canonical_json([kind, *ingredients]).encode("ascii")
    return hashlib.sha256(payload).hexdigest()


# ---------------------------------------------------------------- properties


def encode_properties(owner: str, values: Mapping[str, object]) -> Encoded:
    """Encode named property values, naming the property and owner when one cannot be."""
    return [[name, _encode_property(owner, name, values[name])] for name in sorted(values)]


def _encode_property(owner: str, name: str, value: object) -> Encoded:
    try:
        return encode_value(value)
    except (_Unhashable, RecursionError) as error:
        reason = error if isinstance(error, _Unhashable) else "it contains itself"
        raise UnhashablePropertyError(
            f"{owner} property {name!r} = {value!r} cannot be part of a cache key: "
            f"{reason}. Use a plain value (number, string, list, dict, enum, dataclass, "
            "module-level function or class), or move it to NONHASHED_ATTRIBUTES if it "
            "should not identify the state."
        ) from None


# ---------------------------------------------------------------- code version


def recipe_code_version(recipe_class: type) -> str:
    """The recipe's ``VERSION`` if set, else a digest of its normalised source.

    The source of every class in the recipe's MRO up to dagger_wf's own ``Recipe`` counts,
    so a recipe that inherits ``run()`` changes version when its base changes.
    """
    pinned = getattr(recipe_class, "VERSION", None)
    if pinned is not None:
        return f"VERSION:{pinned}"
    sources = [normalised_source(cls) for cls in _user_classes(recipe_class)]
    return "source:" + digest("Code", sources)


def _user_classes(recipe_class: type) -> Iterable[type]:
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
    roots.add(str(pathlib.Path(__file__).parent))  # dagger_wf itself, however installed
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
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError) as error:
        raise RecipeSourceUnavailableError(
            f"Cannot read the source of recipe {cls.__qualname__} ({error}), so its code "
            "version is unknown. Set a class attribute VERSION = '1' on it (and bump it "
            "whenever run() changes)."
        ) from None
    return " ".join(_meaningful_tokens(source))


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
                    emitted.append(_source_slice(lines, fstring_start, token.end))
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


# ---------------------------------------------------------------- keys


def root_key(state_class: type, properties: Mapping[str, object]) -> str:
    """Key of a root state: its class and its PROPERTIES values."""
    return digest("State", *root_key_ingredients(state_class, properties).values())


def root_key_ingredients(state_class: type, properties: Mapping[str, object]) -> dict[str, Encoded]:
    return {
        "state class": state_class.__qualname__,
        "state properties": encode_properties(f"State {state_class.__qualname__!r}", properties),
    }


def child_key(parent_key: str, recipe: RecipeIdentity) -> str:
    """Key of the state a recipe makes from the state whose key is ``parent_key``."""
    return digest("Recipe", *child_key_ingredients(parent_key, recipe).values())


def child_key_ingredients(parent_key: str, recipe: RecipeIdentity) -> dict[str, Encoded]:
    return {
        "parent key": parent_key,
        "recipe class": recipe.class_name,
        "recipe properties": encode_properties(f"Recipe {recipe.class_name!r}", recipe.properties),
        "recipe code version": recipe.code_version,
    }


def explain_key(state: Any) -> list[str]:
    """Lines listing each ingredient of a state's (or promise's) key, for debugging a miss."""
    state = getattr(state, "state", state)
    if state.recipe is None:
        ingredients = root_key_ingredients(type(state), state.property_values())
    else:
        ingredients = child_key_ingredients(state.parent_sha, identity_of(state.recipe))
    lines = [f"key {state.sha()}"]
    lines += [f"  {name}: {_canonical_json(value)}" for name, value in ingredients.items()]
    return lines
