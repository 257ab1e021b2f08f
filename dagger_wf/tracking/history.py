"""The history of an experiment as pandas DataFrames: attempts, and metric series.

Read from the store alone (metadata and evaluation records, never payloads), so a
history of a large tree is cheap. pandas is imported only here, when asked for.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CorruptStateError, CorruptStateWarning
from ..records import StateRecord, Status
from ..store import ExperimentStore
from ..store.definitions import current_keys_of

if TYPE_CHECKING:
    import pandas


def _row(
    record: StateRecord, metrics: dict[str, list[list[float]]], current: bool
) -> dict[str, Any]:
    recipe = record.recipe
    row: dict[str, Any] = {
        "key": record.key,
        "parent": record.parent_key,
        "recipe": recipe.class_name if recipe else "(root)",
        "status": record.status.value,
        "current": current,
        "tags": ",".join(sorted(record.tags)),
        "started": record.started,
        "finished": record.finished,
        "duration_s": record.duration_s,
        "host": record.host,
        "runner": record.runner,
        "seed": record.seed,
        "error_type": record.error_type,
    }
    row.update({f"property.{name}": value for name, value in record.properties.items()})
    if recipe is not None:
        row.update({f"recipe.{name}": value for name, value in recipe.properties.items()})
    row.update({f"metric.{name}": series[-1][1] for name, series in metrics.items() if series})
    return row


def _pending_row(marker: dict[str, Any]) -> dict[str, Any]:
    """A state being computed now (or whose worker died and was not yet recorded)."""
    return {
        "key": marker["key"],
        "status": Status.PENDING.value,
        "current": True,
        "host": marker.get("host"),
        "runner": marker.get("runner"),
    }


def readable_attempts(store: ExperimentStore) -> list[StateRecord]:
    """Every attempt the store keeps (failed ones first, then each stored state's
    record), each file that cannot be read skipped with a :class:`CorruptStateWarning`."""
    attempts = []
    for record in store.iter_attempts():
        if isinstance(record, CorruptStateError):
            warnings.warn(str(record), CorruptStateWarning, stacklevel=4)
            continue
        attempts.append(record)
    return attempts


def attempt_rows(
    store: ExperimentStore, keys: Iterable[str] | None = None, include_superseded: bool = False
) -> list[dict[str, Any]]:
    """The rows of :func:`history_frame`, as plain dicts, in the order the store keeps."""
    wanted = set(keys) if keys is not None else None
    attempts = readable_attempts(store)
    latest = {record.key: record for record in attempts}  # a state's record comes last
    current = current_keys_of(store, latest.values())
    rows = []
    for record in attempts:
        if wanted is None and not include_superseded and record.key not in current:
            continue
        if wanted is not None and record.key not in wanted:
            continue
        rows.append(_row(record, store.recorded_metrics(record), record.key in current))
    rows += [
        _pending_row(marker)
        for marker in store.running_markers()
        if (wanted is None or marker["key"] in wanted) and not store.is_done(marker["key"])
    ]
    return rows


def history_frame(
    store: ExperimentStore, keys: Iterable[str] | None = None, include_superseded: bool = False
) -> pandas.DataFrame:
    """One row per attempt (each computed state, each failed attempt, each state being
    computed now: status "pending"), oldest first, of the current tree's states (of every
    stored state with ``include_superseded``; see :mod:`dagger_wf.store.definitions`).

    Columns: key, parent, recipe, status, current, tags, times, host, runner, seed,
    error_type, then ``property.<name>``, ``recipe.<name>`` and the final value of each
    metric as ``metric.<name>``. ``keys`` keeps only those states (e.g. a node filter's
    shas()), current or not.
    """
    import pandas

    frame = pandas.DataFrame(attempt_rows(store, keys, include_superseded))
    if not frame.empty:
        frame = frame.sort_values("started", kind="stable", na_position="first")
    return frame.reset_index(drop=True)


def metric_frame(store: ExperimentStore, name: str, keys: Iterable[str]) -> pandas.DataFrame:
    """The series of metric ``name`` of each state, long format: key, step, value."""
    import pandas

    rows = []
    for key in keys:
        metrics = store.recorded_metrics(store.read_record(key)) if store.is_done(key) else {}
        series = metrics.get(name, [])
        rows += [{"key": key, "step": step, "value": value} for step, value in series]
    return pandas.DataFrame(rows, columns=["key", "step", "value"])
