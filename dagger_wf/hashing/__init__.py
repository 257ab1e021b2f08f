"""The cache key, computed in one place: ``keys`` encodes values and digests ingredients,
``source`` normalises a recipe's code. Imports nothing of dagger_wf but its errors."""

from .keys import (
    Encoded,
    Identified,
    RecipeIdentity,
    canonical_json,
    child_key,
    child_key_ingredients,
    digest,
    encode_value,
    identity_of,
    module_name,
    recipe_code_version,
    root_key,
    root_key_ingredients,
    short_key,
    slot_key,
)
from .source import normalised_code, normalised_source, parse_source, read_source

__all__ = [
    "Encoded",
    "Identified",
    "RecipeIdentity",
    "canonical_json",
    "child_key",
    "child_key_ingredients",
    "digest",
    "encode_value",
    "identity_of",
    "module_name",
    "normalised_code",
    "normalised_source",
    "parse_source",
    "read_source",
    "recipe_code_version",
    "root_key",
    "root_key_ingredients",
    "short_key",
    "slot_key",
]
