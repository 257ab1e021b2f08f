"""Typed events a run emits, one per state and per Function call.

They feed the run report (and the tests, which assert what ran from them rather than
from timings or mocks).
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from .errors import RecipeFailedError


class EventKind(enum.StrEnum):
    RAN = "ran"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"  # an ancestor failed
    FUNCTION_RAN = "function ran"
    FUNCTION_FAILED = "function failed"
    FUNCTION_SKIPPED = "function skipped"


FAILURES = (EventKind.FAILED, EventKind.FUNCTION_FAILED)
SKIPS = (EventKind.SKIPPED, EventKind.FUNCTION_SKIPPED)


@dataclasses.dataclass(frozen=True)
class RunEvent:
    run_id: str
    key: str
    kind: EventKind
    label: str  # the recipe, root state or Function it concerns, for messages
    duration_s: float = 0.0
    error: BaseException | None = None
    traceback: str | None = None
    # For a cached state: the code and environment snapshots that made it.
    stored_code: str | None = None
    stored_environment: str | None = None
    stored_seed: int | None = None
    # Stored states found damaged while computing this one, then computed again (this
    # one too, if it was): (key, what was damaged) each.
    repaired: tuple[tuple[str, str], ...] = ()

    def exception(self) -> BaseException:
        """What a failure raised: its own exception, or one naming it if that was lost."""
        if self.error is not None:
            return self.error
        return RecipeFailedError(
            f"{self.label} for state {self.key[:12]} failed:\n{self.traceback or ''}"
        )


# The run ID of what emitting a Snakefile reports: nothing ran in that process.
EMITTED = "emitted"


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What one ``exp.run()`` did, state by state."""

    run_id: str
    events: tuple[RunEvent, ...]
    # Where the workflow went when run() emitted a Snakefile instead of computing.
    emitted_to: Path | None = None
    # Why the run could not record what it defines (a full disk): raised after it ran.
    unrecorded: OSError | None = None

    def summary(self) -> str:
        """One line for a script to print, true whether the states ran or were emitted."""
        if self.emitted_to is not None:
            return f"nothing computed here: wrote the workflow {self.emitted_to}"
        counts = [f"{len(self.ran)} states computed", f"{len(self.cached)} cached"]
        if self.failed:
            counts.append(f"{len(self.failed)} failed")
        if self.skipped:
            counts.append(f"{len(self.skipped)} skipped below a failure")
        return ", ".join(counts)

    def keys(self, kind: EventKind) -> set[str]:
        return {event.key for event in self.events if event.kind is kind}

    @property
    def ran(self) -> set[str]:
        return self.keys(EventKind.RAN)

    @property
    def cached(self) -> set[str]:
        return self.keys(EventKind.CACHED)

    @property
    def failed(self) -> set[str]:
        return self.keys(EventKind.FAILED)

    @property
    def skipped(self) -> set[str]:
        return self.keys(EventKind.SKIPPED)

    @property
    def repaired(self) -> dict[str, str]:
        """Stored states found damaged and computed again: what was damaged, by key."""
        return {key: damage for event in self.events for key, damage in event.repaired}

    @property
    def failures(self) -> list[RunEvent]:
        return [event for event in self.events if event.kind in FAILURES]

    def raise_first_failure(self) -> None:
        """Re-raise the first failure's own exception, noting every failure of the run."""
        failures = self.failures
        if not failures:
            if self.unrecorded is not None:
                raise self.unrecorded
            return
        first = failures[0]
        lines = [f"dagger_wf: {len(failures)} failure(s) in this run (other branches finished):"]
        lines += [
            f"  - {event.label} for state {event.key[:12]}: "
            f"{type(event.error).__name__}: {event.error}"
            for event in failures
        ]
        if self.unrecorded is not None:
            lines += [f"  - {note}" for note in getattr(self.unrecorded, "__notes__", [])]
        error = first.exception()
        if error.__traceback__ is None and first.traceback:
            lines.append(f"Original traceback of the first failure:\n{first.traceback}")
        error.add_note("\n".join(lines))
        raise error
