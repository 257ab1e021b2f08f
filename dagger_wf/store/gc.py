"""Garbage collection of an experiment directory: what no root reaches, nothing refers to.

Removed: states (record, payload, failed attempts, evaluations), computed or only
attempted, whose chain of parents does not reach a root of the experiment; blobs no
payload refers to; code and environment snapshots no record refers to; temporary files
left by killed writers more than an hour ago. Nothing is removed while any payload
header cannot be read (a blob might be its).

Beside live runs: a shared file (blob, snapshot) is removed only if nothing used it for an
hour, and the check is made on the file moved aside, so a run reusing it at that very
moment keeps it. An unreachable state loses its record last, so an interrupted ``gc``
leaves it findable by the next one, which also puts back files it had moved aside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import time
from pathlib import Path

from ..errors import CorruptStateError, TreeRedefinedError
from ..records import StateRecord
from .atomic import TEMPORARY_SUFFIX
from .claims import EXPIRY_S, pid_alive
from .definitions import current_keys, read_definitions
from .layout import DEFINITIONS, SNAPSHOT_KINDS
from .payload import blob_digests, blob_path
from .snapshots import snapshot_files
from .state_store import ExperimentStore

STALE_TEMPORARY_AGE_S = 3600
SET_ASIDE_SUFFIX = ".gc" + TEMPORARY_SUFFIX  # a shared file gc moved aside to check


@dataclasses.dataclass
class Garbage:
    """What a collection removes (or, dry, would remove)."""

    states: list[str] = dataclasses.field(default_factory=list)
    # The files of unreachable states, each state's record last; then shared files
    # (blobs, snapshots, temporaries) that were old and unreferenced when found: those
    # are removed only if still old.
    paths: list[Path] = dataclasses.field(default_factory=list)
    aged: list[Path] = dataclasses.field(default_factory=list)
    # With superseded states: each definition file and when it was written, as found.
    definitions: dict[Path, int] | None = None
    store: ExperimentStore | None = None

    @property
    def files(self) -> list[Path]:
        """Every file a collection removes, in the order it removes them."""
        return [*self.paths, *self.aged]

    def sizes(self) -> dict[Path, int]:
        """The size of each file, read now (before removing them)."""
        return {path: _size(path) for path in self.files}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed meanwhile
        return 0


def _files(path: Path) -> list[Path]:
    """``path`` itself, or the files under it."""
    if path.is_dir():
        return sorted(file for file in path.rglob("*") if file.is_file())
    return [path] if path.exists() else []


def _reachable(store: ExperimentStore, superseded: bool) -> tuple[set[str], set[str]]:
    """(states a root of the experiment reaches, every state stored or attempted). A
    corrupt record hides which states descend from it: then every state is reachable.
    With ``superseded``, only the current tree counts as reached, unless a definition
    cannot be read (it might define any state)."""
    children: dict[str | None, list[str]] = {}
    stored = set()
    read = list(store.iter_attempts())
    records = [record for record in read if isinstance(record, StateRecord)]
    if len(records) < len(read):
        keys = {*store.done_keys(), *(record.key for record in records)}
        return keys, keys
    definitions, corrupt = read_definitions(store) if superseded else ([], [])
    if superseded and not corrupt:
        latest = {record.key: record for record in records}  # a state's record comes last
        return current_keys(latest.values(), store.root_keys(), definitions), set(latest)
    for record in records:
        stored.add(record.key)
        children.setdefault(record.parent_key, []).append(record.key)
    reachable: set[str] = set()
    frontier = [key for key in store.root_keys() if key in stored]
    while frontier:
        key = frontier.pop()
        if key not in reachable:
            reachable.add(key)
            frontier += children.get(key, [])
    return reachable, stored


def find_garbage(
    store: ExperimentStore, now: float | None = None, superseded: bool = False
) -> Garbage:
    """What ``remove_garbage`` would remove now. First puts back what an interrupted
    ``gc`` had moved aside, so that a dry run and a real one see the same store.

    ``superseded``: also the states outside the current tree (see
    :mod:`.definitions`), with what only they refer to."""
    put_back_set_aside(store, now)
    garbage = Garbage(definitions=_definition_stamps(store) if superseded else None, store=store)
    keep, stored = _reachable(store, superseded)
    directory = store.directory
    for key in sorted(stored - keep):
        garbage.states.append(key)
        for path in (
            store.payload_path(key),
            store.failure_directory(key),
            store.evaluation_directory(key),
            store.record_path(key),  # last: what makes the next gc find the state
        ):
            garbage.paths += _files(path)
    cutoff = (now or time.time()) - STALE_TEMPORARY_AGE_S
    garbage.aged += _unreferenced_blobs(store, keep, cutoff)
    garbage.aged += _unreferenced_snapshots(store, keep, cutoff)
    garbage.aged += sorted(
        path
        for path in directory.rglob(f".*{TEMPORARY_SUFFIX}")
        if not path.name.endswith(SET_ASIDE_SUFFIX) and _older_than(path, cutoff)
    )
    return garbage


def _unreferenced_blobs(store: ExperimentStore, keep: set[str], cutoff: float) -> list[Path]:
    referenced: set[bytes] = set()
    for key in keep:
        path = store.payload_path(key)
        if not path.is_file():
            continue
        try:
            referenced |= blob_digests(path)
        except (OSError, ValueError, struct.error):
            return []  # an unreadable header might refer to any blob: keep them all
    wanted = {blob_path(store.blob_directory, digest) for digest in referenced}
    # A blob is written (or reused) before its payload: a young one may belong to a run
    # going on.
    return sorted(
        path
        for path in store.blob_directory.glob("*/[!.]*")
        if path not in wanted and _older_than(path, cutoff)
    )


def _unreferenced_snapshots(store: ExperimentStore, keep: set[str], cutoff: float) -> list[Path]:
    referenced = set()
    for record in store.iter_attempts():
        if isinstance(record, CorruptStateError):
            return []
        if record.key in keep:
            referenced |= {record.code, record.environment}
    # A run writes (or reuses) its snapshots before any record refers to them.
    return sorted(
        path
        for kind in SNAPSHOT_KINDS
        for path in snapshot_files(store.directory, kind)
        if path.stem not in referenced and _older_than(path, cutoff)
    )


def _definition_stamps(store: ExperimentStore) -> dict[Path, int]:
    stamps = {}
    for path in (store.directory / DEFINITIONS).glob("*/*.json"):
        with contextlib.suppress(FileNotFoundError):
            stamps[path] = path.stat().st_mtime_ns
    return stamps


def _older_than(path: Path, cutoff: float) -> bool:
    """Last changed before ``cutoff``; False for a file gone meanwhile (a run renamed
    its temporary file into place, or another gc removed it)."""
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def remove_garbage(garbage: Garbage, now: float | None = None) -> list[Path]:
    """Remove what ``find_garbage`` found and return what was removed: a shared file used
    again since (a run reusing a blob or snapshot refreshes it) is kept.

    Garbage found with superseded states is removed only if no run has redefined a tree
    since (:class:`TreeRedefinedError` otherwise: nothing is removed)."""
    store = garbage.store
    if store is not None and garbage.definitions not in (None, _definition_stamps(store)):
        raise TreeRedefinedError(
            f"A run redefined a tree in {store.directory} since gc looked, so states "
            "it found superseded may be current again; nothing was removed. Run gc again."
        )
    cutoff = (now or time.time()) - STALE_TEMPORARY_AGE_S
    removed = []
    for path in garbage.paths:
        with contextlib.suppress(FileNotFoundError):  # another gc removed it
            path.unlink()
            removed.append(path)
    for path in garbage.aged:
        if _remove_if_old(path, cutoff):
            removed.append(path)
    return removed


def _remove_if_old(path: Path, cutoff: float) -> bool:
    """Remove ``path`` unless it changed after ``cutoff``. The age is read on the file
    moved aside: a run refreshing it before the move is seen, one after it finds no
    file and writes it again. The aside name says which process moved it."""
    aside = path.with_name(f".{path.name}@{socket.gethostname()}@{os.getpid()}{SET_ASIDE_SUFFIX}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _older_than(aside, cutoff):
        aside.unlink()
        return True
    os.replace(aside, path)  # one a run wrote again meanwhile holds the same bytes
    return False


def put_back_set_aside(store: ExperimentStore, now: float | None = None) -> None:
    """Put back what an interrupted ``gc`` moved aside and never removed: its process
    is gone (or, on another host, moved it more than ``EXPIRY_S`` ago)."""
    for aside in store.directory.rglob(f".*{SET_ASIDE_SUFFIX}"):
        name, host, pid = aside.name[1 : -len(SET_ASIDE_SUFFIX)].rsplit("@", 2)
        with contextlib.suppress(FileNotFoundError):
            if host == socket.gethostname():
                abandoned = int(pid) != os.getpid() and not pid_alive(int(pid))
            else:  # moving a file changes its ctime
                abandoned = (now or time.time()) - aside.stat().st_ctime > EXPIRY_S
            if abandoned:
                os.replace(aside, aside.with_name(name))
