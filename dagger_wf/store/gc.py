"""Garbage collection of an experiment directory: what no root reaches, nothing refers to.

Removed: states (record, payload, failed attempts, evaluations) whose chain of parents
does not reach a root of the experiment; blobs no payload refers to; code and environment
snapshots no record refers to; temporary files left by killed writers more than an hour
ago. Nothing is removed while any payload header cannot be read (a blob might be its).
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import time
from pathlib import Path

from ..errors import CorruptStateError
from ..records import StateRecord
from .atomic import TEMPORARY_SUFFIX
from .layout import SNAPSHOT_KINDS
from .payload import blob_digests, blob_path
from .snapshots import snapshot_files
from .state_store import ExperimentStore

STALE_TEMPORARY_AGE_S = 3600


@dataclasses.dataclass
class Garbage:
    """What a collection removes (or, dry, would remove)."""

    states: list[str] = dataclasses.field(default_factory=list)
    # The files of unreachable states, then shared files (blobs, snapshots, temporaries)
    # that were old and unreferenced when found; those are removed only if still old.
    paths: list[Path] = dataclasses.field(default_factory=list)
    aged: list[Path] = dataclasses.field(default_factory=list)

    @property
    def all_paths(self) -> list[Path]:
        return [*self.paths, *self.aged]

    @property
    def size(self) -> int:
        return sum(_size(path) for path in self.all_paths)


def _size(path: Path) -> int:
    files = path.rglob("*") if path.is_dir() else [path]
    total = 0
    for file in files:
        try:
            total += file.stat().st_size if file.is_file() else 0
        except FileNotFoundError:  # removed meanwhile
            continue
    return total


def _reachable(store: ExperimentStore) -> tuple[set[str], set[str]]:
    """(states a root of the experiment reaches, every stored state). A corrupt record
    hides which states descend from it, so then every state counts as reachable."""
    children: dict[str | None, list[str]] = {}
    stored = set()
    read = list(store.iter_records())
    records = [record for record in read if isinstance(record, StateRecord)]
    if len(records) < len(read):
        keys = set(store.done_keys())
        return keys, keys
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


def find_garbage(store: ExperimentStore, now: float | None = None) -> Garbage:
    garbage = Garbage()
    keep, stored = _reachable(store)
    directory = store.directory
    for key in sorted(stored - keep):
        garbage.states.append(key)
        candidates = [
            store.record_path(key),
            store.payload_path(key),
            store.failure_directory(key),
            store.evaluation_directory(key),
        ]
        garbage.paths += [path for path in candidates if path.exists()]
    cutoff = (now or time.time()) - STALE_TEMPORARY_AGE_S
    garbage.aged += _unreferenced_blobs(store, keep, cutoff)
    garbage.aged += _unreferenced_snapshots(store, keep, cutoff)
    garbage.aged += [
        path for path in directory.rglob(f".*{TEMPORARY_SUFFIX}") if _older_than(path, cutoff)
    ]
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
        for path in store.blob_directory.glob("*/*")
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


def _older_than(path: Path, cutoff: float) -> bool:
    """Last changed before ``cutoff``; False for a file gone meanwhile (a run renamed
    its temporary file into place, or another gc removed it)."""
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def remove_garbage(garbage: Garbage, now: float | None = None) -> None:
    """Remove what ``find_garbage`` found; a shared file used again since (a run reusing
    a blob or snapshot refreshes it) is kept."""
    cutoff = (now or time.time()) - STALE_TEMPORARY_AGE_S
    for path in garbage.aged:
        if _older_than(path, cutoff):
            path.unlink(missing_ok=True)
    for path in garbage.paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)  # another gc may be removing it too
        else:
            path.unlink(missing_ok=True)
