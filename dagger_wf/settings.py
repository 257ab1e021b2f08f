"""How ``exp.run()`` computes: one settings object instead of loose defaults.

A script's own ``exp.run(...)`` arguments win; ``dagger-wf run`` and ``dagger-wf
snakefile`` run a script inside :func:`run_session`, which sets what its ``exp.run()``
does when the script does not say (which runner, scheduler, seed) and collects the
report of each run, so the command can tell whether the script ran its experiment. A
script started as ``python SCRIPT key=value --seed N`` asks the same through its own
command line, which ``dg.parameters()`` reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from .errors import CommandLineError
from .events import RunReport
from .parameters import ScriptCommandLine, script_command_line

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
    definition: Path | None = None  # the emitted workflow's run of the current tree

    def asked_by(self, line: ScriptCommandLine) -> RunSettings:
        """These settings with what a command line asks (``--seed``, ``--scheduler``,
        ``--check-purity``) on top; a seed these settings already name must agree."""
        if line.seed is not None and self.seed not in (None, line.seed):
            raise CommandLineError(
                f"Two seeds are given, {self.seed} and {line.seed}; give --seed once."
            )
        return dataclasses.replace(
            self,
            seed=self.seed if line.seed is None else line.seed,
            scheduler=line.scheduler or self.scheduler,
            check_purity=self.check_purity or line.check_purity,
        )

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


# The session of the command running this process's script: process-wide, not a context
# variable, since threads the script starts do not inherit context variables.
_session: RunSession | None = None


@contextlib.contextmanager
def run_session(settings: RunSettings) -> Iterator[RunSession]:
    """Inside the block, ``exp.run()`` starts from ``settings`` and records its report,
    in whichever thread of this process it is called."""
    global _session
    session, outer = RunSession(settings), _session
    _session = session
    try:
        yield session
    finally:
        _session = outer


def current_settings() -> RunSettings:
    """The command's settings (or the defaults), with what the script's own command
    line asked, if ``dg.parameters()`` read one."""
    settings = _session.settings if _session is not None else RunSettings()
    line = script_command_line()
    return settings if line is None else settings.asked_by(line)


def record_run(report: RunReport) -> None:
    """Tell the command running this script (if any) that a run happened."""
    if _session is not None:
        _session.reports.append(report)
