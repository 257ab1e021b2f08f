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

import dataclasses
import enum
import functools
import hashlib
import json
import math
import pathlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import UnhashablePropertyError
from .source import normalised_source, user_classes

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


class Identified(Protocol):
    """A live recipe: it knows its own identity."""

    def identity(self) -> RecipeIdentity: ...


def identity_of(recipe: RecipeIdentity | Identified) -> RecipeIdentity:
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
    return ["dict", sorted(pairs, key=lambda pair: canonical_json(pair[0]))]


@_encode.register(set)
@_encode.register(frozenset)
def _(value: set | frozenset) -> Encoded:
    return ["set", sorted((encode_value(item) for item in value), key=canonical_json)]


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


@_encode.register(functools.partial)
def _(value: functools.partial) -> Encoded:
    """A partial of a module-level function (``partial(prune.random_unstructured,
    amount=0.5)``): the function's name, its bound arguments and keywords."""
    keywords = [[name, encode_value(value.keywords[name])] for name in sorted(value.keywords)]
    arguments = [encode_value(argument) for argument in value.args]
    return ["partial", encode_value(value.func), arguments, keywords]


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
        digest = hashlib.sha256(contiguous.view(np.uint8).reshape(-1).data).hexdigest()
        return ["numpy.ndarray", value.dtype.str, list(value.shape), digest]


def _register_torch() -> None:
    import torch

    @_encode.register(torch.Tensor)
    def _(value: torch.Tensor) -> Encoded:
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest = hashlib.sha256(flat.view(torch.uint8).numpy().data).hexdigest()
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


def canonical_json(encoded: Encoded) -> str:
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(kind: str, *ingredients: Encoded) -> str:
    """Hex sha256 of a kind-headed sequence of encoded ingredients."""
    payload = canonical_json([kind, *ingredients]).encode("ascii")
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
        remedy = (
            "leave it out of PROPERTIES and set the recipe's VERSION instead (bump it "
            "whenever the value changes)"
            if owner.startswith("Recipe")
            else "move it to NONHASHED_ATTRIBUTES if it should not identify the state"
        )
        raise UnhashablePropertyError(
            f"{owner} property {name!r} = {value!r} cannot be part of a cache key: "
            f"{reason}. Use a plain value (number, string, list, dict, enum, dataclass), "
            "a module-level function or class (or a functools.partial of one with such "
            f"arguments), or {remedy}."
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
    sources = [normalised_source(cls) for cls in user_classes(recipe_class)]
    return "source:" + digest("Code", sources)


# ---------------------------------------------------------------- keys


def root_key(state_class: type, properties: Mapping[str, object]) -> str:
    """Key of a root state: its class and its PROPERTIES values."""
    return digest("State", *root_key_ingredients(state_class, properties).values())


def root_key_ingredients(state_class: type, properties: Mapping[str, object]) -> dict[str, Encoded]:
    return {
        "state class": state_class.__qualname__,
        "state properties": encode_properties(f"State {state_class.__qualname__!r}", properties),
    }


def child_key(parent_key: str, recipe: RecipeIdentity | None) -> str:
    """Key of the state a recipe makes from the state whose key is ``parent_key``; with no
    recipe (a child made by hand with ``new_state()``), a key of its own, never the
    parent's, and the same for the same parent."""
    if recipe is None:
        return digest("State.new_state", parent_key)
    return digest("Recipe", *child_key_ingredients(parent_key, recipe).values())


def slot_key(parent_key: str, recipe: RecipeIdentity) -> str:
    """What a child's key has in common with its other code versions: the parent key, the
    recipe class and its PROPERTIES values, without the code version. Two stored states
    with one slot key are the same step, edited in between."""
    ingredients = child_key_ingredients(parent_key, recipe)
    del ingredients["recipe code version"]
    return digest("Slot", *ingredients.values())


def child_key_ingredients(parent_key: str, recipe: RecipeIdentity) -> dict[str, Encoded]:
    return {
        "parent key": parent_key,
        "recipe class": recipe.class_name,
        "recipe properties": encode_properties(f"Recipe {recipe.class_name!r}", recipe.properties),
        "recipe code version": recipe.code_version,
    }


SHORT_KEY_LENGTH = 12  # the prefix every table, plot, drawing and message shows


def short_key(key: str | None) -> str:
    """The prefix of ``key`` shown to people (any unique prefix finds the state again)."""
    return (key or "")[:SHORT_KEY_LENGTH]
