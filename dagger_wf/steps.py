"""What the tree needs of recipes and Functions, and the state-side pieces of one step.

The protocols are typed here so that the definition layer never imports the recipe
module above it; the functions are what a runner does to a state while a step runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar, Protocol

from .hashing import RecipeIdentity
from .state import ExperimentState


class StepRecipe(Protocol):
    """What the tree needs of a recipe (a :class:`~dagger_wf.Recipe`): run it, and where."""

    RESOURCES: ClassVar[dict[str, int | str]]

    def run(self, state: ExperimentState) -> ExperimentState: ...

    def needs_own_job(self) -> bool: ...

    def identity(self) -> RecipeIdentity: ...


class StepFunction(Protocol):
    """What the tree needs of a :class:`~dagger_wf.Function`: its name and its op."""

    @property
    def name(self) -> str: ...

    @property
    def op(self) -> Callable[[ExperimentState], object]: ...


def step_child(parent: ExperimentState, recipe: StepRecipe, key: str) -> ExperimentState:
    """The child a recipe will change, with its key fixed: known from the plan, it is
    never recomputed where the recipe's source may be absent (a cluster node)."""
    child = parent.new_state(recipe)
    child.dagger.key = key
    return child


@contextlib.contextmanager
def recording(state: ExperimentState) -> Iterator[None]:
    """Inside the block, ``state.dagger.log_metric`` records (a recipe or Function runs)."""
    state.dagger.recording = True
    try:
        yield
    finally:
        state.dagger.recording = False


def logged_metrics(state: ExperimentState) -> dict[str, list[list[float]]]:
    """What was logged on ``state`` in this process (not what was stored before)."""
    return dict(state.dagger.logged)


def adopt_result(
    result: ExperimentState, made_from: ExperimentState, key: str, recipe: StepRecipe
) -> ExperimentState:
    """Whatever object ``run()`` returned is the state ``key`` names: it takes the key,
    lineage, storage and logged metrics of the child it was made from."""
    if not result.dagger.belongs_to(result):  # built by hand from another state's dict
        result.dagger = result.dagger.bound_to(result)
    result.dagger.recording = False
    result.dagger.logged = {**made_from.dagger.logged, **result.dagger.logged}
    result.dagger.key, result.parent_sha, result.recipe = key, made_from.parent_sha, recipe
    result.root_state = False
    result.dagger.storage = made_from.dagger.storage
    return result
