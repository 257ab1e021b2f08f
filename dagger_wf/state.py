"""ExperimentState: one node of the tree, and how it is written to and read from storage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .bookkeeping import Bookkeeping
from .declarations import check_state_declarations
from .errors import (
    PayloadNotComputedError,
    SlimStateError,
    StateNotComputedError,
    StateNotFoundError,
)
from .hashing import Identified, RecipeIdentity, child_key, identity_of, root_key
from .records import StateRecord, Status
from .storage import StateStorage


class TreeOwner(Protocol):
    """What a state needs of its experiment (the Experiment implements it), typed here so
    the definition layer never imports the experiment above it."""

    @property
    def store(self) -> StateStorage: ...

    @property
    def root(self) -> ExperimentState | None: ...

    def compute(self, key: str, scheduler: str = ...) -> ExperimentState: ...

    def promise_of(self, state: ExperimentState) -> Any: ...


# The attributes every state carries, never part of its payload: the original dagger's,
# and ``dagger``, behind which is all that dagger_wf adds (see bookkeeping.py).
STATE_ATTRIBUTES = frozenset(
    [
        "parent",
        "parent_sha",
        "children",
        "root_state",
        "recipe",
        "experiment_object",
        "from_cache",
        "slim_loaded",
        "tags",
        "save_pre_hooks",
        "save_post_hooks",
        "load_post_hooks",
        "dagger",
    ]
)
# The names a user cannot declare: those attributes, and the original's methods and
# properties that a state has. Every other name is the user's.
# ``state.record`` means ``state.dagger.record`` (and so on) where the state's class does
# not declare the name itself: the names stay the user's, the old spelling still reads.
SHORTCUTS = frozenset({"record", "status", "error", "seed", "metrics", "log_metric", "load_metric"})
RESERVED_NAMES = STATE_ATTRIBUTES | frozenset(
    [
        "PROPERTIES",
        "NONHASHED_ATTRIBUTES",
        "initialize_state",
        "sha",
        "slim_sha",
        "root",
        "directory",
        "path",
        "new_state",
        "to_promise",
        "save",
        "restore",
        "deflate",
        "lazy_load",
    ]
)


class ExperimentState:
    """One point of an experiment: hashed PROPERTIES plus a payload of NONHASHED_ATTRIBUTES.

    Subclass it, declare ``PROPERTIES`` (they identify the root and enter its key) and
    ``NONHASHED_ATTRIBUTES`` (the payload: inherited by children, never hashed), and
    implement ``initialize_state(**experiment_arguments)`` to build the root's payload.
    dagger_wf builds every state as ``cls(parent_sha=..., experiment_object=...)``, so an
    ``__init__`` override with that signature that calls ``super().__init__`` works.
    """

    PROPERTIES: ClassVar[list[str]] = []
    NONHASHED_ATTRIBUTES: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_state_declarations(cls, RESERVED_NAMES)

    def __init__(
        self, parent_sha: str | None = None, experiment_object: TreeOwner | None = None
    ) -> None:
        self.parent_sha = parent_sha
        self.experiment_object = experiment_object
        self.from_cache = False
        self.root_state = False
        self.slim_loaded = False
        self.recipe: Identified | RecipeIdentity | None = None
        self.tags: list[str] = []
        self.parent: ExperimentState | None = None
        self.children: set[ExperimentState] = set()
        self.save_pre_hooks: list[Callable[[], Any]] = []
        self.save_post_hooks: list[Callable[[], Any]] = []
        self.load_post_hooks: list[Callable[[], Any]] = []  # run after the payload is loaded
        self.dagger = Bookkeeping(self)  # status, error, seed, metrics: dagger_wf's own
        for name in [*self.PROPERTIES, *self.NONHASHED_ATTRIBUTES]:
            setattr(self, name, None)

    def initialize_state(self, **kwargs: Any) -> None:
        """Build the root's payload; the properties are already set. Override it."""

    # ------------------------------------------------------------ identity

    def sha(self) -> str:
        """The cache key: fixed once the state is part of a tree, computed otherwise."""
        if self.dagger.key is not None:
            return self.dagger.key
        if self.parent_sha is not None:
            recipe = identity_of(self.recipe) if self.recipe is not None else None
            return child_key(self.parent_sha, recipe)
        return root_key(type(self), self.dagger.properties())

    # ------------------------------------------------------------ tree links

    @property
    def directory(self) -> Path | None:
        """The experiment directory this state is stored in (None for a free state)."""
        storage = self.dagger.find_storage()
        return storage.directory if storage is not None else None

    @property
    def root(self) -> ExperimentState:
        """The root this state descends from (its experiment's root when not linked)."""
        state = self
        while state.parent is not None:
            state = state.parent
        if state.root_state or self.experiment_object is None:
            return state
        return self.experiment_object.root or state

    def new_state(self, recipe: Identified | None = None) -> ExperimentState:
        """A child of this state: PROPERTIES and NONHASHED_ATTRIBUTES are inherited (by
        reference, not copied), its key follows from this key and ``recipe``."""
        child = type(self)(parent_sha=self.sha(), experiment_object=self.experiment_object)
        if self.dagger.pending or self.slim_loaded:  # no payload to inherit: made on demand
            defer_payload(child)
        inherited = [] if child.dagger.pending else self.NONHASHED_ATTRIBUTES
        for name in [*self.PROPERTIES, *inherited]:
            setattr(child, name, self.__dict__.get(name))
        child.recipe = recipe
        child.tags = list(self.tags)
        child.dagger.storage = self.dagger.storage
        return child

    # ------------------------------------------------------------ storage

    def to_promise(self) -> Any:
        """A promise of this restored or computed state, for new recipes and Functions."""
        if self.experiment_object is None:
            raise StateNotFoundError(
                f"State {self.sha()[:12]} belongs to no experiment; take it from "
                "Experiment.restore(directory).graph, or use a promise a recipe returned."
            )
        return self.experiment_object.promise_of(self)

    @property
    def path(self) -> Path:
        """Where this state's payload is (or will be) stored."""
        return self.dagger.required_storage().payload_path(self.sha())

    @property
    def slim_sha(self) -> str | None:
        """The key of a slim state (payload not loaded); None when it is full."""
        return self.sha() if self.slim_loaded else None

    def save(self) -> None:
        """Store this state (payload, then metadata) between its save hooks: one built by
        hand, or one whose payload a user changed. A slim state, or one the plan defines
        that no run computed yet, has no payload to save."""
        if self.slim_loaded:
            raise SlimStateError(
                f"State {self.sha()[:12]} is slim: saving it would store an empty payload. "
                "Call state.restore() first."
            )
        if self.dagger.pending:
            key = self.sha()[:12]
            raise StateNotComputedError(f"State {key} is defined, not computed; exp.run() it.")
        record = self.dagger.record
        details = record.run_details() if record else {}
        identity = identity_of(self.recipe) if self.recipe is not None else None
        store_state(self.dagger.required_storage(), self, identity, details)

    def restore(self) -> bool:
        """Load the stored payload into this object; False if the state was never stored."""
        storage = self.dagger.required_storage()
        if not storage.is_done(self.sha()):
            return False
        fill_payload(self, storage, storage.read_record(self.sha()))
        return True

    def deflate(self) -> bool:
        """Drop the payload from memory, keeping key, properties, tags and links."""
        for name in [name for name in self.__dict__ if in_payload(self, name)]:
            del self.__dict__[name]
        self.slim_loaded = True
        return True

    @contextlib.contextmanager
    def lazy_load(self) -> Iterator[ExperimentState]:
        """Full (payload loaded) inside the block, slim again after it."""
        if not self.restore():
            raise StateNotComputedError(
                f"State {self.sha()[:12]} has no stored payload to load; run the experiment."
            )
        try:
            yield self
        finally:
            self.deflate()

    # ------------------------------------------------------------ python protocols

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that are not set: explain a payload read on a slim
        # state; give the shortcuts to state.dagger that the class does not declare.
        state, declared = self.__dict__, name in type(self).NONHASHED_ATTRIBUTES
        bookkeeping: Bookkeeping | None = state.get("dagger")
        mine = declared or name in type(self).PROPERTIES
        if bookkeeping is not None and name in SHORTCUTS and not mine:
            return getattr(bookkeeping, name)
        if bookkeeping is not None and bookkeeping.pending and declared:
            compute_on_demand(self, name)
            if name in state:
                return state[name]
        if bookkeeping is not None and state.get("slim_loaded") and declared:
            key = str(bookkeeping.key)[:12]
            record = bookkeeping.record
            if record is not None and record.status is Status.FAILED:
                raise SlimStateError(
                    f"State {key} failed, so it has no {name!r}; its traceback is in "
                    f"state.dagger.error:\n{record.error}"
                )
            raise SlimStateError(
                f"{name!r} is part of the payload of state {key}, which is slim (payload "
                "not loaded). Call state.restore() first, or use `with state.lazy_load():`."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickling drops the experiment and the tree links, which are rebuilt on load."""
        state = dict(self.__dict__)
        del state["experiment_object"]
        state.update(parent=None, children=set())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.experiment_object = None

    def __copy__(self) -> ExperimentState:
        """``copy.copy``: as pickling copies, with bookkeeping of its own (the state's
        ``dagger`` speaks for one state only)."""
        copied = type(self).__new__(type(self))
        copied.__setstate__(self.__getstate__())
        copied.dagger = self.dagger.bound_to(copied)
        return copied

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sha={self.sha()[:12]}, tags={sorted(self.tags)})"


# ---------------------------------------------------------------- between states and storage


def defer_payload(state: ExperimentState) -> ExperimentState:
    """Mark ``state`` defined but not computed: it has no payload until one of its
    NONHASHED_ATTRIBUTES is read, which loads it (or computes and stores it) then."""
    for name in state.NONHASHED_ATTRIBUTES:
        state.__dict__.pop(name, None)
    state.dagger.pending = True
    return state


def in_payload(state: ExperimentState, name: str) -> bool:
    """Whether attribute ``name`` is stored in the payload: any but the state's own
    attributes and its PROPERTIES (kept in its record)."""
    return name not in STATE_ATTRIBUTES and name not in state.PROPERTIES


def payload_of(state: ExperimentState) -> dict[str, Any]:
    """Everything stored apart from the metadata: the NONHASHED_ATTRIBUTES and any other
    attribute a recipe set."""
    return {name: value for name, value in vars(state).items() if in_payload(state, name)}


def compute_on_demand(state: ExperimentState, name: str) -> None:
    """Load, or compute and store (with its ancestors), the payload of a state defined
    but not computed: as in the original dagger, ``exp.root.model`` is there at once."""
    storage, key, owner = state.dagger.find_storage(), state.sha(), state.experiment_object
    with contextlib.suppress(StateNotFoundError):  # not defined there: cannot compute
        if storage is not None and not storage.is_done(key) and owner is not None:
            owner.compute(key)
    if storage is None or not storage.is_done(key):
        raise PayloadNotComputedError(
            f"{name!r} is part of the payload of state {key[:12]}, which is defined but "
            "not computed (and cannot be computed here); call promise.get() or exp.run()."
        )
    if state.dagger.pending:
        fill_payload(state, storage, storage.read_record(key))


def apply_record(state: ExperimentState, record: StateRecord) -> None:
    """Take key, lineage, properties and tags from stored metadata (no payload)."""
    state.dagger.record = record
    state.dagger.key = record.key
    state.parent_sha = record.parent_key
    state.recipe = record.recipe
    state.root_state = record.parent_key is None
    state.tags = list(record.tags)
    for name, value in record.properties.items():
        setattr(state, name, value)


def new_root(
    cls: type[ExperimentState],
    properties: dict[str, Any],
    key: str,
    storage: StateStorage,
    owner: TreeOwner | None = None,
) -> ExperimentState:
    """A root with its properties set and its key fixed; no payload yet."""
    root = cls(parent_sha=None, experiment_object=owner)
    root.__dict__.update(properties)
    root.root_state = True
    root.dagger.key = key
    root.dagger.storage = storage
    return root


def from_record(
    cls: type[ExperimentState],
    record: StateRecord,
    storage: StateStorage,
    owner: TreeOwner | None = None,
) -> ExperimentState:
    """A slim state (no payload) rebuilt from its stored metadata."""
    state = cls(parent_sha=record.parent_key, experiment_object=owner)
    state.dagger.storage = storage
    apply_record(state, record)
    state.deflate()
    return state


def record_of(
    state: ExperimentState,
    identity: RecipeIdentity | None,
    status: Status,
    details: dict[str, Any],
) -> StateRecord:
    """The metadata stored for ``state``: its key, lineage, properties, tags and metrics."""
    logged = state.dagger.logged
    return StateRecord(
        key=state.sha(),
        parent_key=state.parent_sha,
        state_class=type(state).__qualname__,
        recipe=identity,
        properties=state.dagger.properties(),
        tags=tuple(sorted(set(state.tags))),
        status=status,
        metrics={**(state.dagger.record.metrics if state.dagger.record else {}), **logged},
        **details,
    )


def store_state(
    storage: StateStorage,
    state: ExperimentState,
    identity: RecipeIdentity | None,
    details: dict[str, Any],
) -> None:
    """Write a computed state (payload, then metadata), running its save hooks around it."""
    for hook in state.save_pre_hooks:
        hook()
    record = record_of(state, identity, Status.DONE, details)
    state.dagger.record = storage.write_state(record, payload_of(state))
    for hook in state.save_post_hooks:
        hook()


def fill_payload(state: ExperimentState, storage: StateStorage, record: StateRecord) -> None:
    """Load the stored payload (and metadata) of ``state`` into the object itself."""
    payload = storage.load_payload(record.key)
    apply_record(state, record)
    state.__dict__.update(payload)
    state.from_cache = True
    state.slim_loaded = False
    state.dagger.pending = False
    for hook in state.load_post_hooks:
        hook()


def load_state(
    storage: StateStorage, key: str, state_class: type[ExperimentState]
) -> ExperimentState:
    """A computed state with its payload loaded."""
    record = storage.read_record(key)
    state = from_record(state_class, record, storage)
    fill_payload(state, storage, record)
    return state
