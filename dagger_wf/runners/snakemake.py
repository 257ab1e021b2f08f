"""Compile a plan to a Snakemake workflow: every state a file target, a few generic rules.

The Snakefile names no state: it reads the manifest (parent, group of each state) from
the store's workflow folder, and the specs file there carries the recipes themselves,
cloudpickled, so a job on any node of a shared file system rebuilds exactly the recipe
the user defined. Only keys (hex), fixed names and declared RESOURCES reach the
Snakefile, each through :func:`quote`; property values never do.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import UnsupportedPathError
from ..events import EMITTED, RunReport
from ..plan import Plan
from ..settings import RunSettings
from ..store import ExperimentStore, layout
from ..store.atomic import atomic_write, atomic_write_json
from ..version import __version__
from .grouping import DEFAULT_GROUP_SIZE, assign_groups
from .transition import stored_state_events

# The runner's own files, in the store's workflow folder.
MANIFEST_NAME = "manifest.json"
SPECS_NAME = "specs.pkl"
FUNCTION_RUNS_NAME = "function-runs"
TARGETS_NAME = "targets"  # one empty file per stored state: what Snakemake may delete
SETTINGS_SUFFIX = ".dagger_wf.yaml"
DEFAULT_RULE = "state"
# Python's collector thresholds while Snakemake builds the DAG (see the Snakefile): a full
# collection of its millions of job objects at the usual ones costs half a dry run.
DAG_GC_THRESHOLDS = (100_000, 50, 100)


@dataclasses.dataclass(frozen=True)
class StateRule:
    """One generic rule: the states whose recipes need the same resources."""

    name: str
    threads: int
    resources: dict[str, int | str]
    keys: tuple[str, ...] = ()  # empty: every state no other rule claims


def quote(value: object) -> str:
    """The one way a value enters the Snakefile: a Python literal that cannot break out."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"only ints and strings go into a Snakefile, not {value!r}")
    return json.dumps(value, ensure_ascii=True)


def plan_rules(plan: Plan) -> list[StateRule]:
    """A rule per distinct RESOURCES declaration, most specific first, the default last."""
    keys_by_resources: dict[tuple, list[str]] = {}
    for key, planned in plan.states.items():
        resources = planned.recipe.RESOURCES if planned.recipe is not None else {}
        if resources:
            keys_by_resources.setdefault(tuple(sorted(resources.items())), []).append(key)
    rules = [
        StateRule(
            f"{DEFAULT_RULE}_{index}",
            int(dict(signature).get("cpus_per_task", 1)),
            dict(signature),
            tuple(keys),
        )
        for index, (signature, keys) in enumerate(sorted(keys_by_resources.items()))
    ]
    return [*rules, StateRule(DEFAULT_RULE, 1, {})]


def render_snakefile(rules: list[StateRule], settings_file: str) -> str:
    """The Snakefile's text: a pure function of the rules."""
    import importlib.resources

    import jinja2

    environment = jinja2.Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    environment.filters["quote"] = quote
    template_text = (
        importlib.resources.files("dagger_wf.templates").joinpath("Snakefile.j2").read_text()
    )
    return environment.from_string(template_text).render(
        version=__version__,
        settings_file=settings_file,
        manifest_file=f"{layout.WORKFLOW}/{MANIFEST_NAME}",
        state_target=f"{layout.WORKFLOW}/{TARGETS_NAME}/{{key}}",
        function_run_done=f"{layout.WORKFLOW}/{FUNCTION_RUNS_NAME}/{{run}}/{{key}}.done",
        dag_gc_thresholds=DAG_GC_THRESHOLDS,
        rules=rules,
    )


def build_manifest(plan: Plan, groups: dict[str, str]) -> dict[str, Any]:
    depths: dict[str | None, int] = {None: -1}
    for key, planned in plan.states.items():
        depths[key] = depths[planned.parent_key] + 1
    return {
        "format": 1,
        "depth": max(depths.values()),
        "states": {
            key: {"parent": planned.parent_key, "group": groups[key], "tags": sorted(planned.tags)}
            for key, planned in plan.states.items()
        },
        "evaluated": [key for key, planned in plan.states.items() if planned.functions],
    }


def _specs_bytes(plan: Plan) -> bytes:
    """Two pickles: the import path of the emitting process, then the plan itself.

    Recipes from the user's own modules are pickled by reference; the job puts this
    import path in front of its own so that it finds those modules where they were.
    """
    python_path = [str(Path(entry or ".").absolute()) for entry in sys.path]
    stream = io.BytesIO()
    pickle.dump(python_path, stream, protocol=5)
    cloudpickle.dump(plan, stream, protocol=5)
    return stream.getvalue()


def emit_workflow(
    plan: Plan,
    store: ExperimentStore,
    snakefile: str | Path,
    max_group_size: int = DEFAULT_GROUP_SIZE,
    definition: Path | None = None,
) -> Path:
    """Write the Snakefile (and its settings beside it) and the store's workflow files;
    ``definition``: the file the workflow marks as ended when Snakemake finishes it."""
    if set("{}") & set(str(store.directory)):
        raise UnsupportedPathError(
            f"The experiment directory {store.directory} has a brace in its path, which "
            "Snakemake reads as a wildcard, so its states cannot be Snakemake's targets. "
            "Move the experiment to a directory without braces (or run it with exp.run())."
        )
    snakefile = Path(snakefile).absolute()
    settings = snakefile.with_name(snakefile.name + SETTINGS_SUFFIX)
    specs = _specs_bytes(plan)
    atomic_write(store.workflow_directory / SPECS_NAME, lambda file: file.write(specs))
    groups = assign_groups(plan, max_group_size)
    atomic_write_json(store.workflow_directory / MANIFEST_NAME, build_manifest(plan, groups))
    settings_text = json.dumps(
        {
            "store": str(store.directory),
            "durable": store.durable,
            "definition": str(definition) if definition else None,
        },
        ensure_ascii=True,
    )
    atomic_write(settings, lambda file: file.write(settings_text.encode("ascii")))
    text = render_snakefile(plan_rules(plan), settings.name)
    atomic_write(snakefile, lambda file: file.write(text.encode("ascii")))
    return snakefile


class SnakemakeEmitter:
    """The "snakemake" runner: computes nothing here, writes the workflow that will.

    Its report lists the stored states the workflow will reuse (as CACHED events), so
    that emitting warns about their code and seeds as a run does."""

    def __init__(
        self, settings: RunSettings, client: object = None, progress: object = None
    ) -> None:
        self.snakefile = settings.snakefile
        self.max_group_size = settings.max_group_size or DEFAULT_GROUP_SIZE
        self.definition = settings.definition

    def run(self, plan: Plan, store: ExperimentStore) -> RunReport:
        events = stored_state_events(plan, store)
        path = emit_workflow(plan, store, self.snakefile, self.max_group_size, self.definition)
        return RunReport(EMITTED, events, emitted_to=path)
