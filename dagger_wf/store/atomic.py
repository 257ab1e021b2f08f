"""Atomic file writes: a reader (or a run killed with ``kill -9``) never sees half a file.

Data goes to a temporary file in the target's own directory, then ``os.replace`` moves it
into place, which POSIX makes atomic within one file system.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMPORARY_SUFFIX = ".partial"
_FULL = (errno.ENOSPC, errno.EDQUOT)


class _TemporaryNames:
    """Names for temporary files unique to this process without a random draw per file
    (``mkstemp`` draws one and may retry: a measurable share of storing a small state).
    A token drawn once per process (again in a forked child) tells processes of any host
    apart; a counter tells this process's files apart."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count()

    def next(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.{self._token}-{next(self._counter)}{TEMPORARY_SUFFIX}")


_NAMES = _TemporaryNames()
# Created like any file (mode 0o666 less the umask), so a finished file needs no chmod.
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, open for writing; ``O_EXCL``: never another's."""
    while True:
        temporary = _NAMES.next(path)
        try:
            return os.open(temporary, _FLAGS, 0o666), temporary
        except FileExistsError:
            continue  # left by a process that had this pid and token: take the next name


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], durable: bool = False) -> None:
    """Call ``write(file)`` on a temporary file, then move it to ``path``.

    ``durable``: also flush the file and then its directory to the disk (``fsync``)
    before returning, so that a power loss cannot take back what was written."""
    publish(write_temporary(path, write, durable), path, durable)


@dataclasses.dataclass(frozen=True)
class Temporary:
    """A file written whole, not yet in place; ``made_directory``: its directory is new."""

    path: Path
    made_directory: bool = False


def write_temporary(
    beside: Path, write: Callable[[IO[bytes]], object], durable: bool = False
) -> Temporary:
    """Call ``write(file)`` on a new temporary file in the directory of ``beside`` (made if
    missing), flushed to the disk if ``durable``. :func:`publish` moves it into place; for
    a file whose name is known only once it is written (a blob named by its content)."""
    made_directory = False
    try:
        descriptor, temporary = _create_temporary(beside)
    except FileNotFoundError:  # the directory's first file
        made_directory = True
        beside.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = _create_temporary(beside)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            if durable:
                file.flush()
                os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Temporary(temporary, made_directory)


def publish(temporary: Temporary, path: Path, durable: bool = False) -> None:
    """Move ``temporary`` to ``path`` (in the same file system; its directory made if
    missing), atomically; ``durable``: the move flushed to the disk too."""
    made_directory = temporary.made_directory
    try:
        try:
            os.replace(temporary.path, path)
        except FileNotFoundError:
            if not temporary.path.exists():
                raise
            made_directory = True
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary.path, path)
    except BaseException:
        temporary.path.unlink(missing_ok=True)
        raise
    if durable:
        sync(path.parent)
        if made_directory:
            sync(path.parent.parent)


def sync(path: Path) -> None:
    """Flush to the disk a file written earlier (perhaps by a process that did not), or a
    directory's entries: the names of files just moved into it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_json(path: Path, document: Any, durable: bool = False) -> None:
    """Compact JSON: with ``indent`` the json module encodes in Python rather than C,
    which cost a tenth of storing a small state (``dagger-wf show`` is the human view)."""
    text = json.dumps(document, sort_keys=True, allow_nan=False, separators=(",", ":"))
    atomic_write(path, lambda file: file.write(text.encode("utf-8")), durable)


def refresh(path: Path) -> bool:
    """Mark a file shared by content (a blob, a snapshot) as just used, so that ``gc``,
    which leaves young files alone, does not delete it under the process reusing it.
    False when there is no such file (then write it)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def naming_failed_write(what: str, directory: Path) -> Iterator[None]:
    """Give an ``OSError`` raised in the block a note saying what was being written where,
    and, when the disk is full, what to do: the bare error names only a temporary file."""
    try:
        yield
    except OSError as error:
        note = f"dagger_wf: could not write {what} in {directory}"
        if error.errno in _FULL:
            note += (
                ": the disk is full (or the quota is used up). Free space there and run "
                "again: the states stored so far are kept whole, and the run computes only "
                "what is missing."
            )
        error.add_note(note)
        raise
