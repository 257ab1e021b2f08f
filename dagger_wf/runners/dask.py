"""The local Dask runner: one task per state and per Function call.

Tasks pass only small events between each other; every task loads its parent's payload
from the store and writes its own. Payloads therefore never sit in Dask's memory: a
payload lives only while the task that loaded it runs, so peak memory does not grow with
the tree, and the processes scheduler and a distributed cluster ship nothing large.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Collection, Iterator
from typing import Any

import cloudpickle

from ..collector import collector_paused
from ..errors import RecipeFailedError, UnknownRunnerError, WorkerLostError
from ..events import EventKind, RunEvent, RunReport
from ..plan import Plan
from ..settings import RunSettings
from ..store import ExperimentStore
from ..store.atomic import atomic_write
from .interruptions import record_interrupted_states
from .main_guard import check_main_is_guarded
from .progress import RunProgress
from .transition import (
    PlanLookup,
    StepContext,
    apply_function,
    compute_state,
    reuse_whole,
    step_label,
)

SCHEDULERS = {
    "single-threaded": "sync",
    "sync": "sync",
    "synchronous": "sync",
    "threads": "threads",
    "processes": "processes",
}


def _replay(event: RunEvent) -> RunEvent:
    return event


def _state_task(key: str, run_id: str) -> str:
    return f"state-{key}-{run_id}"


def _function_task(index: int, key: str, run_id: str) -> str:
    return f"function-{index}-{key}-{run_id}"


def _task_names(plan: Plan, run_id: str) -> list[str]:
    """The name of every task of a run's whole graph, in :func:`build_graph`'s order."""
    names = []
    for key, planned in plan.states.items():
        names.append(_state_task(key, run_id))
        names.extend(_function_task(index, key, run_id) for index in range(len(planned.functions)))
    return names


def build_graph(
    plan: Plan,
    store: ExperimentStore,
    run_id: str,
    known_failures: dict[str, RunEvent] | None = None,
    lineage: PlanLookup | None = None,
    settled: Collection[str] = (),
) -> tuple[dict[str, tuple], dict[str, str]]:
    """A raw Dask graph and the task name of each state. A state in ``known_failures``
    (its worker died earlier in this run) is not tried again: its event is replayed.
    ``lineage``: where a task finds the plan to compute a damaged stored state again
    (None: a damaged ancestor fails the state that loads it, naming it). A ``settled``
    state (reused before the graph runs: :func:`settle_stored`) has no task; its
    Functions still do."""
    known_failures = known_failures or {}
    graph: dict[str, tuple] = {}
    state_tasks: dict[str, str] = {}
    context = StepContext(
        str(store.directory),
        plan.state_class,
        run_id,
        "dask",
        plan.seed,
        store.durable,
        lineage,
    )
    for key, planned in plan.states.items():
        name = _state_task(key, run_id)
        parent_task = state_tasks.get(planned.parent_key) if planned.parent_key else None
        if key not in settled:
            if key in known_failures:
                graph[name] = (_replay, known_failures[key])
            else:
                task_planned = dataclasses.replace(planned, functions=[])
                graph[name] = (compute_state, context, task_planned, parent_task)
            state_tasks[key] = name
        for index, function in enumerate(planned.functions):
            graph[_function_task(index, key, run_id)] = (
                apply_function,
                context,
                key,
                function,
                None if key in settled else name,
            )
    return graph, state_tasks


def settle_stored(plan: Plan, store: ExperimentStore, run_id: str) -> dict[str, RunEvent]:
    """The events of the stored states reused before any task runs, by task name: each
    whose ancestors in the plan are reused too and which a cheap look finds whole (the
    rest, and damage, are the tasks' work). A cached tree then costs a look per state
    rather than a Dask task each."""
    settled: dict[str, RunEvent] = {}
    reused: set[str] = set()
    whole = store.whole_states(plan.states.keys())  # through the record index
    for key, planned in plan.states.items():  # parents first
        if (
            planned.stored
            or key not in whole
            or (planned.parent_key in plan.states and planned.parent_key not in reused)
        ):
            continue
        label = step_label(planned, plan.state_class)
        event = reuse_whole(store, planned, run_id, "dask", label, whole[key])
        if event is not None:
            settled[_state_task(key, run_id)] = event
            reused.add(key)
    return settled


def _record_experiment(
    directory: str, durable: bool, root_key: str | None, document: dict[str, Any]
) -> None:
    store = ExperimentStore(directory, durable)
    if root_key is not None:
        store.add_root(root_key)
    store.write_experiment(document)


def _second(_first: object, second: RunEvent) -> RunEvent:
    return second


def leaf_delayeds(
    plan: Plan, store: ExperimentStore, root_key: str | None, experiment: dict[str, Any]
) -> dict[str, Any]:
    """The pending ``Delayed`` of every leaf, by task name: each Function call, and each
    state that has neither a child nor a Function (a Function stands for its state, as in
    the original dagger). Nothing is written until one is computed; computing one first
    records the experiment (``experiment`` and its root), as ``exp.run()`` does. They
    may run on any scheduler, so they carry no plan: a stored ancestor found damaged
    fails the state that loads it, naming it (``exp.run()`` computes it again)."""
    from dask.delayed import Delayed

    run_id = uuid.uuid4().hex[:12]
    graph, state_tasks = build_graph(plan, store, run_id)
    record_task = f"experiment-{run_id}"
    graph[record_task] = (
        _record_experiment,
        str(store.directory),
        store.durable,
        root_key,
        experiment,
    )
    evaluated = {planned.key for planned in plan.states.values() if planned.functions}
    leaves = [state_tasks[planned.key] for planned in plan.leaves() if planned.key not in evaluated]
    leaves += [name for name in graph if name.startswith("function-")]
    for name in leaves:
        graph[f"leaf-{name}"] = (_second, record_task, name)
    return {name: Delayed(f"leaf-{name}", graph) for name in leaves}


class DaskRunner:
    """Runs a plan with a local Dask scheduler or a ``dask.distributed`` client."""

    def __init__(
        self, settings: RunSettings, client: Any = None, progress: bool | None = None
    ) -> None:
        scheduler = settings.scheduler
        if client is None and scheduler not in SCHEDULERS:
            raise UnknownRunnerError(
                f"Unknown Dask scheduler {scheduler!r}; use one of {sorted(SCHEDULERS)}, "
                "or pass client=dask.distributed.Client(...)."
            )
        self.scheduler = scheduler
        self.client = client
        self.progress = progress

    def run(self, plan: Plan, store: ExperimentStore) -> RunReport:
        """Run every task; a worker that dies fails its state, and the rest run again."""
        if self.client is None and SCHEDULERS[self.scheduler] == "processes":
            import dask

            if dask.config.get("multiprocessing.context", "spawn") != "fork":
                check_main_is_guarded()
        run_id = uuid.uuid4().hex[:12]
        known_failures: dict[str, RunEvent] = {}
        every_task = _task_names(plan, run_id)
        with (
            RunProgress(len(every_task), self.progress) as progress,
            self._lineage(plan, store, run_id) as lineage,
        ):
            with collector_paused():  # dagger_wf's bookkeeping only: no recipe runs in it
                settled = settle_stored(plan, store, run_id)
            for event in settled.values():
                progress.update(event)
            keys = {event.key for event in settled.values()}
            while True:
                with collector_paused():
                    graph, _ = build_graph(plan, store, run_id, known_failures, lineage, keys)
                try:
                    events = self._execute(graph, list(graph), progress)
                except Exception as error:
                    if not _is_worker_loss(error):
                        raise
                    lost = record_interrupted_states(store, plan)
                    if not lost:
                        raise WorkerLostError(
                            "A Dask worker died and no state it was computing could be "
                            "identified; states finished so far are stored. Run again, or "
                            "use scheduler='single-threaded' to see which recipe fails."
                        ) from error
                    known_failures.update(_lost_events(store, plan, lost, run_id))
                    continue
                results = {**settled, **dict(zip(graph, events, strict=True))}
                return RunReport(run_id, tuple(results[name] for name in every_task))

    @contextlib.contextmanager
    def _lineage(self, plan: Plan, store: ExperimentStore, run_id: str) -> Iterator[PlanLookup]:
        """The plan as tasks find it: in memory for the schedulers of this process; for
        worker processes, a file written once for the run, so that each task ships its
        path rather than the whole plan (read only by a task that finds damage), unless
        that file cannot be written."""
        if self.client is None and SCHEDULERS[self.scheduler] != "processes":
            yield PlanLookup(plan.states)
            return
        path = store.run_plan_path(run_id)
        states = {
            key: dataclasses.replace(planned, functions=[]) for key, planned in plan.states.items()
        }
        try:
            atomic_write(path, lambda file: cloudpickle.dump(states, file))
        except OSError:  # a full disk: then each task carries the plan (slower, not wrong)
            yield PlanLookup(plan.states)
            return
        try:
            yield PlanLookup(plan.states, path)
        finally:
            path.unlink(missing_ok=True)

    def _execute(self, graph: dict, names: list[str], progress: RunProgress) -> list[Any]:
        if self.client is not None:
            return self._run_distributed(graph, names, progress)
        return self._run_local(graph, names, progress)

    def _run_local(self, graph: dict, names: list[str], progress: RunProgress) -> list[Any]:
        from dask.callbacks import Callback

        def count(key: str, result: Any, *_: Any) -> None:
            progress.update(result)

        get = _local_scheduler(SCHEDULERS[self.scheduler])
        with Callback(posttask=count):
            return list(get(graph, names))

    def _run_distributed(self, graph: dict, names: list[str], progress: RunProgress) -> list[Any]:
        from distributed import as_completed

        futures = self.client.get(graph, names, sync=False)
        try:
            for future in as_completed(futures):
                progress.update(future.result())
            return self.client.gather(futures)
        finally:
            self.client.cancel(futures)


def _local_scheduler(name: str) -> Any:
    """Dask's ``get`` of a local scheduler, imported directly: ``dask.base.get_scheduler``
    would first import ``distributed`` to look for a client (0.26 s of every run)."""
    if name == "sync":
        from dask.local import get_sync

        return get_sync
    if name == "threads":
        from dask import threaded

        return threaded.get
    from dask import multiprocessing

    return multiprocessing.get


def _is_worker_loss(error: Exception) -> bool:
    """A worker process that died (killed, out of memory), not an error of our code."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(error, BrokenProcessPool) or type(error).__name__ == "KilledWorker"


def _lost_events(
    store: ExperimentStore, plan: Plan, keys: list[str], run_id: str
) -> dict[str, RunEvent]:
    events = {}
    for key in keys:
        record = store.read_failure(key)
        label = step_label(plan.states[key], plan.state_class)
        error = RecipeFailedError((record.error or record.status).strip())
        events[key] = RunEvent(run_id, key, EventKind.FAILED, label, 0.0, error, record.error)
    return events
