"""The runner interface and the registry that loads runners by name on first use."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ..errors import UnknownRunnerError
from ..events import RunReport
from ..plan import Plan
from ..settings import RunSettings
from ..store import ExperimentStore

# RunSettings.runner -> "module:Class", imported only when that runner is used. A runner
# class is built as Class(settings, client=..., progress=...) and implements Runner.
RUNNERS = {
    "dask": "dagger_wf.runners.dask:DaskRunner",
    "snakemake": "dagger_wf.runners.snakemake:SnakemakeEmitter",
}


class Runner(Protocol):
    """Computes every state of a plan into a store (or, for Snakemake, writes the workflow
    that will); returns what happened to each."""

    def run(self, plan: Plan, store: ExperimentStore) -> RunReport: ...


def get_runner(settings: RunSettings, client: Any = None, progress: bool | None = None) -> Runner:
    """The runner ``settings.runner`` names; ``client`` (a ``dask.distributed.Client``) and
    ``progress`` are live objects of this process, for the runners that use them."""
    if settings.runner not in RUNNERS:
        raise UnknownRunnerError(
            f"Unknown runner {settings.runner!r}; known runners: {sorted(RUNNERS)}."
        )
    module_name, class_name = RUNNERS[settings.runner].split(":")
    runner_class = getattr(importlib.import_module(module_name), class_name)
    runner: Runner = runner_class(settings, client=client, progress=progress)
    return runner
