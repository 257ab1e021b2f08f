"""The local Dask runner: one task per state and per Function call.

Tasks pass only small events between each other; every task loads its parent's payload
from the store and writes its own. Payloads therefore never sit in Dask's memory: a
payload lives only while the task that loaded it runs, so peak memory does not grow with
the tree, and the processes scheduler and a distributed cluster ship nothing large.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from ..errors import UnknownRunnerError
from ..events import RunReport
from ..plan import Plan
from ..store import ExperimentStore
from .progress import RunProgress
from .transition import apply_function, compute_state

SCHEDULERS = {
    "single-threaded": "sync",
    "sync": "sync",
    "synchronous": "sync",
    "threads": "threads",
    "processes": "processes",
}


def build_graph(
    plan: Plan, store: ExperimentStore, run_id: str
) -> tuple[dict[str, tuple], dict[str, str], list[str]]:
    """A raw Dask graph; returns it, the task name of each state, and every task name."""
    graph: dict[str, tuple] = {}
    state_tasks: dict[str, str] = {}
    directory = str(store.directory)
    for key, planned in plan.states.items():
        name = f"state-{key}-{run_id}"
        parent_task = state_tasks.get(planned.parent_key)
        task_planned = dataclasses.replace(planned, functions=[])
        graph[name] = (
            compute_state,
            directory,
            task_planned,
            plan.state_class,
            parent_task,
            run_id,
            "dask",
        )
        state_tasks[key] = name
        for index, function in enumerate(planned.functions):
            graph[f"function-{index}-{key}-{run_id}"] = (
                apply_function,
                directory,
                key,
                plan.state_class,
                function,
                name,
                run_id,
            )
    return graph, state_tasks, list(graph)


def leaf_delayeds(plan: Plan, store: ExperimentStore) -> dict[str, Any]:
    """The pending ``Delayed`` of every leaf state and Function call, by task name."""
    from dask.delayed import Delayed

    graph, state_tasks, _ = build_graph(plan, store, uuid.uuid4().hex[:12])
    leaves = [state_tasks[planned.key] for planned in plan.leaves()]
    leaves += [name for name in graph if name.startswith("function-")]
    return {name: Delayed(name, graph) for name in leaves}


class DaskRunner:
    """Runs a plan with a local Dask scheduler or a ``dask.distributed`` client."""

    def __init__(
        self, scheduler: str = "single-threaded", client: Any = None, progress: bool | None = None
    ) -> None:
        if client is None and scheduler not in SCHEDULERS:
            raise UnknownRunnerError(
                f"Unknown Dask scheduler {scheduler!r}; use one of {sorted(SCHEDULERS)}, "
                "or pass client=dask.distributed.Client(...)."
            )
        self.scheduler = scheduler
        self.client = client
        self.progress = progress

    def run(self, plan: Plan, store: ExperimentStore) -> RunReport:
        run_id = uuid.uuid4().hex[:12]
        graph, _, names = build_graph(plan, store, run_id)
        with RunProgress(len(names), enabled=self.progress) as progress:
            if self.client is not None:
                events = self._run_distributed(graph, names, progress)
            else:
                events = self._run_local(graph, names, progress)
        return RunReport(run_id, tuple(events))

    def _run_local(self, graph: dict, names: list[str], progress: RunProgress) -> list[Any]:
        from dask.base import get_scheduler
        from dask.callbacks import Callback

        def count(key: str, result: Any, *_: Any) -> None:
            progress.update(result)

        get = get_scheduler(scheduler=SCHEDULERS[self.scheduler])
        with Callback(posttask=count):
            return list(get(graph, names))

    def _run_distributed(self, graph: dict, names: list[str], progress: RunProgress) -> list[Any]:
        from distributed import as_completed

        futures = self.client.get(graph, names, sync=False)
        for future in as_completed(futures):
            progress.update(future.result())
        return self.client.gather(futures)
