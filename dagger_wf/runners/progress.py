"""A progress bar for long runs: states done / cached / failed. Silent when not a terminal."""

from __future__ import annotations

import collections
from types import TracebackType

from ..events import EventKind, RunEvent


class RunProgress:
    """Counts events as tasks finish and draws a bar on stderr.

    ``enabled=None`` (the default) draws it only on a terminal and only once a run has
    lasted two seconds; ``True`` always draws it, ``False`` never.
    """

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        from tqdm import tqdm

        self.counts: collections.Counter[EventKind] = collections.Counter()
        self._bar = tqdm(
            total=total,
            unit="task",
            delay=2.0 if enabled is None else 0.0,
            # tqdm reads disable=None as "only on a terminal".
            disable=None if enabled is None else not enabled,
        )

    def update(self, event: object) -> None:
        if not isinstance(event, RunEvent):
            return
        self.counts[event.kind] += 1
        if self._bar.disable:  # not drawn: nothing to format
            return
        self._bar.set_postfix(
            done=self.counts[EventKind.RAN],
            cached=self.counts[EventKind.CACHED],
            failed=self.counts[EventKind.FAILED] + self.counts[EventKind.FUNCTION_FAILED],
            refresh=False,
        )
        self._bar.update(1)

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bar.close()
