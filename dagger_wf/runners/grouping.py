"""Which states share one cluster job.

A cluster job costs seconds of scheduling, an interpreter start and the imports (torch
alone takes about 1.6 s), so a recipe that runs for milliseconds must not cost one job.
States are fused into groups: a state joins its parent's group unless either of them
needs a job of its own (``Recipe.needs_own_job()``: it declares RESOURCES, or sets
OWN_JOB) or the group is full. Snakemake submits each group as one job.
"""

from __future__ import annotations

from ..plan import Plan, PlannedState

DEFAULT_GROUP_SIZE = 16


def _own_job(planned: PlannedState) -> bool:
    return planned.recipe is not None and planned.recipe.needs_own_job()


def assign_groups(plan: Plan, max_group_size: int = DEFAULT_GROUP_SIZE) -> dict[str, str]:
    """Group name of every state; ``max_group_size=1`` gives one job per state."""
    groups: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for key, planned in plan.states.items():
        parent = plan.states.get(planned.parent_key) if planned.parent_key else None
        parent_group = groups.get(planned.parent_key) if planned.parent_key else None
        group = f"g{key[:16]}"
        if (
            parent is not None
            and parent_group is not None
            and not _own_job(planned)
            and not _own_job(parent)
            and sizes[parent_group] < max_group_size
        ):
            group = parent_group
        groups[key] = group
        sizes[group] = sizes.get(group, 0) + 1
    return groups
