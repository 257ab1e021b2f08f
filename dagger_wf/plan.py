"""The plan: every state the user defined, by key, in definition (hence topological) order."""

from __future__ import annotations

import dataclasses
from typing import Any

from .hashing import RecipeIdentity
from .state import ExperimentState
from .steps import StepFunction, StepRecipe


@dataclasses.dataclass
class PlannedState:
    """One state to compute: a root (``recipe is None``) or a recipe applied to a parent."""

    key: str
    parent_key: str | None
    recipe: StepRecipe | None
    identity: RecipeIdentity | None = None  # the recipe's, fixed when it was applied
    code: str | None = None  # digest of the recipe's code snapshot, set before running
    tags: set[str] = dataclasses.field(default_factory=set)
    functions: list[StepFunction] = dataclasses.field(default_factory=list)
    root_properties: dict[str, Any] | None = None
    # Every keyword spawn_new_tree got, for initialize_state (root_properties: the hashed ones).
    root_arguments: dict[str, Any] | None = None
    stored: bool = False  # computed before this plan (to_promise()): only extended by it


@dataclasses.dataclass
class Plan:
    """What to run. The same state defined twice is one entry carrying both sets of tags."""

    state_class: type[ExperimentState]
    states: dict[str, PlannedState] = dataclasses.field(default_factory=dict)
    current_tags: list[str] = dataclasses.field(default_factory=list)
    seed: int | None = None  # the run's own seed, if the user gave one

    def add_root(
        self, key: str, properties: dict[str, Any], arguments: dict[str, Any] | None = None
    ) -> PlannedState:
        return self._add(
            PlannedState(key, None, None, root_properties=properties, root_arguments=arguments)
        )

    def add_child(
        self, key: str, parent_key: str, recipe: StepRecipe, identity: RecipeIdentity
    ) -> PlannedState:
        return self._add(PlannedState(key, parent_key, recipe, identity))

    def add_stored(self, key: str) -> PlannedState:
        """A state already in the store, for new steps to start from; it takes no tags."""
        return self.states.setdefault(key, PlannedState(key, None, None, stored=True))

    def _add(self, planned: PlannedState) -> PlannedState:
        existing = self.states.setdefault(planned.key, planned)
        existing.tags.update(self.current_tags)
        return existing

    def defines(self, key: str) -> bool:
        return key in self.states

    def add_function(self, key: str, function: StepFunction) -> None:
        self.states[key].functions.append(function)

    def leaves(self) -> list[PlannedState]:
        parents = {planned.parent_key for planned in self.states.values()}
        return [planned for key, planned in self.states.items() if key not in parents]

    def lineage(self, key: str) -> Plan:
        """The part of the plan needed to compute ``key``: it and its ancestors, no Functions."""
        keys = []
        step: str | None = key
        while step is not None:
            keys.append(step)
            step = self.states[step].parent_key
        states = {
            key: dataclasses.replace(self.states[key], functions=[]) for key in reversed(keys)
        }
        return Plan(self.state_class, states, seed=self.seed)
