"""Metrics: named series of numbers a recipe or Function records on a state."""

from __future__ import annotations

import contextlib
import math
import numbers
import re
from typing import Any

from .errors import InvalidMetricError

MetricSeries = list[list[float]]  # [[step, value], ...] in the order they were logged
_NAME = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,200}$")


def check_metric_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidMetricError(
            f"Metric name {name!r} is not allowed: use 1 to 200 letters, digits or "
            "'_.:/@+-' (e.g. 'loss', 'eval/accuracy')."
        )
    return name


def metric_value(name: str, value: object) -> float:
    """``value`` as a float: a real number, or a one-element array or tensor (``.item()``)."""
    if hasattr(value, "item") and not isinstance(value, numbers.Real):
        # A many-element array refuses .item(); it is then named in the error below.
        with contextlib.suppress(ValueError, RuntimeError):
            value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidMetricError(
            f"Metric {name!r} got {value!r} ({type(value).__name__}), not a number; log a "
            "float or an int (for a tensor, its .item())."
        )
    return float(value)


def append_metric(
    metrics: dict[str, MetricSeries], name: object, value: object, step: int | None
) -> None:
    name = check_metric_name(name)
    series = metrics.setdefault(name, [])
    if step is None:
        step = len(series)
    elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidMetricError(f"Metric {name!r}: step {step!r} is not an int.")
    series.append([int(step), metric_value(name, value)])


def metrics_from_return(value: Any) -> dict[str, MetricSeries]:
    """A Function's return value as metrics, if it is a dict of numbers (else nothing)."""
    if not isinstance(value, dict) or not value:
        return {}
    metrics: dict[str, MetricSeries] = {}
    try:
        for name, number in value.items():
            append_metric(metrics, name, number, None)
    except InvalidMetricError:
        return {}
    return metrics


def to_json_series(metrics: dict[str, MetricSeries]) -> dict[str, Any]:
    """JSON has no NaN or infinity: such values are stored as strings."""
    return {
        name: [[step, value if math.isfinite(value) else repr(value)] for step, value in series]
        for name, series in metrics.items()
    }


def from_json_series(document: dict[str, Any]) -> dict[str, MetricSeries]:
    return {
        name: [[int(step), float(value)] for step, value in series]
        for name, series in document.items()
    }
