"""One step: the state before it, its recipe (or ``initialize_state``) run with its seed,
and a check of what the recipe returned. Computing a state, re-running it to check its
purity and applying a Function all run steps this way."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import RecipeReturnError, RecipeSourceUnavailableError, WorkflowOutdatedError
from ..hashing import recipe_code_version
from ..plan import PlannedState
from ..state import ExperimentState, load_state, new_root
from ..steps import adopt_result, recording, step_child
from ..store import ExperimentStore
from ..tracking.seeding import seed_everything


def _checked_result(
    planned: PlannedState, given: ExperimentState, result: object
) -> ExperimentState:
    """What ``run(given)`` returned, if it can be the state ``planned.key`` names: the
    state given, or a new state of the same class."""
    recipe = type(planned.recipe).__qualname__
    if not isinstance(result, ExperimentState):
        raise RecipeReturnError(
            f"{recipe}.run() returned {type(result).__name__}, not an ExperimentState; "
            "end run() with `return state`."
        )
    if not isinstance(result, type(given)):
        raise RecipeReturnError(
            f"{recipe}.run() returned a {type(result).__qualname__}, but the tree holds "
            f"{type(given).__qualname__} states; change the state run() was given and return it."
        )
    if result is not given and (result.root_state or result.dagger.record is not None):
        raise RecipeReturnError(
            f"{recipe}.run() returned another state of the tree ({result.sha()[:12]}) "
            "instead of the state it was given; storing it would change that state's key. "
            "Change the state run() was given and return it."
        )
    return result


def _imported_by_name(cls: type) -> bool:
    """Whether ``cls`` is the class its module and qualified name give in this process
    (a class cloudpickle shipped by value is not: its module is another __main__)."""
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def _check_code_version(planned: PlannedState) -> None:
    """The recipe's code must still be the code its key was made from: a module edited
    after the tree was defined (a Snakemake job imports it afresh) would otherwise store
    another code's result under this key."""
    if planned.identity is None or planned.identity.code_version.startswith("VERSION:"):
        return
    recipe_class = type(planned.recipe)
    if not _imported_by_name(recipe_class):
        return  # shipped by value (defined in a script): exactly the code defined
    try:
        current = recipe_code_version(recipe_class)
    except RecipeSourceUnavailableError:
        return
    if current != planned.identity.code_version:
        raise WorkflowOutdatedError(
            f"The code of {type(planned.recipe).__qualname__} changed since this tree was "
            f"defined, so state {planned.key[:12]} would be computed by other code than its "
            "key says. Define the tree again (emit the workflow again, or rerun the script)."
        )


def initial_state(
    store: ExperimentStore,
    planned: PlannedState,
    state_class: type[ExperimentState],
    load_parent: Callable[[str], ExperimentState] | None = None,
) -> ExperimentState:
    """The state before its step runs: the root's properties, or a copy of the parent
    (loaded by ``load_parent(key)``; default: as stored, damage raising)."""
    if planned.recipe is None or planned.parent_key is None:
        return new_root(state_class, planned.root_properties or {}, planned.key, store)
    _check_code_version(planned)
    load_parent = load_parent or functools.partial(load_state, store, state_class=state_class)
    return step_child(load_parent(planned.parent_key), planned.recipe, planned.key)


_STEP = threading.local()


def step_running() -> bool:
    """Whether this thread runs a step now: a recipe, ``initialize_state`` or a Function."""
    return getattr(_STEP, "running", False)


@contextlib.contextmanager
def running_step(state: ExperimentState) -> Iterator[None]:
    """``recording(state)``, with this thread known to run a step meanwhile."""
    outer, _STEP.running = step_running(), True
    try:
        with recording(state):
            yield
    finally:
        _STEP.running = outer


def run_step(planned: PlannedState, state: ExperimentState, seed: int) -> ExperimentState:
    seed_everything(seed)
    state.dagger.seed = seed
    if planned.recipe is None:
        given = planned.root_arguments
        arguments = planned.root_properties if given is None else given  # an older plan
        with running_step(state):
            state.initialize_state(**(arguments or {}))
        return state
    with running_step(state):
        result = _checked_result(planned, state, planned.recipe.run(state))
    return adopt_result(result, state, planned.key, planned.recipe)
