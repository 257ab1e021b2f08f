"""The runner interface and the registry that loads runners by name on first use."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ..errors import UnknownRunnerError
from ..events import RunReport
from ..plan import Plan
from ..store import ExperimentStore

# name -> "module:Class", imported only when that runner is used
RUNNERS = {
    "dask": "dagger_wf.runners.dask:DaskRunner",
    "snakemake": "dagger_wf.runners.snakemake:SnakemakeEmitter",
}


class Runner(Protocol):
    """Computes every state of a plan into a store (or, for Snakemake, writes the workflow
    that will); returns what happened to each."""

    def run(self, plan: Plan, store: ExperimentStore) -> RunReport: ...


def get_runner(name: str, **options: Any) -> Runner:
    if name not in RUNNERS:
        raise UnknownRunnerError(f"Unknown runner {name!r}; known runners: {sorted(RUNNERS)}.")
    module_name, class_name = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)
