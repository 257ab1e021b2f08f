"""Memory: a run holds only the payloads its running steps need."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
from trees import Arrays

import dagger_wf as dg


class Watched(dg.Recipe):
    """Gives its state a new array and keeps a weak reference to it, to see when it goes."""

    PROPERTIES = ["amount"]
    arrays: ClassVar[list[weakref.ref]] = []

    def __init__(self, amount):
        self.amount = amount

    def run(self, state):
        state.own = np.full(10_000, float(self.amount))
        Watched.arrays.append(weakref.ref(state.own))
        return state


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("scheduler", ["single-threaded", "threads"])
def test_a_payload_leaves_memory_once_its_state_is_stored(tmp_path, scheduler):
    """Without waiting for Python's cyclic collector: a fan of large children on
    threads then peaks at one payload per thread, not one per child."""
    Watched.arrays.clear()
    exp = dg.Experiment(tmp_path / "exp", state_class=Arrays)
    root = exp.spawn_new_tree(name="fan")
    for amount in range(6):
        Watched(amount)(root)
    with collector_off():
        exp.run(scheduler=scheduler)
        alive = [ref for ref in Watched.arrays if ref() is not None]
    assert len(Watched.arrays) == 6
    assert alive == []


@pytest.mark.parametrize("enabled", [True, False])
def test_restore_and_run_leave_the_collector_as_they_found_it(tmp_path, enabled):
    exp = dg.Experiment(tmp_path / "exp", state_class=Arrays)
    Watched(1)(exp.spawn_new_tree(name="one"))
    if not enabled:
        gc.disable()
    try:
        exp.run()
        dg.Experiment.restore(tmp_path / "exp", Arrays)
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


class ReturnsACopy(dg.Recipe):
    """Returns a shallow copy of its state, with a new array."""

    def run(self, state):
        import copy

        copied = copy.copy(state)
        copied.own = np.ones(10)
        return copied


def test_a_recipe_may_return_a_shallow_copy_of_its_state(tmp_path):
    exp = dg.Experiment(tmp_path / "exp", state_class=Arrays)
    child = ReturnsACopy()(exp.spawn_new_tree(name="copied"))
    exp.run()
    gc.collect()
    stored = dg.Experiment.restore(tmp_path / "exp", Arrays, slim=False).graph.node(child.key)
    np.testing.assert_array_equal(stored.own, np.ones(10))
    assert stored.dagger.properties() == {"name": "copied"}


def test_a_state_s_dagger_used_after_the_state_is_gone_says_so():
    bookkeeping = Arrays().dagger
    gc.collect()
    with pytest.raises(dg.DetachedBookkeepingError, match="Keep a reference to the state"):
        bookkeeping.properties()
