"""The record index: every stored state's record in one file, so that reading them all
(a restore, the history, the dashboard) opens one file, not one per state.

The records in ``states/`` stay the source of truth. Each entry keeps the signature of
the record file it was read from (inode, size, modification and change times) and is
used only while that file still has it: a record is rewritten by renaming a new file
into place (a new inode), and a change in place (damage, a hand) changes its size or
its times. So an entry never outlives what it describes; a new, changed or removed
record is read from its file instead, and an index that cannot be read is no index.

The index is a cache of this user's, kept outside the store (``$XDG_CACHE_HOME``, else
``~/.cache``, under ``dagger_wf/record-index/``), so that reading a store never writes
to it: analysing another user's results, or a store being compared file by file, leaves
it as it is. It is written again (atomically) when a reader found it out of date; where
it cannot be written the records are read file by file. Index files not written for
``UNUSED_DAYS`` (of a store moved, deleted, or not changed since: rebuilt when read
again) are removed when another is written. Unpickled like a payload: open only
stores you trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle

from ..errors import CorruptStateError
from ..records import RECORD_FORMAT, StateRecord
from ..version import __version__
from .atomic import atomic_write

# What the pickled records were written by: another version may spell them otherwise.
_HEADER = ("dagger_wf.record-index/1", __version__, RECORD_FORMAT)

UNUSED_DAYS = 30

Signature = tuple[int, int, int, int]
Entries = dict[str, tuple[Signature, StateRecord]]
ReadRecord = Callable[[Path, str], StateRecord | CorruptStateError]


def indexed_records(states: Path, read: ReadRecord) -> dict[str, StateRecord | CorruptStateError]:
    """Every record in the directory ``states`` (``<key>.json``), by key in key order: from
    the index where its entry is current, else ``read(path, key)`` (a damaged record is
    its error); the index is written again if it was out of date."""
    index = index_file(states)
    entries = _load(index)
    fresh: Entries = {}
    records: dict[str, StateRecord | CorruptStateError] = {}
    changed = False
    for key, path, signature in _listed(states):
        entry = entries.get(key)
        if entry is not None and entry[0] == signature:
            fresh[key] = entry
            records[key] = entry[1]
            continue
        try:
            record = read(Path(path), key)
        except FileNotFoundError:
            continue  # removed since it was listed (gc, a repair): not stored
        records[key] = record
        if isinstance(record, StateRecord):
            fresh[key] = (signature, record)
            changed = True
    if changed or fresh.keys() != entries.keys():
        _save(index, fresh)
    return records


def index_file(states: Path) -> Path:
    """Where this user's index of the records in ``states`` is kept."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    name = hashlib.sha256(os.fsencode(states.absolute())).hexdigest()[:32]
    return Path(cache) / "dagger_wf" / "record-index" / f"{name}.pickle"


def _listed(states: Path) -> list[tuple[str, str, Signature]]:
    """Each record file's key, path and signature, in key order (the stat before the
    read: a record replaced in between then fails the next comparison, never passes it)."""
    listed = []
    try:
        with os.scandir(states) as scan:
            for entry in scan:
                if not entry.name.endswith(".json"):
                    continue
                try:
                    status = entry.stat()
                except FileNotFoundError:
                    continue
                signature = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
                listed.append((entry.name.removesuffix(".json"), entry.path, signature))
    except FileNotFoundError:
        return []
    return sorted(listed)


def _load(index: Path) -> Entries:
    """The index's entries; none if it is missing, unreadable or of another version."""
    try:
        header, entries = pickle.loads(index.read_bytes())
    except Exception:  # missing, cut, foreign, or pickled by another version: rebuilt
        return {}
    return entries if header == _HEADER and isinstance(entries, dict) else {}


def _save(index: Path, entries: Entries) -> None:
    """Write the index; not at all where the store cannot be written, or a record holds a
    value that does not pickle: it is a cache, and the records are read file by file."""
    with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
        data = cloudpickle.dumps((_HEADER, entries), protocol=pickle.HIGHEST_PROTOCOL)
        atomic_write(index, lambda file: file.write(data))
        _remove_unused(index.parent)


def _remove_unused(directory: Path) -> None:
    """Remove the index files not written for ``UNUSED_DAYS``: a cache that only grows
    would fill a home directory."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    with os.scandir(directory) as scan:
        for entry in scan:
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
