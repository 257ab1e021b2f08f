"""The trivial state and recipe both benchmarks time: only bookkeeping is measured.

Its own module, importing dagger_wf alone, so that a Snakemake shell job that unpickles
them imports neither torch nor the benchmarks.
"""

from __future__ import annotations

from typing import Any

import dagger_wf as dg


class Counter(dg.ExperimentState):
    """The smallest useful state: one int of payload, so only bookkeeping is measured."""

    PROPERTIES = ["name"]
    NONHASHED_ATTRIBUTES = ["value"]

    def initialize_state(self, **kwargs: Any) -> None:
        self.value = 0


class Step(dg.Recipe):
    """A trivial transition: sets the payload to ``i``."""

    PROPERTIES = ["i"]

    def __init__(self, i: int) -> None:
        self.i = i

    def run(self, state: dg.ExperimentState) -> dg.ExperimentState:
        state.value = self.i
        return state
