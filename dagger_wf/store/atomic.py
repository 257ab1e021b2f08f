"""Atomic file writes: a reader (or a run killed with ``kill -9``) never sees half a file.

Data goes to a temporary file in the target's own directory, then ``os.replace`` moves it
into place, which POSIX makes atomic within one file system.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMPORARY_SUFFIX = ".partial"
_FULL = (errno.ENOSPC, errno.EDQUOT)
# mkstemp creates files readable by their owner only; finished files follow the umask.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], durable: bool = False) -> None:
    """Call ``write(file)`` on a temporary file, then move it to ``path``.

    ``durable``: also flush the file and then its directory to the disk (``fsync``)
    before returning, so that a power loss cannot take back what was written."""
    new_directory = not path.parent.is_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        sync(path.parent)
        if new_directory:
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
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False)
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
