"""Issue 13's targets: each measure next to its floor and its goal, met or not, and for a
missed one the profile that shows where its time goes."""

from __future__ import annotations

import cProfile
import dataclasses
import operator
import pstats
import statistics
from collections.abc import Callable
from pathlib import Path

COMPARISONS = {"<=": operator.le, ">=": operator.ge}


@dataclasses.dataclass
class Target:
    """One row: ``value`` (seconds, or a unitless count) against ``floor`` and a goal.

    With a floor the goal bounds ``value / floor`` (``ratio``); without one it bounds
    ``value`` itself (``limit`` in the value's unit).
    """

    measure: str
    value: list[float]
    floor: list[float] | None
    comparison: str
    limit: float
    unit: str = "s"  # "s": seconds; else the unit's name ("payloads")
    on_value: bool = False  # the goal bounds the value even though a floor is shown
    profile: list[str] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if not self.floor:
            return None
        return statistics.median(self.value) / statistics.median(self.floor)

    @property
    def figure(self) -> float:
        """What the goal bounds: the ratio of the medians, or the value's median."""
        ratio = self.ratio
        return statistics.median(self.value) if ratio is None or self.on_value else ratio

    @property
    def met(self) -> bool:
        """At the precision printed (2 decimals of the ratio or value, in its unit)."""
        scale = 1 if self.unit != "s" or (self.floor and not self.on_value) else 1e3
        return COMPARISONS[self.comparison](
            round(self.figure * scale, 2), round(self.limit * scale, 2)
        )

    @property
    def goal(self) -> str:
        if self.floor and not self.on_value:
            return f"{self.comparison} {self.limit:g}x"
        return f"{self.comparison} {quantity(self.limit, self.unit)}"


def quantity(value: float, unit: str) -> str:
    if unit != "s":
        return f"{value:.2f} {unit}"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def print_targets(targets: list[Target]) -> None:
    """The table of every target, then the profile of each missed one that has one."""
    print("targets (issue 13): medians of this run")
    print(f"  {'measure':<52} {'value':>10} {'floor':>10} {'ratio':>7}  {'target':<10} met")
    for target in targets:
        floor = quantity(statistics.median(target.floor), "s") if target.floor else "-"
        ratio = "-" if target.ratio is None else f"{target.ratio:.2f}x"
        value = quantity(statistics.median(target.value), target.unit)
        mark = "yes" if target.met else "MISSED"
        print(
            f"  {target.measure:<52} {value:>10} {floor:>10} {ratio:>7}  {target.goal:<10} {mark}"
        )
    for target in targets:
        if not target.met and target.profile:
            print(f"\nwhy missed: {target.measure}")
            print("\n".join(target.profile))
    print()


def profile_lines(action: Callable[[], object], top: int = 12) -> list[str]:
    """Run ``action`` once under cProfile: the functions with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.runcall(action)
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    lines = [f"  {'own time':>9} {'share':>6} {'calls':>8}  function (profiled run: {total:.3f} s)"]
    for (path, line, name), (_, calls, own, _, _) in rows[:top]:
        where = f"{Path(path).name}:{line}({name})" if line else name
        lines.append(f"  {own:>8.3f}s {own / total:>6.0%} {calls:>8}  {where}")
    return lines
