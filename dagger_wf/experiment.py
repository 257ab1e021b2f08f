"""Experiment: define a tree lazily (tags, spawn_new_tree, recipes), run it, restore it."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codec import from_json, to_json
from .declarations import unexpected_root_arguments
from .errors import (
    ExperimentPathError,
    InvalidTagError,
    MissingPropertyError,
    NestedRunError,
    ReservedTagError,
    StandInStateClassWarning,
    StateClassMismatchError,
    StateNotFoundError,
    TreeAlreadySpawnedError,
    TreeNotSpawnedError,
    UnknownArgumentWarning,
)
from .events import RunReport
from .hashing import module_name, root_key
from .parameters import check_overrides_used
from .plan import Plan
from .promise import ExperimentStatePromise
from .settings import DEFAULT_SNAKEFILE, RunSettings, current_settings, record_run
from .state import ExperimentState, defer_payload, new_root
from .store import ExperimentStore
from .store.definitions import Definition, finish_definition, write_definition

if TYPE_CHECKING:
    import pandas

    from .analysis import StaticExperimentTree
    from .dashboard import DashboardServer
    from .runners.purity import PurityReport


class Experiment:
    """The anchor of one experiment tree, stored in one directory.

    Nothing is computed while the tree is defined: ``spawn_new_tree`` and recipe calls
    only record what to compute (and its keys); ``run()`` computes whatever is not stored.

    Threads may share one Experiment: each defines states and calls ``run()`` (runs take
    turns, each over the states defined when it starts), and a ``tag`` block tags only
    the states its own thread defines.
    """

    def __init__(
        self,
        directory: str | Path,
        state_class: type[ExperimentState],
        durable: bool = False,
        definition: str | None = None,
    ) -> None:
        """``durable=True``: every state this experiment stores, whichever runner stores
        it, is flushed to the disk (``fsync``) before it counts as done, so that a power
        loss cannot leave a done mark over missing bytes. A ``kill -9`` cannot anyway.

        ``definition`` names what this object defines, for the current tree (by default
        the running script's file name): a run replaces what the last run of the same
        name defined from the same root. Name each of several runs of one script (a
        sweep started as separate processes, e.g. ``definition=f"lr={lr}"``) to keep all
        their branches current."""
        self.directory = Path(directory).absolute()
        self.state_class = state_class
        self.definition = definition or _defining_script()
        if self.directory.exists() and not self.directory.is_dir():
            raise ExperimentPathError(
                f"{self.directory} is a file, not a directory; give Experiment(...) the "
                "directory of the experiment (it is created if it does not exist)."
            )
        self.store = ExperimentStore(self.directory, durable)
        if self.store.is_experiment():
            _check_state_class(self.store, state_class)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.plan = Plan(state_class)
        self.root: ExperimentState | None = None
        self.experiment_arguments: dict[str, Any] | None = None
        self.graph: StaticExperimentTree | None = None
        self.last_run: RunReport | None = None
        self._turn = threading.RLock()  # runs, emits and computes take turns
        self._spawning = threading.Lock()  # one root, whichever thread spawns first
        self._stored_states: dict[str, ExperimentState] = {}  # to_promise() of stored states

    # ------------------------------------------------------------ definition

    @property
    def tags(self) -> list[str]:
        """The tags given to every state defined now (those of the enclosing ``tag`` blocks)."""
        return self.plan.current_tags

    @contextlib.contextmanager
    def tag(self, tag: str | list[str]) -> Iterator[None]:
        """Label every state defined inside the block with ``tag`` (nestable)."""
        added = (
            [tag] if isinstance(tag, str) else list(tag) if isinstance(tag, list | tuple) else None
        )
        if added is None or not all(isinstance(item, str) for item in added):
            raise InvalidTagError(
                f"exp.tag() takes a string or a list of strings, not {tag!r}; write e.g. "
                f'exp.tag(f"lr:{{lr}}").'
            )
        negated = [item for item in added if item.startswith("!")]
        if negated:
            raise ReservedTagError(
                f"Tag {negated[0]!r} starts with '!', which tree.nodes.filter() reads as "
                f"'not'; name it without the '!' (e.g. {negated[0].lstrip('!')!r})."
            )
        before = list(self.plan.current_tags)
        self.plan.current_tags.extend(added)
        try:
            yield
        finally:
            self.plan.current_tags[:] = before

    def spawn_new_tree(self, **experiment_arguments: Any) -> ExperimentStatePromise:
        """Define the root state from its PROPERTIES; its payload is built at ``run()`` (or
        when a payload attribute of ``exp.root`` is first read).

        Every keyword reaches ``initialize_state(**experiment_arguments)`` and is kept in
        ``experiment_arguments``; only the PROPERTIES enter the root's key. A keyword that
        nothing declares gets an UnknownArgumentWarning (a typo?).
        """
        with self._spawning:
            return self._spawn(experiment_arguments)

    def _spawn(self, experiment_arguments: dict[str, Any]) -> ExperimentStatePromise:
        if self.root is not None:
            raise TreeAlreadySpawnedError(
                f"This Experiment already has a root ({self.root!r}); create one "
                "Experiment per root, e.g. one per thread that spawns its own: "
                "dg.Experiment(directory, State), on this directory or another."
            )
        cls = self.state_class
        missing = [name for name in cls.PROPERTIES if name not in experiment_arguments]
        if missing:
            raise MissingPropertyError(
                f"State {cls.__qualname__!r} needs property {missing[0]!r} (declared in "
                f"PROPERTIES); pass it to spawn_new_tree({missing[0]}=...)."
            )
        for name in unexpected_root_arguments(cls, experiment_arguments):
            warnings.warn(
                f"spawn_new_tree got {name!r}, which is not a property of "
                f"{cls.__qualname__!r} (PROPERTIES = {cls.PROPERTIES}), nor one of its "
                "NONHASHED_ATTRIBUTES, nor a parameter its initialize_state names: a typo? "
                "It is passed to initialize_state but does not enter the key; add it to "
                "PROPERTIES if it identifies the tree.",
                UnknownArgumentWarning,
                stacklevel=2,
            )
        properties = {name: experiment_arguments[name] for name in cls.PROPERTIES}
        key = root_key(cls, properties)
        self.root = defer_payload(new_root(cls, properties, key, self.store, self))
        self.experiment_arguments = dict(experiment_arguments)
        self.plan.add_root(key, properties, dict(experiment_arguments))
        return ExperimentStatePromise(self, key)

    def defined_state(self, key: str) -> ExperimentState:
        """The (not computed) state object the plan defines for ``key``."""
        if key not in self.plan.states:
            raise StateNotFoundError(
                f"No state {key[:12]} is defined in this experiment; use a key of a promise "
                "it returned (promise.key)."
            )
        planned = self.plan.states[key]
        if planned.stored:
            return self._stored_states[key]
        if planned.parent_key is None:
            return self._spawned_root("define")
        return defer_payload(self.defined_state(planned.parent_key).new_state(planned.recipe))

    def promise_of(self, state: ExperimentState) -> ExperimentStatePromise:
        """The promise of ``state`` (see :meth:`ExperimentState.to_promise`): one this
        experiment defines, or a stored one, which steps may then extend."""
        key = state.sha()
        if not self.plan.defines(key):
            if not self.store.is_done(key):
                raise StateNotFoundError(
                    f"State {key[:12]} is neither defined in this experiment nor stored in "
                    f"{self.directory}; extend a state of Experiment.restore(...).graph, or "
                    "a promise that spawn_new_tree() or a recipe returned."
                )
            self.plan.add_stored(key)
            self._stored_states[key] = state
        return ExperimentStatePromise(self, key)

    def _spawned_root(self, action: str) -> ExperimentState:
        if self.root is None:
            raise TreeNotSpawnedError(
                f"Nothing to {action}: call exp.spawn_new_tree(...) to define the root first."
            )
        return self.root

    @property
    def leaves(self) -> dict[str, Any]:
        """The pending Dask ``Delayed`` of every Function call and of every leaf state
        without one; reading them writes nothing, computing one stores what it needs."""
        from .runners.dask import leaf_delayeds

        check_overrides_used()
        root_key = self.root.sha() if self.root is not None else None
        return leaf_delayeds(self.plan.snapshot(), self.store, root_key, self._description())

    # ------------------------------------------------------------ running

    def run(
        self,
        scheduler: str | None = None,
        client: Any = None,
        progress: bool | None = None,
        seed: int | None = None,
    ) -> RunReport:
        """Compute every defined state that is not stored yet and run every Function.

        A failing recipe fails only its own subtree; the rest finishes and is stored,
        then the first failure's exception is raised with a note listing all of them.
        Under ``dagger-wf snakefile SCRIPT`` it emits the Snakemake workflow instead.

        ``scheduler``: "single-threaded" (the default), "threads" or "processes";
        ``client``: a ``dask.distributed.Client``. ``seed``: seed every state from this
        and its key instead of its key alone (recorded; the cache is still keyed by the
        tree, so states already stored are reused, with a SeedMismatchWarning).
        ``dagger-wf run --seed/--scheduler`` set the defaults of both.
        """
        from .tracking.changes import warn_about_changes

        settings = current_settings().overridden(scheduler, seed)
        with self._taking_turns("run"):
            plan = self._snapshot(settings.seed)
            report = self._run_plan(plan, settings, client=client, progress=progress)
            record_run(report)
            warn_about_changes(report, plan, self.directory)
            if report.emitted_to is not None:
                return report
            self.last_run = report
            report.raise_first_failure()
            if settings.check_purity:
                self._check_purity_of_each_recipe(report, plan)
        return report

    @contextlib.contextmanager
    def _taking_turns(self, action: str) -> Iterator[None]:
        """Run, emit or compute after this experiment's other threads have: one at a time."""
        from .runners.step import step_running

        if step_running():
            raise NestedRunError(
                f"exp.{action}() was called inside a recipe's run(), initialize_state() or "
                "a Function, which a run of this experiment is running: it would wait for "
                "itself. Define every state before exp.run(), or run another Experiment."
            )
        with self._turn:
            yield

    def _snapshot(self, seed: int | None) -> Plan:
        """The plan as it is now, to run with ``seed``, which the next ``compute`` uses."""
        self.plan.seed = seed
        return self.plan.snapshot()

    def _check_purity_of_each_recipe(self, report: RunReport, plan: Plan) -> None:
        """``dagger-wf run --check-purity``: one state per recipe class, run twice more."""
        checked: set[type] = set()
        computed = report.ran | report.cached
        for key in [key for key in plan.states if key in computed]:
            recipe = plan.states[key].recipe
            if recipe is not None and type(recipe) not in checked:
                checked.add(type(recipe))
                self.check_purity(key)

    def emit_snakefile(
        self,
        snakefile: str | Path | None = None,
        max_group_size: int | None = None,
        seed: int | None = None,
    ) -> Path:
        """Write a Snakemake workflow that computes this tree (instead of running it here).

        The Snakefile goes to ``snakefile``, by default ``workflow/Snakefile``, where
        ``snakemake --profile profiles/local`` (or ``profiles/slurm``) run in the current
        directory finds it; it then computes exactly what ``run()`` would, into the same
        store. States
        are fused into cluster jobs of at most ``max_group_size`` states (1: one job each).
        Like ``run()``, it warns when stored states it reuses were made by code that has
        changed since, or with another seed.
        """
        from .tracking.changes import warn_about_changes

        path = DEFAULT_SNAKEFILE if snakefile is None else Path(snakefile)
        settings = RunSettings(
            runner="snakemake", seed=seed, snakefile=path, max_group_size=max_group_size
        )
        with self._taking_turns("emit_snakefile"):
            plan = self._snapshot(seed)
            report = self._run_plan(plan, settings)
            warn_about_changes(report, plan, self.directory)
        return path.absolute()

    def check_purity(
        self, target: ExperimentStatePromise | ExperimentState | str, n: int = 2
    ) -> PurityReport:
        """Run the step that makes ``target`` (a promise, a state or a key) ``n`` times on
        its parent, storing nothing, and compare the payload bytes; an ImpurityWarning
        names the attributes that differ. The parent is computed first if needed.
        Returns a :class:`~dagger_wf.runners.purity.PurityReport`."""
        from .runners.purity import check_purity

        key = target if isinstance(target, str) else target.sha()
        planned = self.plan.states.get(key)
        if planned is None:
            raise StateNotFoundError(
                f"State {key[:12]} is not defined in this experiment; define it (apply its "
                "recipe) before checking its purity."
            )
        check_overrides_used()
        with self._taking_turns("check_purity"):
            if planned.parent_key is not None:
                self.compute(planned.parent_key)
            return check_purity(self.store, planned, self.state_class, n, self.plan.seed)

    def compute(self, key: str, scheduler: str = "single-threaded") -> ExperimentState:
        """Compute one defined state (and its ancestors) and return it, payload loaded."""
        from .tracking.changes import warn_about_repairs

        state = self.defined_state(key)
        with self._taking_turns("compute"):
            settings = RunSettings(scheduler=scheduler, seed=self.plan.seed)
            lineage = self.plan.lineage(key)  # computed, not defined: the tree is unchanged
            report = self._run_plan(lineage, settings, defines=False)
            warn_about_repairs(report.repaired)
            report.raise_first_failure()
        state.restore()
        return state

    def _run_plan(
        self,
        plan: Plan,
        settings: RunSettings,
        client: Any = None,
        progress: bool | None = None,
        defines: bool = True,
    ) -> RunReport:
        """Run ``plan`` with the runner the settings name; ``defines``: ``plan`` is the
        whole tree this experiment defines now, its part of the current tree."""
        from .runners import get_runner
        from .tracking.changes import snapshot_plan_code

        check_overrides_used()  # before anything is computed, whichever way it is asked
        self._spawned_root("emit" if settings.runner == "snakemake" else "run")
        self.save()
        unrecorded = None
        definition = None
        emitting = settings.runner == "snakemake"  # the workflow marks its own end
        if defines:
            try:
                definition = self._record_definition(plan, emitting)
            except OSError as error:  # a full disk: the run goes on, then raises it
                unrecorded = error
        if definition is not None and emitting:
            settings = dataclasses.replace(settings, definition=definition.path)
        runner = get_runner(settings, client=client, progress=progress)
        try:
            snapshot_plan_code(plan, self.directory)
            report = runner.run(plan, self.store)
        finally:
            if definition is not None and not emitting:
                finish_definition(definition.path)
        return dataclasses.replace(report, unrecorded=unrecorded) if unrecorded else report

    def _record_definition(self, plan: Plan, workflow: bool) -> Definition:
        """Record that this definition now defines ``plan`` from its root (every state,
        not only those this run computes): its part of the current tree."""
        root = self._spawned_root("run")
        return write_definition(self.store, self.definition, root.sha(), plan.states, workflow)

    def save(self) -> None:
        """Record the root and write ``experiment.json``: the state class, the latest
        root and its arguments."""
        if self.root is not None:
            self.store.add_root(self.root.sha())
        self.store.write_experiment(self._description())

    def _description(self) -> dict[str, Any]:
        """What ``experiment.json`` says: the state class, the latest root, its arguments."""
        return {
            **_state_class_description(self.state_class),
            "root": self.root.sha() if self.root is not None else None,
            "experiment_arguments": to_json(self.experiment_arguments),
        }

    # ------------------------------------------------------------ analysis

    def history(self, include_superseded: bool = False) -> pandas.DataFrame:
        """A pandas DataFrame, one row per attempt of every state of the current tree, or
        of every stored state with ``include_superseded=True`` (column ``current`` says
        which); see :meth:`StaticExperimentTree.history`, which also filters by nodes."""
        from .tracking.history import history_frame

        return history_frame(self.store, include_superseded=include_superseded)

    def start_dashboard(
        self,
        host: str | None = None,
        port: int | None = None,
        open_browser: bool = False,
        block: bool | None = None,
    ) -> DashboardServer:
        """Serve this experiment's read-only dashboard (see ``dagger-wf dashboard``), on
        127.0.0.1:8765 unless ``host`` and ``port`` say otherwise.

        In a script it blocks until Ctrl-C; in a notebook it returns at once and serves
        from a background thread (``.stop()`` ends it). ``block`` says so explicitly.
        """
        from .dashboard import serve

        return serve(self.directory, host, port, open_browser, block)

    @classmethod
    def restore(
        cls,
        directory: str | Path,
        state_class: type[ExperimentState] | None = None,
        slim: bool = True,
        include_superseded: bool = False,
    ) -> Experiment:
        """Reopen a stored experiment for analysis: ``.root`` and ``.graph`` (the tree).

        With ``slim=True`` (the default) no payload is read; ``state.restore()`` or
        ``state.lazy_load()`` loads one state's payload when needed. The graph is the
        current tree: what the latest run of each script defines (see
        :mod:`dagger_wf.store.definitions`); ``include_superseded=True`` adds every other
        stored state (their keys are ``graph.superseded`` either way). Steps that extend
        the restored tree (``state.to_promise()``) are a definition of their own: running
        them adds to the tree, replacing only what the last such extension defined.
        """
        from .analysis import load_tree

        store = ExperimentStore(directory)
        info = store.read_experiment()
        definition = f"{_defining_script()}, extending a restored tree"
        experiment = cls(directory, state_class or _stored_state_class(info), definition=definition)
        experiment.experiment_arguments = from_json(info.get("experiment_arguments"))
        experiment.graph = load_tree(
            store, experiment.state_class, experiment, slim, include_superseded
        )
        root_key = info.get("root")
        experiment.root = experiment.graph.node_map.get(root_key) if root_key else None
        return experiment


def _defining_script() -> str:
    """Who defines a tree, for the current tree: the running script's file name (the same
    on a laptop and on a cluster's login node), or ``<interactive>``."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return Path(main_file).name if main_file else "<interactive>"


def _state_class_description(cls: type[ExperimentState]) -> dict[str, Any]:
    """What identifies the state class of an experiment directory.

    ``state_module`` names it as keys do (a script by its file name); ``import_module``
    is where to import it from, or None for a script run directly, which is never
    imported again (that would run the script)."""
    return {
        "state_class": cls.__qualname__,
        "state_module": module_name(cls),
        "import_module": None if cls.__module__ == "__main__" else cls.__module__,
        "properties": list(cls.PROPERTIES),
        "nonhashed_attributes": list(cls.NONHASHED_ATTRIBUTES),
    }


def _check_state_class(store: ExperimentStore, state_class: type[ExperimentState]) -> None:
    stored = store.read_experiment()
    expected = _state_class_description(state_class)
    names = ("state_class", "state_module", "properties", "nonhashed_attributes")
    differences = [
        f"{name}: stored {stored.get(name)!r}, given {expected[name]!r}"
        for name in names
        if stored.get(name) != expected[name]
    ]
    if differences:
        raise StateClassMismatchError(
            f"{store.directory} holds an experiment of another state class "
            f"({'; '.join(differences)}). Pass state_class={stored.get('state_class')} "
            "as it was, or use another directory for this experiment."
        )


def _stored_state_class(info: dict[str, Any]) -> type[ExperimentState]:
    """The class that wrote the experiment if it can be imported, else a stand-in that
    declares the same PROPERTIES and NONHASHED_ATTRIBUTES (enough for analysis)."""
    import_module = info.get("import_module")
    if import_module is not None:
        try:
            found: Any = importlib.import_module(import_module)
            for part in info["state_class"].split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError) as error:
            warnings.warn(
                f"Cannot import the state class {import_module}.{info['state_class']} "
                f"({error}); restoring with a stand-in class that has its PROPERTIES and "
                "NONHASHED_ATTRIBUTES. Pass state_class=... to use your own.",
                StandInStateClassWarning,
                stacklevel=3,
            )
        else:
            if isinstance(found, type) and issubclass(found, ExperimentState):
                return found
    stand_in = type(
        info["state_class"].rsplit(".", 1)[-1],
        (ExperimentState,),
        {
            "PROPERTIES": list(info["properties"]),
            "NONHASHED_ATTRIBUTES": list(info["nonhashed_attributes"]),
            "__module__": info["state_module"],
        },
    )
    stand_in.__qualname__ = info["state_class"]
    return stand_in
