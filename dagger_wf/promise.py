"""ExperimentStatePromise: a state defined in the tree but not yet run."""

from __future__ import annotations

from typing import Protocol

from .hashing import RecipeIdentity
from .state import ExperimentState, TreeOwner
from .steps import StepFunction, StepRecipe


class TreeDefinition(Protocol):
    """Where recipes and Functions applied to a promise are written down (the Plan)."""

    def add_child(
        self, key: str, parent_key: str, recipe: StepRecipe, identity: RecipeIdentity
    ) -> object: ...

    def add_function(self, key: str, function: StepFunction) -> None: ...

    def defines(self, key: str) -> bool: ...


class PromiseOwner(TreeOwner, Protocol):
    """What a promise needs of its experiment: where to define steps, and to compute."""

    @property
    def plan(self) -> TreeDefinition: ...

    def defined_state(self, key: str) -> ExperimentState: ...


class ExperimentStatePromise:
    """A state that will exist once the experiment runs; its key is already known.

    Apply a :class:`~dagger_wf.Recipe` to it to define a child, or a
    :class:`~dagger_wf.Function` to evaluate it. ``get()`` computes it now.
    """

    def __init__(self, experiment_object: PromiseOwner, key: str) -> None:
        self.experiment_object = experiment_object
        self.key = key

    def sha(self) -> str:
        return self.key

    @property
    def state(self) -> ExperimentState:
        """The defined (not yet computed) state object, e.g. for ``explain_key``."""
        return self.experiment_object.defined_state(self.key)

    def get(self, scheduler: str = "single-threaded") -> ExperimentState:
        """Compute this state (and what it needs), then return it with its payload loaded."""
        return self.experiment_object.compute(self.key, scheduler=scheduler)

    def __repr__(self) -> str:
        return f"ExperimentStatePromise(sha={self.key[:12]})"
