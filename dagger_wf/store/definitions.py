"""The current tree: which stored states the latest definitions define.

Each ``exp.run()`` and each emitted workflow writes the keys of every state its
definition (by default the script's file name; ``Experiment(..., definition=name)``)
defines from one root to a file of its own, ``definitions/<digest>/<run>.json``, and
marks it ``<run>.done`` when it ends. No file is read, changed and written back, so
scripts running at once never lose each other's.

The rule, kept by :func:`current_keys`:

1. A state is *defined* when the latest run of some definition defined it, or a run of
   that definition that was going on when the latest began (one script started several
   times at once: a sweep). What a script defines replaces what its runs that had ended
   defined (an edited recipe, other parameters, a branch dropped); what other scripts
   (other definitions) define stays.
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

import contextlib
import dataclasses
import json
import os
import socket
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CorruptStateError, CorruptStateWarning, UnhashablePropertyError
from ..hashing import digest, slot_key
from ..records import StateRecord
from . import layout
from .atomic import atomic_write_json, naming_failed_write
from .claims import may_still_run
from .state_store import ExperimentStore


@dataclasses.dataclass(frozen=True)
class Definition:
    """What one run of the definition ``name`` defined from the root ``root``."""

    name: str
    root: str
    keys: frozenset[str]
    defined_ns: int  # when the run began (its file's modification time)
    path: Path
    host: str = ""
    pid: int | None = 0  # None: an emitted workflow's, going on until it marks its end

    def ended_ns(self) -> int | None:
        """When the run ended (its end mark's time); None while it may be going on. A
        run whose process died without marking its end ended, as far as anyone can
        tell, when it began (a process on another host is taken to be alive)."""
        try:
            return _done_mark(self.path).stat().st_mtime_ns
        except FileNotFoundError:
            pass
        alive = self.pid is None or may_still_run(self.host, self.pid)
        return None if alive else self.defined_ns

    def overlaps(self, moment_ns: int) -> bool:
        """Whether the run was going on at ``moment_ns`` (or is still)."""
        ended = self.ended_ns()
        return self.defined_ns <= moment_ns and (ended is None or ended >= moment_ns)


def _done_mark(path: Path) -> Path:
    return path.with_suffix(".done")


def definition_directory(store: ExperimentStore, name: str, root: str) -> Path:
    return store.directory / layout.DEFINITIONS / digest("Definition", name, root)


def write_definition(
    store: ExperimentStore, name: str, root: str, keys: Iterable[str], workflow: bool = False
) -> Definition:
    """Record that a run of the definition ``name``, beginning now, defines exactly
    ``keys`` from ``root``, in a file of its own; the runs of the definition that had
    ended are superseded for good and removed. ``workflow``: the run is an emitted
    workflow's, which marks its own end (:func:`finish_definition`) when Snakemake
    finishes it. On a full disk, a run defining what the latest run defined only
    touches that run's file, so a run that reuses states needs no disk space."""
    directory = definition_directory(store, name, root)
    runs = _read_runs(directory)
    defined = frozenset(keys)
    path = directory / f"{uuid.uuid4().hex}.json"
    document = {
        "name": name,
        "root": root,
        "host": socket.gethostname(),
        "pid": None if workflow else os.getpid(),
        "keys": sorted(defined),
    }
    try:
        with naming_failed_write(
            f"the definition of this tree ({layout.DEFINITIONS}/)", store.directory
        ):
            atomic_write_json(path, document, store.durable)
    except OSError:
        latest = max(runs, key=lambda run: run.defined_ns, default=None)
        if latest is None or latest.keys != defined:
            raise
        os.utime(latest.path)
        return dataclasses.replace(latest, defined_ns=latest.path.stat().st_mtime_ns)
    began = _read(path)
    for run in runs:
        if not run.overlaps(began.defined_ns):  # it had ended: superseded for good
            run.path.unlink(missing_ok=True)
            _done_mark(run.path).unlink(missing_ok=True)
    return began


def finish_definition(path: Path) -> None:
    """Mark the run that wrote the definition at ``path`` as ended (a full disk leaves it
    unmarked: then it ends, as far as later runs can tell, with its process)."""
    with contextlib.suppress(OSError):
        _done_mark(path).touch()


def _read_runs(directory: Path) -> list[Definition]:
    runs = []
    for path in sorted(directory.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            runs.append(_read(path))
    return runs


def _read(path: Path) -> Definition:
    document = json.loads(path.read_bytes())
    return Definition(
        str(document["name"]),
        str(document["root"]),
        frozenset(document["keys"]),
        path.stat().st_mtime_ns,
        path,
        str(document.get("host", "")),
        None if document.get("pid", 0) is None else int(document.get("pid", 0)),
    )


def read_definitions(store: ExperimentStore) -> tuple[list[Definition], list[CorruptStateError]]:
    """The runs of every definition that count (the latest, and those going on when it
    began: a sweep of one script started as several processes), and the errors of files
    that cannot be read."""
    groups: dict[Path, list[Definition]] = {}
    corrupt = []
    for path in sorted((store.directory / layout.DEFINITIONS).glob("*/*.json")):
        try:
            groups.setdefault(path.parent, []).append(_read(path))
        except FileNotFoundError:  # superseded and removed meanwhile
            continue
        except (OSError, ValueError, KeyError, TypeError) as error:
            corrupt.append(
                CorruptStateError(
                    f"{path} is not a readable definition ({error}); run the script that "
                    "defines the tree again to rewrite it (the states are untouched)."
                )
            )
    counted = []
    for runs in groups.values():
        latest = max(runs, key=lambda run: run.defined_ns)
        counted += [run for run in runs if run is latest or run.overlaps(latest.defined_ns)]
    return counted, corrupt


def latest_definition_times(definitions: Sequence[Definition]) -> dict[str, int]:
    """When each key was last defined (``defined_ns`` of the latest definition naming it)."""
    defined_at: dict[str, int] = {}
    for definition in sorted(definitions, key=lambda definition: definition.defined_ns):
        defined_at.update(dict.fromkeys(definition.keys, definition.defined_ns))
    return defined_at


def current_keys(
    records: Iterable[StateRecord],
    root_keys: Sequence[str],
    definitions: Sequence[Definition],
) -> set[str]:
    """The keys of the current tree among ``records`` (one per stored state)."""
    by_key = {record.key: record for record in records}
    defined_at = latest_definition_times(definitions)
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


def readable_definitions(store: ExperimentStore) -> list[Definition]:
    """:func:`read_definitions`, each file that cannot be read skipped with a
    :class:`CorruptStateWarning`."""
    definitions, corrupt = read_definitions(store)
    for error in corrupt:
        warnings.warn(str(error), CorruptStateWarning, stacklevel=4)
    return definitions


def current_keys_of(store: ExperimentStore, records: Iterable[StateRecord]) -> set[str]:
    """:func:`current_keys` with the store's roots and readable definitions."""
    return current_keys(records, store.root_keys(), readable_definitions(store))
