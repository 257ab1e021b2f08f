"""The plan: every state the user defined, by key, in definition (hence topological) order."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from .hashing import RecipeIdentity
from .state import ExperimentState, StepFunction, StepRecipe


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


@dataclasses.dataclass
class Plan:
    """What to run. The same state defined twice is one entry carrying both sets of tags.

    Threads may define states at once; a runner runs a :meth:`snapshot`, which states
    defined meanwhile do not change. The tags of ``exp.tag`` blocks are each thread's own.
    """

    state_class: type[ExperimentState]
    states: dict[str, PlannedState] = dataclasses.field(default_factory=dict)
    seed: int | None = None  # the run's own seed, if the user gave one
    _lock: threading.RLock = dataclasses.field(
        default_factory=threading.RLock, init=False, repr=False, compare=False
    )
    _per_thread: threading.local = dataclasses.field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )

    @property
    def current_tags(self) -> list[str]:
        """The tags of the ``exp.tag`` blocks the calling thread is in."""
        tags: list[str] | None = getattr(self._per_thread, "tags", None)
        if tags is None:
            tags = self._per_thread.tags = []
        return tags

    def __getstate__(self) -> dict[str, Any]:
        """A pickled plan (a Snakemake workflow's) holds its states, not its locks."""
        with self._lock:
            return {"state_class": self.state_class, "states": self.states, "seed": self.seed}

    def __setstate__(self, fields: dict[str, Any]) -> None:
        self.__init__(**fields)  # type: ignore[misc]

    def snapshot(self) -> Plan:
        """A copy to run: what other threads define meanwhile does not change it."""
        with self._lock:
            states = {key: _copied(planned) for key, planned in self.states.items()}
        return Plan(self.state_class, states, self.seed)

    def add_root(self, key: str, properties: dict[str, Any]) -> PlannedState:
        return self._add(PlannedState(key, None, None, root_properties=properties))

    def add_child(
        self, key: str, parent_key: str, recipe: StepRecipe, identity: RecipeIdentity
    ) -> PlannedState:
        return self._add(PlannedState(key, parent_key, recipe, identity))

    def _add(self, planned: PlannedState) -> PlannedState:
        tags = self.current_tags
        with self._lock:
            existing = self.states.setdefault(planned.key, planned)
            existing.tags.update(tags)
        return existing

    def defines(self, key: str) -> bool:
        return key in self.states

    def add_function(self, key: str, function: StepFunction) -> None:
        with self._lock:
            self.states[key].functions.append(function)

    def leaves(self) -> list[PlannedState]:
        with self._lock:
            parents = {planned.parent_key for planned in self.states.values()}
            return [planned for key, planned in self.states.items() if key not in parents]

    def lineage(self, key: str) -> Plan:
        """The part of the plan needed to compute ``key``: it and its ancestors, no Functions."""
        keys = []
        step: str | None = key
        with self._lock:
            while step is not None:
                keys.append(step)
                step = self.states[step].parent_key
            states = {key: _copied(self.states[key], functions=False) for key in reversed(keys)}
        return Plan(self.state_class, states, seed=self.seed)


def _copied(planned: PlannedState, functions: bool = True) -> PlannedState:
    """A copy whose tags and Functions do not change when the plan's do."""
    kept = list(planned.functions) if functions else []
    return dataclasses.replace(planned, tags=set(planned.tags), functions=kept)
