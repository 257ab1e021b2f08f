"""The record index: every stored state's record in one file, so that reading them all
(a restore, the history, the dashboard) opens one file, not one per state; and the
outcome of each payload's cheap look, so that a cached re-run does not look again at a
payload file that has not changed since.

The files in the store stay the source of truth. Each entry keeps the signature of the
file it was taken from (inode, size, modification and change times) and is used only
while that file still has it: records and payloads are written by renaming a new file
into place (a new inode), and a change in place (damage, a hand) changes a file's size
or its times. So an entry never outlives what it describes; a new, changed or removed
file is read or looked at again, and an index that cannot be read is no index. Blobs are
shared and have no entry: their presence and length are looked at each time.

The index is a cache of this user's, kept outside the store (``$XDG_CACHE_HOME``, else
``~/.cache``, under ``dagger_wf/record-index/``), so that reading a store never writes
to it: analysing another user's results, or a store being compared file by file, leaves
it as it is. It is written again (atomically) when a reader found it out of date; where
it cannot be written the files are read one by one. Index files not written for
``UNUSED_DAYS`` (of a store moved, deleted, or not changed since: rebuilt when read
again) are removed when another is written. Unpickled like a payload: open only stores
you trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Generic, TypeVar

import cloudpickle

from ..errors import CorruptStateError
from ..records import RECORD_FORMAT, StateRecord
from ..version import __version__
from .atomic import atomic_write
from .payload_format import Blobs

# What the pickled entries were written by: another version may spell them otherwise.
_HEADER = ("dagger_wf.record-index/2", __version__, RECORD_FORMAT)
UNUSED_DAYS = 30

Signature = tuple[int, int, int, int]
T = TypeVar("T")


class _Entries(Generic[T]):
    """What was taken from each file of one directory, by key, with the file's signature."""

    def __init__(self, entries: dict[str, tuple[Signature, T]]) -> None:
        self.entries = entries
        self.changed = False

    def take(self, listing: Listing, read: Callable[[Path, str], T | None]) -> dict[str, T]:
        """Each listed file's value, by key in key order: the entry's while the file has
        its signature, else ``read(path, key)`` (kept as the new entry; None: nothing to
        keep, the file is damaged or gone). The entries of files present but not asked
        about are kept as they are (checked when asked about); those of gone files dropped."""
        fresh = {key: self.entries[key] for key in listing.others if key in self.entries}
        values: dict[str, T] = {}
        for key, path, signature in listing.files:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == signature:
                fresh[key] = entry
                values[key] = entry[1]
                continue
            value = read(Path(path), key)
            if value is not None:
                fresh[key] = (signature, value)
                values[key] = value
                self.changed = True
        self.changed = self.changed or fresh.keys() != self.entries.keys()
        self.entries = fresh
        return values


