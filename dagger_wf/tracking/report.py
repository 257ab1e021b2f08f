"""Plain-text views of stored states for the command line: one state, or two side by side."""

from __future__ import annotations

from typing import Any

from ..errors import DaggerError
from ..hashing import short_key
from ..records import StateRecord
from ..store import ExperimentStore
from ..store.layout import CODE, ENVIRONMENTS
from ..store.snapshots import load_snapshot
from .code import code_diff
from .environment import environment_diff, git_summary


def _fields(record: StateRecord, store: ExperimentStore) -> dict[str, Any]:
    """The comparable facts of a state, flat: name -> value."""
    fields: dict[str, Any] = {
        "status": record.status.value,
        "recipe": record.recipe.class_name if record.recipe else "(root)",
        "parent": short_key(record.parent_key),
        "tags": ", ".join(sorted(record.tags)),
        "seed": record.seed,
        "started": record.started,
        "duration_s": None if record.duration_s is None else round(record.duration_s, 3),
        "host": record.host,
        "runner": record.runner,
    }
    fields.update({f"property {name}": value for name, value in record.properties.items()})
    if record.recipe is not None:
        fields.update({f"recipe {name}": value for name, value in record.recipe.properties.items()})
    metrics = store.recorded_metrics(record)
    fields.update(
        {
            f"metric {name}": f"{series[-1][1]:.6g} ({len(series)} steps)"
            for name, series in sorted(metrics.items())
            if series
        }
    )
    return fields


def _record(store: ExperimentStore, key: str) -> StateRecord:
    if store.is_done(key):
        return store.read_record(key)
    if store.failure_paths(key):
        return store.read_failure(key)
    return store.read_record(key)  # raises StateNotComputedError, which names the key


def _environment_summary(store: ExperimentStore, digest: str | None) -> list[str]:
    if digest is None:
        return ["  (not recorded)"]
    try:
        environment = load_snapshot(store.directory, ENVIRONMENTS, digest)
    except DaggerError as error:
        return [f"  (unreadable: {error})"]
    packages = environment.get("packages", {})
    lines = [
        f"  python {environment['python']['version']} on {environment['platform']['system']} "
        f"{environment['platform']['machine']}, {environment['cpu']['count']} CPUs "
        f"({environment['cpu']['model']})",
        f"  git {git_summary(environment.get('git'))}",
    ]
    lines += [f"  {name} {packages[name]}" for name in ("numpy", "torch") if name in packages]
    return lines


def show_state(store: ExperimentStore, key: str) -> str:
    """Parameters, metrics, code, environment and error of one state."""
    record = _record(store, key)
    lines = [f"state {record.key}"]
    lines += [f"  {name}: {value}" for name, value in _fields(record, store).items()]
    lines.append("environment:")
    lines += _environment_summary(store, record.environment)
    if record.code:
        try:
            code = load_snapshot(store.directory, CODE, record.code)
            lines += [f"code of {code['recipe']}:", code.get("recipe_source") or "  (no source)"]
        except DaggerError as error:
            lines.append(f"code: (unreadable: {error})")
    if record.error:
        lines += ["error:", record.error.rstrip()]
    return "\n".join(lines)


def diff_states(store: ExperimentStore, first_key: str, second_key: str) -> str:
    """Parameters side by side, then what changed in code and environment."""
    first, second = _record(store, first_key), _record(store, second_key)
    left, right = _fields(first, store), _fields(second, store)
    names = list(dict.fromkeys([*left, *right]))
    width = max(len(name) for name in names)
    lines = [f"{'':{width}}  {short_key(first.key):<24}  {short_key(second.key)}"]
    for name in names:
        marker = " " if left.get(name) == right.get(name) else "*"
        lines.append(f"{name:{width}} {marker}{left.get(name, '')!s:<24.24}  {right.get(name, '')}")
    lines += _snapshot_diff(store, CODE, first.code, second.code)
    lines += _snapshot_diff(store, ENVIRONMENTS, first.environment, second.environment)
    return "\n".join(lines)


def _snapshot_diff(
    store: ExperimentStore, kind: str, first: str | None, second: str | None
) -> list[str]:
    if first == second or first is None or second is None:
        return [f"{kind}: same"] if first == second else [f"{kind}: not recorded for both"]
    try:
        old = load_snapshot(store.directory, kind, first)
        new = load_snapshot(store.directory, kind, second)
    except DaggerError as error:
        return [f"{kind}: cannot compare ({error})"]
    if kind == CODE:
        return ["code:", code_diff(old, new) or "  (same module source)"]
    return ["environment:", *(f"  {line}" for line in environment_diff(old, new))]
