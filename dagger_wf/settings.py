"""How ``exp.run()`` computes: one settings object instead of loose defaults.

A script's own ``exp.run(...)`` arguments win; ``dagger-wf run`` and ``dagger-wf
snakefile`` run a script inside :func:`run_session`, which sets what its ``exp.run()``
does when the script does not say (which runner, scheduler, seed) and collects the
report of each run, so the command can tell whether the script ran its experiment.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from .events import RunReport

# Where Snakemake looks for a workflow by default, out of the project root's way.
DEFAULT_SNAKEFILE = Path("workflow", "Snakefile")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """``runner`` "dask" computes here; "snakemake" writes the workflow instead."""

    runner: str = "dask"
    scheduler: str = "single-threaded"
    seed: int | None = None
    check_purity: bool = False
    snakefile: Path = DEFAULT_SNAKEFILE
    max_group_size: int | None = None

    def overridden(self, scheduler: str | None, seed: int | None) -> RunSettings:
        """These settings with what a script passed to ``exp.run()`` on top, except that
        ``dagger-wf snakefile --seed`` names the seed of the workflow it writes."""
        command_seed_wins = self.runner == "snakemake" and self.seed is not None
        return dataclasses.replace(
            self,
            scheduler=scheduler or self.scheduler,
            seed=self.seed if command_seed_wins or seed is None else seed,
        )


@dataclasses.dataclass
class RunSession:
    """The settings a command gives the script it runs, and the runs the script made."""

    settings: RunSettings
    reports: list[RunReport] = dataclasses.field(default_factory=list)


_SESSION: contextvars.ContextVar[RunSession | None] = contextvars.ContextVar(
    "dagger_wf_run_session", default=None
)


@contextlib.contextmanager
def run_session(settings: RunSettings) -> Iterator[RunSession]:
    """Inside the block, ``exp.run()`` starts from ``settings`` and records its report."""
    session = RunSession(settings)
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def current_settings() -> RunSettings:
    session = _SESSION.get()
    return session.settings if session is not None else RunSettings()


def record_run(report: RunReport) -> None:
    """Tell the command running this script (if any) that a run happened."""
    session = _SESSION.get()
    if session is not None:
        session.reports.append(report)
