"""Rebuilding the tree from a store: metadata only unless a full restore is asked for."""

from __future__ import annotations

import warnings

from ..collector import collector_paused
from ..errors import CorruptStateError, CorruptStateWarning
from ..records import Status
from ..state import ExperimentState, TreeOwner, from_record
from ..store import ExperimentStore
from ..store.definitions import current_keys_of
from .tree import StaticExperimentTree


def load_tree(
    store: ExperimentStore,
    state_class: type[ExperimentState],
    owner: TreeOwner,
    slim: bool = True,
    include_superseded: bool = False,
) -> StaticExperimentTree:
    """The current tree's stored states (done or failed; every stored state with
    ``include_superseded``), each linked to its parent and children.

    A corrupt record is skipped with a :class:`CorruptStateWarning`, and so is a damaged
    payload of a full restore (its state stays slim); the rest still loads. Each error is
    in ``tree.corrupt``, its ``key`` naming the state.
    """
    with collector_paused():
        tree = _slim_tree(store, state_class, owner, include_superseded)
    if not slim:
        for state in tree.node_map.values():
            if state.dagger.status is Status.DONE:
                try:
                    state.restore()
                except CorruptStateError as error:
                    warnings.warn(str(error), CorruptStateWarning, stacklevel=3)
                    tree.corrupt.append(error)
    return tree


def _slim_tree(
    store: ExperimentStore,
    state_class: type[ExperimentState],
    owner: TreeOwner,
    include_superseded: bool,
) -> StaticExperimentTree:
    node_map: dict[str, ExperimentState] = {}
    corrupt: list[CorruptStateError] = []
    records = []
    for record in store.iter_records():
        if isinstance(record, CorruptStateError):
            warnings.warn(str(record), CorruptStateWarning, stacklevel=4)
            corrupt.append(record)
            continue
        records.append(record)
    current = current_keys_of(store, records)
    for record in records:
        if include_superseded or record.key in current:
            node_map[record.key] = from_record(state_class, record, store, owner)
    for state in node_map.values():
        parent = node_map.get(state.parent_sha) if state.parent_sha else None
        if parent is not None:
            state.parent = parent
            parent.children.add(state)
    superseded = {record.key for record in records} - current
    return StaticExperimentTree(
        node_map, store.root_keys(), corrupt, store.directory, superseded, include_superseded
    )
