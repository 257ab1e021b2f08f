"""Recipe (a step that makes a new state) and Function (a step that only looks at one)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .declarations import check_declared_names, public_names
from .errors import ForeignPromiseError, RecipeDefinitionError, UnknownResourceError
from .hashing import RecipeIdentity, child_key, module_name, recipe_code_version
from .promise import ExperimentStatePromise

if TYPE_CHECKING:
    from .state import ExperimentState


def _require_promise(step: object, target: object) -> ExperimentStatePromise:
    if not isinstance(target, ExperimentStatePromise):
        raise ForeignPromiseError(
            f"{type(step).__name__} was applied to {target!r}; apply it to the promise "
            "returned by exp.spawn_new_tree(...) or by another recipe call."
        )
    if not target.experiment_object.plan.defines(target.key):
        raise ForeignPromiseError(
            f"{type(step).__name__} was applied to a promise of state {target.key[:12]}, "
            "which its experiment does not define (a promise made by hand, or for another "
            "Experiment?); apply it to a promise that spawn_new_tree() or a recipe returned."
        )
    return target


# What a recipe may ask of a cluster, and the type of each value (Snakemake resource names,
# as the SLURM executor plugin reads them).
RESOURCE_TYPES: dict[str, type] = {
    "runtime": int,  # minutes
    "mem_mb": int,
    "mem_mb_per_cpu": int,
    "disk_mb": int,
    "cpus_per_task": int,
    "gpu": int,
    "gpu_model": str,
    "gres": str,
    "constraint": str,
    "qos": str,
    "nodes": int,
    "tasks": int,
    "slurm_partition": str,
    "slurm_account": str,
    "slurm_extra": str,
}


def _validate_resources(cls: type[Recipe]) -> None:
    resources = cls.RESOURCES
    if not isinstance(resources, dict):
        raise UnknownResourceError(
            f"{cls.__qualname__}.RESOURCES must be a dict such as {{'runtime': 30}}, "
            f"not {type(resources).__name__}."
        )
    for name, value in resources.items():
        expected = RESOURCE_TYPES.get(name)
        if expected is None:
            raise UnknownResourceError(
                f"{cls.__qualname__}.RESOURCES has unknown key {name!r}; known keys: "
                f"{sorted(RESOURCE_TYPES)}."
            )
        if type(value) is not expected or (isinstance(value, int) and value < 0):
            raise UnknownResourceError(
                f"{cls.__qualname__}.RESOURCES[{name!r}] = {value!r} must be "
                f"{'a non-negative int' if expected is int else 'a str'}."
            )


class Recipe:
    """A transition from a state to a new child state.

    Declare ``PROPERTIES`` (attribute names set in ``__init__``; they enter the child's
    key together with the class name and its code version) and implement ``run(state)``,
    which changes the state it is given and returns it. Set ``VERSION`` to pin the code
    version by hand, e.g. when the source cannot be read.

    For cluster runs, ``RESOURCES`` declares what one run needs (keys of
    :data:`RESOURCE_TYPES`, e.g. ``{"runtime": 30, "mem_mb": 4000, "gpu": 1}``). A recipe
    with RESOURCES gets a cluster job of its own; one without is fused with its neighbours
    into one job. ``OWN_JOB = True`` or ``False`` overrides that choice.
    """

    PROPERTIES: ClassVar[list[str]] = []
    VERSION: ClassVar[str | None] = None
    RESOURCES: ClassVar[dict[str, int | str]] = {}
    OWN_JOB: ClassVar[bool | None] = None

    @classmethod
    def needs_own_job(cls) -> bool:
        return bool(cls.RESOURCES) if cls.OWN_JOB is None else cls.OWN_JOB

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _validate_resources(cls)
        # A stored state's recipe is its RecipeIdentity: its field names are taken too.
        reserved = public_names(Recipe) | {f.name for f in dataclasses.fields(RecipeIdentity)}
        check_declared_names(cls, "PROPERTIES", cls.PROPERTIES, reserved)

    def run(self, state: ExperimentState) -> ExperimentState:
        raise NotImplementedError(f"{type(self).__qualname__} must implement run(state)")

    def property_values(self) -> dict[str, Any]:
        missing = [name for name in self.PROPERTIES if not hasattr(self, name)]
        if missing:
            raise RecipeDefinitionError(
                f"{type(self).__qualname__} declares {missing} in PROPERTIES but the recipe "
                f"has no such attribute; set self.{missing[0]} = ... in __init__."
            )
        return {name: getattr(self, name) for name in self.PROPERTIES}

    def identity(self) -> RecipeIdentity:
        """What of this recipe enters its children's keys (and is stored with them)."""
        return RecipeIdentity(
            type(self).__qualname__,
            module_name(type(self)),
            self.property_values(),
            recipe_code_version(type(self)),
        )

    def __call__(self, promise: ExperimentStatePromise) -> ExperimentStatePromise:
        """Define (not run) the state this recipe makes from ``promise``.

        The recipe is copied as it is now: changing it afterwards (to apply it again
        with other values) does not change the state defined here.
        """
        promise = _require_promise(self, promise)
        frozen = copy.copy(self)
        try:
            for name in self.PROPERTIES:
                setattr(frozen, name, copy.deepcopy(getattr(self, name)))
        except Exception:
            child_key(promise.key, self.identity())  # names an unhashable property
            raise
        identity = frozen.identity()
        key = child_key(promise.key, identity)
        promise.experiment_object.plan.add_child(key, promise.key, frozen, identity)
        return ExperimentStatePromise(promise.experiment_object, key)

    def __repr__(self) -> str:
        properties = ", ".join(f"{k}={v!r}" for k, v in self.property_values().items())
        return f"{type(self).__qualname__}({properties})"


class Function:
    """Apply ``op(state)`` to a state without making a new one (evaluation, logging).

    It runs on every ``exp.run()``, also when the state itself is cached; what ``op``
    changes on the state is not stored.
    """

    def __init__(self, op: Callable[[ExperimentState], Any]) -> None:
        self.op = op

    @property
    def name(self) -> str:
        return getattr(self.op, "__qualname__", repr(self.op))

    def __call__(self, promise: ExperimentStatePromise) -> ExperimentStatePromise:
        promise = _require_promise(self, promise)
        promise.experiment_object.plan.add_function(promise.key, self)
        return promise

    def __repr__(self) -> str:
        return f"Function({self.name})"


function = Function  # the original's lower-case alias, for decorator style
