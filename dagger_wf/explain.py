"""Why a state has the key it has: each ingredient of the key, readable."""

from __future__ import annotations

from .hashing import (
    canonical_json,
    child_key_ingredients,
    identity_of,
    root_key_ingredients,
)
from .promise import ExperimentStatePromise
from .state import ExperimentState


def explain_key(state: ExperimentState | ExperimentStatePromise) -> list[str]:
    """Lines listing each ingredient of a state's (or promise's) key, for debugging a miss."""
    defined = state.state if isinstance(state, ExperimentStatePromise) else state
    if defined.parent_sha is None:
        ingredients = root_key_ingredients(type(defined), defined.dagger.properties())
    elif defined.recipe is None:  # made by new_state() by hand
        ingredients = {"parent key": defined.parent_sha, "recipe": None}
    else:
        ingredients = child_key_ingredients(defined.parent_sha, identity_of(defined.recipe))
    lines = [f"key {defined.sha()}"]
    lines += [f"  {name}: {canonical_json(value)}" for name, value in ingredients.items()]
    return lines
