"""Purity check: does a recipe give the same bytes when run again on the same parent?

A recipe whose output depends on anything but its parent, its properties and its seed
(wall-clock time, an unseeded generator, a file that changes, thread scheduling) breaks
caching silently: the stored state is one of several it could have been. The check runs
the recipe again in isolation (nothing is stored) and compares each payload attribute's
stored bytes.
"""

from __future__ import annotations

import dataclasses
import warnings

from ..errors import ImpurityWarning
from ..plan import PlannedState
from ..state import ExperimentState, payload_of
from ..store import ExperimentStore
from ..store.payload import payload_bytes
from ..tracking.seeding import seed_from_key
from .step import initial_state, run_step


@dataclasses.dataclass(frozen=True)
class PurityReport:
    """Which payload attributes differed between ``runs`` runs of one state's step."""

    key: str
    runs: int
    differing: tuple[str, ...]

    @property
    def pure(self) -> bool:
        return not self.differing


def check_purity(
    store: ExperimentStore,
    planned: PlannedState,
    state_class: type[ExperimentState],
    runs: int = 2,
    global_seed: int | None = None,
) -> PurityReport:
    """Run ``planned``'s step ``runs`` times from its stored parent; warn if they differ."""
    seed = seed_from_key(planned.key, global_seed)
    outputs = []
    for _ in range(max(runs, 2)):
        state = run_step(planned, initial_state(store, planned, state_class), seed)
        outputs.append({name: payload_bytes(value) for name, value in payload_of(state).items()})
    names = sorted(set().union(*outputs))
    differing = tuple(name for name in names if len({output.get(name) for output in outputs}) > 1)
    report = PurityReport(planned.key, max(runs, 2), differing)
    if differing:
        label = repr(planned.recipe) if planned.recipe is not None else "initialize_state"
        warnings.warn(
            f"{label} is not pure: {list(differing)} differ between {report.runs} runs on the "
            f"same parent with the same seed (state {planned.key[:12]}). Seed every random "
            "generator from the state, and read nothing that changes between runs.",
            ImpurityWarning,
            stacklevel=3,
        )
    return report
