"""Recording which code and environment made each state, and warning when they changed.

A recipe's key already separates versions of the recipe class itself; what it cannot see
is the code around it (helper functions in its module) and the environment (package
versions, the git work tree). Both are snapshotted once by content; after a run, a state
reused from the cache whose recipe uses module code that has changed since (named in the
warning, with the diff of that code alone), or a new state that extends states made in
another environment, gives a warning with a readable diff.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from ..errors import (
    CodeChangedWarning,
    CorruptStateWarning,
    DaggerError,
    EnvironmentChangedWarning,
    SeedMismatchWarning,
)
from ..events import EventKind, RunReport
from ..plan import Plan
from ..store.layout import CODE, ENVIRONMENTS
from ..store.snapshots import load_snapshot, store_snapshot
from .code import capture_code, unseen_code_diff
from .environment import capture_environment, environment_diff
from .seeding import seed_from_key


def snapshot_plan_code(plan: Plan, directory: Path) -> None:
    """Give every planned state with a recipe the digest of its recipe's code snapshot.

    Done where the tree is defined, since a job elsewhere may hold only a pickled class.
    """
    digests: dict[type, str] = {}
    for planned in plan.states.values():
        if planned.recipe is not None:
            recipe_class = type(planned.recipe)
            if recipe_class not in digests:
                digests[recipe_class] = store_snapshot(directory, CODE, capture_code(recipe_class))
            planned.code = digests[recipe_class]


@functools.cache
def environment_digest(directory: Path) -> str:
    """This process's environment, snapshotted into ``directory`` (once per process)."""
    return store_snapshot(directory, ENVIRONMENTS, capture_environment())


def warn_about_changes(report: RunReport, plan: Plan, directory: Path) -> None:
    """Warn about cached states whose code changed, and about new states that extend
    states made in another environment; each distinct change once."""
    events = {event.key: event for event in report.events if event.kind in _STATES}
    changes: set[tuple[str, str, str]] = set()  # (kind, stored digest, current digest)
    for key, event in events.items():
        planned = plan.states.get(key)
        if planned is None:
            continue
        if event.kind is EventKind.CACHED and event.stored_code and planned.code:
            changes.add((CODE, event.stored_code, planned.code))
        parent = events.get(planned.parent_key) if planned.parent_key else None
        extends_stored = parent is not None and parent.kind is EventKind.CACHED
        if event.kind is EventKind.RAN and extends_stored and parent and parent.stored_environment:
            # where it ran: a workflow's job reports its own; a run here, this process's
            made_in = event.stored_environment or environment_digest(directory)
            changes.add((ENVIRONMENTS, parent.stored_environment, made_in))
    for kind, stored, current in sorted(changes):
        if stored != current:
            _warn(directory, kind, stored, current)
    _warn_about_seeds(report, plan)
    warn_about_repairs(report.repaired)


def warn_about_repairs(repaired: dict[str, str]) -> None:
    """A warning for each stored state a run found damaged and computed again: the
    process that computed it may have been a worker, so the run's process says it."""
    for key, damage in sorted(repaired.items()):
        warnings.warn(
            f"State {key} was damaged and has been computed again: {damage}",
            CorruptStateWarning,
            stacklevel=4,
        )


def _warn_about_seeds(report: RunReport, plan: Plan) -> None:
    reused = [
        event.key
        for event in report.events
        if event.kind is EventKind.CACHED
        and event.stored_seed is not None
        and event.stored_seed != seed_from_key(event.key, plan.seed)
    ]
    if reused:
        asked = "no seed" if plan.seed is None else f"seed={plan.seed}"
        warnings.warn(
            f"{len(reused)} state(s) reused from the cache were computed with another seed "
            f"than this run's ({asked}), e.g. {reused[0][:12]}; the cache is keyed by the "
            "tree, not the seed. Use another directory to compute them with this seed.",
            SeedMismatchWarning,
            stacklevel=4,
        )


_STATES = (EventKind.RAN, EventKind.CACHED)


def _warn(directory: Path, kind: str, stored: str, current: str) -> None:
    try:
        old, new = load_snapshot(directory, kind, stored), load_snapshot(directory, kind, current)
    except DaggerError as error:
        warnings.warn(f"Cannot compare {kind} with the stored one: {error}", stacklevel=4)
        return
    if kind == CODE:
        diff = unseen_code_diff(old, new)
        if diff:
            warnings.warn(
                f"Code that {new['recipe']} runs changed since it made states this run "
                "reused from the cache, and their keys cannot see it (below: what the "
                "class uses outside itself, or the class if its VERSION pin hid the "
                "change). If the change matters, make that code a method of the recipe "
                f"(a key sees its class's methods) or bump the recipe's VERSION.\n{diff}",
                CodeChangedWarning,
                stacklevel=4,
            )
        return
    lines = environment_diff(old, new)
    if lines:
        warnings.warn(
            "The environment changed since the states this run extends were made:\n  "
            + "\n  ".join(lines),
            EnvironmentChangedWarning,
            stacklevel=4,
        )
