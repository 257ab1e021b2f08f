"""What dagger_wf keeps per state, apart from the user's names: ``state.dagger``.

Everything dagger_wf adds to a state beyond the original dagger's attributes (its stored
record, status, error, derived seed, metrics, fixed key and storage) lives on this one
object, so that every other attribute name on a state is the user's to declare.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar, Protocol

from .errors import (
    DetachedBookkeepingError,
    MetricOutsideRunError,
    StateNotComputedError,
    UnknownMetricError,
)
from .metrics import append_metric
from .records import StateRecord, Status
from .storage import StateStorage


class KeptState(Protocol):
    """What the bookkeeping needs of its state (an ExperimentState)."""

    PROPERTIES: ClassVar[list[str]]
    experiment_object: Any

    def sha(self) -> str: ...


class Bookkeeping:
    """dagger_wf's data about one state: ``state.dagger.seed``, ``.status``, ``.error``,
    ``.record``, ``.metrics()``, ``.log_metric()`` and ``.load_metric()``."""

    def __init__(self, state: KeptState) -> None:
        # Weak: a strong link back would make each state a reference cycle, so a
        # computed state's payload (a model) would stay in memory until Python's cyclic
        # collector ran, instead of going as soon as the state is stored and dropped.
        self._state_ref = weakref.ref(state)
        self.record: StateRecord | None = None
        # The seed Python's random, numpy and torch got before this state's step ran; a
        # recipe seeds its own generators from it (np.random.default_rng(state.dagger.seed)).
        self.seed: int | None = None
        self.key: str | None = None  # fixed once the state is part of a tree
        self.storage: StateStorage | None = None
        self.logged: dict[str, list[list[float]]] = {}  # logged in this process
        self.recording = False  # a recipe, initialize_state or Function runs on the state
        self.pending = False  # defined, not computed: the payload is built when first read

    @property
    def _state(self) -> KeptState:
        state = self._state_ref()
        if state is None:
            raise DetachedBookkeepingError(
                "This state.dagger belongs to a state that no longer exists (nothing "
                "referred to it, so Python freed it). Keep a reference to the state "
                "itself, and read state.dagger from it."
            )
        return state

    def belongs_to(self, state: KeptState) -> bool:
        return self._state_ref() is state

    def bound_to(self, state: KeptState) -> Bookkeeping:
        """A copy of this bookkeeping for ``state`` (a copy of its state): same record,
        seed, key and storage, its own logged metrics."""
        copied = object.__new__(Bookkeeping)  # not copy.copy: that pickles, via the state
        logged = {name: list(series) for name, series in self.logged.items()}
        copied.__dict__.update(self.__dict__, _state_ref=weakref.ref(state), logged=logged)
        return copied

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its state (a weak reference does not pickle)."""
        document = dict(self.__dict__)
        document["_state_ref"] = self._state
        return document

    def __setstate__(self, document: dict[str, Any]) -> None:
        self.__dict__.update(document, _state_ref=weakref.ref(document["_state_ref"]))

    @property
    def status(self) -> Status:
        """DONE, FAILED (see :attr:`error`) or PENDING (never stored); equal to the strings
        ``"done"``, ``"failed"`` and ``"pending"``."""
        return self.record.status if self.record else Status.PENDING

    @property
    def error(self) -> str | None:
        """The traceback of the failed attempt, if this state failed."""
        return self.record.error if self.record else None

    def properties(self) -> dict[str, Any]:
        """The state's PROPERTIES and their values: what its root key is made of."""
        values = vars(self._state)
        return {name: values.get(name) for name in self._state.PROPERTIES}

    # ------------------------------------------------------------ metrics

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record ``value`` of metric ``name`` (at ``step``; default: the next one).

        Call it inside a recipe's ``run()``, ``initialize_state()`` or a Function, on the
        state they were given; it is stored with the state (or with the Function's run).
        """
        if not self.recording:
            raise MetricOutsideRunError(
                f"dagger.log_metric({name!r}, ...) was called on state "
                f"{self._state.sha()[:12]} while no recipe, initialize_state or Function was "
                "running on it; call it inside run(state) on the state you were given."
            )
        append_metric(self.logged, name, value, step)

    def load_metric(self, name: str) -> list[tuple[int, float]]:
        """The series of ``name`` as (step, value) pairs: recorded by the recipe that made
        the state, or else by the latest Function run that recorded it."""
        series = self.metrics().get(name)
        if series is None:
            raise UnknownMetricError(
                f"State {self._state.sha()[:12]} has no metric {name!r}; it has "
                f"{sorted(self.metrics()) or 'none'}."
            )
        return [(int(step), value) for step, value in series]

    def metrics(self) -> dict[str, list[list[float]]]:
        """Every metric series of this state (recipe's first, then Functions' latest)."""
        combined: dict[str, list[list[float]]] = {}
        storage = self.find_storage()
        if storage is not None and self.record is not None:
            combined = storage.recorded_metrics(self.record)
        combined.update(self.logged)
        return combined

    # ------------------------------------------------------------ storage

    def find_storage(self) -> StateStorage | None:
        """The storage of the state's experiment; None for a state of none."""
        if self.storage is not None:
            return self.storage
        owner = self._state.experiment_object
        return owner.store if owner is not None else None

    def required_storage(self) -> StateStorage:
        storage = self.find_storage()
        if storage is None:
            raise StateNotComputedError(
                f"{self._state!r} belongs to no experiment directory; create it through an "
                "Experiment (or load it with Experiment.restore)."
            )
        return storage