class RecordIndex:
    """The index of one store's ``states`` (records) and ``payloads`` (looks) folders."""

    def __init__(self, states: Path, payloads: Path) -> None:
        self.states, self.payloads = states, payloads
        self.path = index_file(states)

    @functools.cached_property
    def _entries(self) -> tuple[_Entries[StateRecord], _Entries[Blobs]]:
        """The index's records and looks, read when first needed: asked about states none
        of which is stored (a new tree in a large store), it is not read at all."""
        records, looks = _load(self.path)
        return _Entries(records), _Entries(looks)

    def read_records(
        self,
        read: Callable[[Path, str], StateRecord | CorruptStateError],
        wanted: Container[str] | None = None,
    ) -> dict[str, StateRecord | CorruptStateError]:
        """Every record (``<key>.json``; only those of ``wanted``, if given) by key in key
        order; a damaged one as its error (``read(path, key)`` reads one), never kept in
        the index."""
        damaged: dict[str, CorruptStateError] = {}

        def kept(path: Path, key: str) -> StateRecord | None:
            try:
                record = read(path, key)
            except FileNotFoundError:
                return None  # removed since it was listed (gc, a repair): not stored
            if isinstance(record, CorruptStateError):
                damaged[key] = record
                return None
            return record

        listing = _listed(self.states, ".json", wanted)
        if not listing.files:
            return {}
        records = self._entries[0].take(listing, kept)
        everything: dict[str, StateRecord | CorruptStateError] = {}
        for key, _, _ in listing.files:
            if key in records or key in damaged:
                everything[key] = records.get(key) or damaged[key]
        return everything

    def looked(
        self, look: Callable[[Path, str], Blobs | None], wanted: Container[str]
    ) -> dict[str, Blobs]:
        """The blobs of the payload (``<key>.payload``) of each of ``wanted`` whose look
        passed, by key: ``look(path, key)`` looks at one (None: damaged, not kept)."""
        listing = _listed(self.payloads, ".payload", wanted)
        return self._entries[1].take(listing, look) if listing.files else {}

    def save(self) -> None:
        """Write the index if it was out of date; not at all where it cannot be written,
        or a record holds a value that does not pickle (it is a cache)."""
        if "_entries" not in self.__dict__:
            return  # not read, so not changed
        records, looks = self._entries
        if self.path is None or not (records.changed or looks.changed):
            return
        with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
            entries = (records.entries, looks.entries)
            data = cloudpickle.dumps((_HEADER, entries), protocol=pickle.HIGHEST_PROTOCOL)
            atomic_write(self.path, lambda file: file.write(data))
            _remove_unused(self.path.parent)


def index_file(states: Path) -> Path | None:
    """Where this user's index of the records in ``states`` is kept; None for a user
    without a home directory (and no ``$XDG_CACHE_HOME``)."""
    cache = os.environ.get("XDG_CACHE_HOME")
    if not cache or not os.path.isabs(cache):  # a relative one is to be ignored (XDG)
        try:
            cache = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no $HOME and no password entry
            return None
    name = hashlib.sha256(os.fsencode(states.absolute())).hexdigest()[:32]
    return Path(cache) / "dagger_wf" / "record-index" / f"{name}.pickle"


@dataclasses.dataclass
class Listing:
    """The ``<key><suffix>`` files of a directory: of those asked about, each key, path
    and signature, in key order (the stat before the read: a file replaced in between
    then fails the next comparison, never passes it); the keys of the others."""

    files: list[tuple[str, str, Signature]] = dataclasses.field(default_factory=list)
    others: list[str] = dataclasses.field(default_factory=list)


def _listed(directory: Path, suffix: str, wanted: Container[str] | None) -> Listing:
    """The listing of ``directory``, asking about the files of ``wanted`` (all: None)."""
    listing = Listing()
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if not entry.name.endswith(suffix):
                    continue
                key = entry.name.removesuffix(suffix)
                if wanted is not None and key not in wanted:
                    listing.others.append(key)
                    continue
                try:
                    status = entry.stat()
                except FileNotFoundError:
                    continue
                signature = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
                listing.files.append((key, entry.path, signature))
    except FileNotFoundError:
        pass
    listing.files.sort()
    return listing


def _load(index: Path | None) -> tuple[dict, dict]:
    """The index's entries; none if it is missing, unreadable or of another version."""
    if index is None:
        return {}, {}
    try:
        header, (records, looks) = pickle.loads(index.read_bytes())
    except Exception:  # missing, cut, foreign, or pickled by another version: rebuilt
        return {}, {}
    if header != _HEADER or not isinstance(records, dict) or not isinstance(looks, dict):
        return {}, {}
    return records, looks


def _remove_unused(directory: Path) -> None:
    """Remove the index files not written for ``UNUSED_DAYS``: a cache that only grows
    would fill a home directory."""
    cutoff = time.time() - UNUSED_DAYS * 86400
    with os.scandir(directory) as scan:
        for entry in scan:
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
