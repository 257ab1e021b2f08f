"""What the dashboard shows, as JSON-ready values read from the store alone.

Never a payload: metadata, metric series, failure records, claims, definitions and the
code and environment snapshots, so a view of 10 000 states stays cheap. The served page
asks for each view by URL; the one-file report carries all of them at once.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable
from typing import Any

from ..analysis.drawing import step_text
from ..errors import CorruptStateError, DaggerError
from ..hashing import short_key
from ..records import StateRecord, Status, identity_from_json
from ..store import ExperimentStore
from ..store.definitions import current_keys, latest_definition_times, readable_definitions
from ..store.layout import CODE, DEFINITIONS, ENVIRONMENTS, EVALUATIONS, FAILURES, RUNNING, STATES
from ..store.snapshots import load_snapshot
from ..tracking.history import attempt_rows, readable_attempts

# A node's colour in the tree: one of these (superseded wins over the others).
DONE, CACHED, FAILED, RUNNING_NOW, SUPERSEDED = "done", "cached", "failed", "running", "superseded"
SNAPSHOT_KINDS = (CODE, ENVIRONMENTS)


def plain(value: Any) -> Any:
    """``value`` as strict JSON has it: NaN and infinities become null, other objects text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dict):
        return {str(name): plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return repr(value)


def version(store: ExperimentStore) -> str:
    """Changes whenever a state is stored, fails, is claimed or released, or a run
    defines a tree: the directories' modification times (no file is read)."""
    stamps = []
    for name in (STATES, FAILURES, RUNNING, DEFINITIONS, EVALUATIONS):
        try:
            stamps.append(str((store.directory / name).stat().st_mtime_ns))
        except FileNotFoundError:
            stamps.append("-")
    return ".".join(stamps)


def _moment_ns(moment: str | None) -> int:
    if not moment:
        return 0
    return int(datetime.datetime.fromisoformat(moment).timestamp() * 1e9)


def _node(record: StateRecord, status: str, current: bool, metrics: dict[str, Any]) -> dict:
    recipe = record.recipe
    return {
        "key": record.key,
        "short": short_key(record.key),
        "parent": record.parent_key,
        "step": step_text(recipe),
        "recipe": recipe.class_name if recipe else None,
        "properties": {
            name: repr(value)
            for name, value in (recipe.properties if recipe else record.properties).items()
        },
        "tags": sorted(record.tags),
        "status": status,
        "current": current,
        "metrics": {name: plain(series[-1][1]) for name, series in metrics.items() if series},
        "started": record.started,
        "duration_s": plain(record.duration_s),
        "host": record.host,
        "runner": record.runner,
    }


def _running_node(marker: dict[str, Any]) -> dict:
    recipe = identity_from_json(marker["recipe"]) if marker.get("recipe") else None
    return {
        "key": marker["key"],
        "short": short_key(marker["key"]),
        "parent": marker.get("parent"),
        "step": step_text(recipe) if recipe or marker.get("parent") is None else "?",
        "recipe": recipe.class_name if recipe else None,
        "properties": {
            name: repr(value) for name, value in (recipe.properties if recipe else {}).items()
        },
        "tags": sorted(marker.get("tags", [])),
        "status": RUNNING_NOW,
        "current": True,
        "metrics": {},
        "started": None,
        "duration_s": None,
        "host": marker.get("host"),
        "runner": marker.get("runner"),
    }


def tree_view(store: ExperimentStore) -> dict[str, Any]:
    """Every state the store knows (stored, failed, being computed), parents first.

    ``status`` is done (computed by the latest run that defines it), cached (reused by
    that run), failed, running or superseded (outside the current tree: ``current`` is
    false, and the page hides it unless asked).
    """
    # Each state's latest attempt: its record if stored, else its latest failure.
    latest = {record.key: record for record in readable_attempts(store)}
    definitions = readable_definitions(store)
    defined_at = latest_definition_times(definitions)
    current = current_keys(latest.values(), store.root_keys(), definitions)
    nodes = {}
    for key, record in latest.items():
        if key not in current:
            status = SUPERSEDED
        elif record.status is Status.FAILED:
            status = FAILED
        elif _moment_ns(record.finished) < defined_at.get(key, 0):
            status = CACHED
        else:
            status = DONE
        nodes[key] = _node(record, status, key in current, store.recorded_metrics(record))
    for marker in store.running_markers():
        if marker["key"] not in nodes or nodes[marker["key"]]["status"] == FAILED:
            nodes[marker["key"]] = _running_node(marker)
    _add_own_tags(nodes)
    return {
        "version": version(store),
        "directory": str(store.directory),
        "nodes": _tree_order(nodes),
        "metrics": sorted({name for node in nodes.values() for name in node["metrics"]}),
    }


def _add_own_tags(nodes: dict[str, dict]) -> None:
    for node in nodes.values():
        parent = nodes.get(node["parent"] or "")
        inherited = set(parent["tags"]) if parent else set()
        node["own_tags"] = [tag for tag in node["tags"] if tag not in inherited]


def _tree_order(nodes: dict[str, dict]) -> list[dict]:
    """Parents before children, siblings in the natural order of their steps; a state
    whose parent is unknown here counts as a root."""
    children: dict[str | None, list[dict]] = {}
    for node in nodes.values():
        parent = node["parent"] if node["parent"] in nodes else None
        children.setdefault(parent, []).append(node)
    ordered: list[dict] = []
    stack = sorted(children.get(None, []), key=_sibling_order, reverse=True)
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack += sorted(children.get(node["key"], []), key=_sibling_order, reverse=True)
    return ordered


def _sibling_order(node: dict) -> tuple[list[str | int], str]:
    """Natural order of the step text (``lr=2`` before ``lr=10``), then the key."""
    parts = re.split(r"(\d+)", node["step"])
    return ([int(part) if part.isdigit() else part for part in parts], node["key"])


def history_view(store: ExperimentStore) -> list[dict[str, Any]]:
    """One row per attempt of every state, superseded ones included (column current)."""
    rows = attempt_rows(store, include_superseded=True)
    rows.sort(key=lambda row: row.get("started") or "")
    return [plain(row) for row in rows]


def state_view(store: ExperimentStore, key: str) -> dict[str, Any] | None:
    """One state: parameters, tags, metric series, snapshots' digests, every failed
    attempt's traceback; None when the store knows no such state."""
    attempts = [record for record in store.read_failures(key) if isinstance(record, StateRecord)]
    record = _stored_record(store, key) or (attempts[-1] if attempts else None)
    if record is None:
        return None
    recipe = record.recipe
    return {
        "key": key,
        "status": record.status.value,
        "parent": record.parent_key,
        "step": step_text(recipe),
        "recipe": recipe.class_name if recipe else None,
        "module": recipe.module if recipe else None,
        "recipe_properties": plain(dict(recipe.properties)) if recipe else {},
        "properties": plain(dict(record.properties)),
        "tags": sorted(record.tags),
        "seed": record.seed,
        "started": record.started,
        "finished": record.finished,
        "duration_s": plain(record.duration_s),
        "host": record.host,
        "runner": record.runner,
        "run_id": record.run_id,
        "payload_bytes": record.payload_bytes,
        "metrics": plain(store.recorded_metrics(record)),
        "code": record.code,
        "environment": record.environment,
        "attempts": [
            {
                "started": attempt.started,
                "finished": attempt.finished,
                "host": attempt.host,
                "runner": attempt.runner,
                "error_type": attempt.error_type,
                "error": attempt.error,
            }
            for attempt in attempts
        ],
    }


def _stored_record(store: ExperimentStore, key: str) -> StateRecord | None:
    if not store.is_done(key):
        return None
    try:
        return store.read_record(key)
    except CorruptStateError:
        return None


def snapshot_view(store: ExperimentStore, kind: str, digest: str) -> dict[str, Any] | None:
    """A code snapshot as stored; an environment flattened to ``section.name: value``
    rows, which line up side by side. None when there is no such snapshot."""
    if kind not in SNAPSHOT_KINDS:
        return None
    try:
        document = load_snapshot(store.directory, kind, digest)
    except (DaggerError, OSError, ValueError):
        return None
    if kind == ENVIRONMENTS:
        return {"rows": dict(_flatten(document))}
    return plain(document)


def _flatten(document: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(document, dict):
        for name in sorted(document):
            yield from _flatten(document[name], f"{prefix}{name}.")
    else:
        yield prefix.rstrip("."), plain(document)


def report_bundle(store: ExperimentStore) -> dict[str, Any]:
    """Every view at once, for a report that opens with no server."""
    tree = tree_view(store)
    states = {node["key"]: state_view(store, node["key"]) for node in tree["nodes"]}
    snapshots: dict[str, dict[str, Any]] = {kind: {} for kind in SNAPSHOT_KINDS}
    for state in filter(None, states.values()):
        for kind, digest in ((CODE, state["code"]), (ENVIRONMENTS, state["environment"])):
            if digest and digest not in snapshots[kind]:
                snapshots[kind][digest] = snapshot_view(store, kind, digest)
    return {"tree": tree, "history": history_view(store), "states": states, "snapshots": snapshots}
