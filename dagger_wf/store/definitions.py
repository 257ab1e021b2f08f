"""The current tree: which stored states the latest definitions define.

Each ``exp.run()`` and each emitted workflow writes the keys of every state its
definition (by default the script's file name; ``Experiment(..., definition=name)``)
defines from one root to ``definitions/<digest>.json``: one file per definition and root,
replaced whole by the next run of that definition from that root. No file is read,
changed and written back, so scripts running at once never lose each other's.

The rule, kept by :func:`current_keys`:

1. A state is *defined* when the latest run of some definition defined it. What a script
   defines replaces what it defined before (an edited recipe, other parameters, a branch
   dropped); what other scripts (other definitions) define stays.
2. Of the defined states one parent has with one recipe class and the same properties
   but different code versions (a shared recipe edited between the runs of two scripts),
   only the latest defined counts.
3. The *current* tree is what a root reaches through defined states that rule 2 keeps.
   Every other stored state is *superseded*: it stays in the store (defining it again
   makes it current, computing nothing) until ``dagger-wf gc --superseded``.

A store written before definitions existed has none: all its states are defined, and rule
2 orders code versions by when they were computed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CorruptStateError, CorruptStateWarning, UnhashablePropertyError
from ..hashing import digest, slot_key
from ..records import StateRecord
from . import layout
from .atomic import atomic_write_json, naming_failed_write
from .state_store import ExperimentStore


@dataclasses.dataclass(frozen=True)
class Definition:
    """What the latest run of the definition ``name`` defined from the root ``root``."""

    name: str
    root: str
    keys: frozenset[str]
    defined_ns: int


def definition_path(store: ExperimentStore, name: str, root: str) -> Path:
    return store.directory / layout.DEFINITIONS / f"{digest('Definition', name, root)}.json"


def write_definition(
    store: ExperimentStore, name: str, root: str, keys: Iterable[str]
) -> Definition:
    """Record that the definition ``name`` now defines exactly ``keys`` from ``root``
    (replacing what it defined before). When it is again what it was, the file is only
    touched: when it was defined is its modification time, and a run that only reuses
    states needs no disk space."""
    path = definition_path(store, name, root)
    defined = frozenset(keys)
    if _defines(path, defined):
        os.utime(path)
    else:
        document = {
            "name": name,
            "root": root,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "keys": sorted(defined),
        }
        with naming_failed_write(
            f"the definition of this tree ({layout.DEFINITIONS}/)", store.directory
        ):
            atomic_write_json(path, document, store.durable)
    return Definition(name, root, defined, path.stat().st_mtime_ns)


def _defines(path: Path, keys: frozenset[str]) -> bool:
    try:
        return _read(path).keys == keys
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: write it
        return False


def _read(path: Path) -> Definition:
    document = json.loads(path.read_bytes())
    return Definition(
        str(document["name"]),
        str(document["root"]),
        frozenset(document["keys"]),
        path.stat().st_mtime_ns,
    )


def read_definitions(store: ExperimentStore) -> tuple[list[Definition], list[CorruptStateError]]:
    """Every definition's latest run, and the errors of files that cannot be read."""
    definitions, corrupt = [], []
    for path in sorted((store.directory / layout.DEFINITIONS).glob("*.json")):
        try:
            definitions.append(_read(path))
        except (OSError, ValueError, KeyError, TypeError) as error:
            corrupt.append(
                CorruptStateError(
                    f"{path} is not a readable definition ({error}); run the script that "
                    "defines the tree again to rewrite it (the states are untouched)."
                )
            )
    return definitions, corrupt


def current_keys(
    records: Iterable[StateRecord],
    root_keys: Sequence[str],
    definitions: Sequence[Definition],
) -> set[str]:
    """The keys of the current tree among ``records`` (one per stored state)."""
    by_key = {record.key: record for record in records}
    defined_at: dict[str, int] = {}
    for definition in sorted(definitions, key=lambda definition: definition.defined_ns):
        defined_at.update(dict.fromkeys(definition.keys, definition.defined_ns))  # latest
    defined = by_key.keys() & defined_at.keys() if definitions else by_key.keys()
    children: dict[str | None, list[StateRecord]] = {}
    for key in defined:
        record = by_key[key]
        children.setdefault(record.parent_key, []).append(record)
    older = _older_versions(children, defined_at)
    current: set[str] = set()
    frontier = [key for key in root_keys if key in defined and by_key[key].parent_key is None]
    while frontier:
        key = frontier.pop()
        if key not in current and key not in older:
            current.add(key)
            frontier += [child.key for child in children.get(key, ())]
    return current


def _older_versions(
    children: dict[str | None, list[StateRecord]], defined_at: dict[str, int]
) -> set[str]:
    """Rule 2: the states that another code version of the same step replaced."""
    older: set[str] = set()
    for parent_key, siblings in children.items():
        if parent_key is None or len(siblings) < 2:
            continue  # a root, or an only child: nothing to compare
        by_class: dict[str, list[StateRecord]] = {}
        for sibling in siblings:
            if sibling.recipe is not None:
                by_class.setdefault(sibling.recipe.class_name, []).append(sibling)
        for same_class in by_class.values():
            if len({sibling.recipe.code_version for sibling in same_class if sibling.recipe}) > 1:
                older |= _replaced(parent_key, same_class, defined_at)
    return older


def _replaced(
    parent_key: str, same_class: list[StateRecord], defined_at: dict[str, int]
) -> set[str]:
    """Of siblings made by one recipe class in several code versions, those of each step
    (same properties) that were not defined last."""
    versions: dict[str, list[StateRecord]] = {}
    for sibling in same_class:
        assert sibling.recipe is not None
        try:
            slot = slot_key(parent_key, sibling.recipe)
        except UnhashablePropertyError:  # a value that no longer loads: its own step
            slot = sibling.key
        versions.setdefault(slot, []).append(sibling)
    replaced: set[str] = set()
    for same_step in versions.values():
        moments = {
            record.key: (defined_at.get(record.key, 0), record.started or "")
            for record in same_step
        }
        latest = max(moments.values())
        replaced |= {key for key, moment in moments.items() if moment < latest}
    return replaced


def current_keys_of(store: ExperimentStore, records: Iterable[StateRecord]) -> set[str]:
    """:func:`current_keys` with the store's roots and definitions; a definition file
    that cannot be read is skipped with a :class:`CorruptStateWarning`."""
    definitions, corrupt = read_definitions(store)
    for error in corrupt:
        warnings.warn(str(error), CorruptStateWarning, stacklevel=3)
    return current_keys(records, store.root_keys(), definitions)
