"""Claims: which worker computes a state now, so that no two workers compute it at once.

A claim is one file (``running/<key>.json``) saying who holds it: runner, host, pid,
SLURM job and a token. It is created with ``O_EXCL``, which fails when the name exists,
atomically, on a local disk and over NFS (v3 and later) or Lustre alike (``flock`` is not
relied on), and its document is written into it at once, in one write. While held, a
thread of the owning process touches it every ``HEARTBEAT_S`` seconds.

A claim is stale, and the next claimant breaks it, when it has not been touched for
``EXPIRY_S`` seconds (its owner is gone, on whichever node), or at once when its owner is
a process of this host that has ended (or this very process, which gave it up). A claim
whose document cannot be read (its owner died between creating and writing it: a few
microseconds) is stale once ``HEARTBEAT_S`` old.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEARTBEAT_S = 10.0
EXPIRY_S = 60.0  # six missed heartbeats; NFS may show a touch up to a minute late
_LONGEST_POLL_S = 1.0


class Claim:
    """A claim this process holds, kept fresh by the heartbeat until released."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token
        _HEARTBEAT.add(self)

    def release(self) -> None:
        """Give the claim up: its state is stored, or its attempt failed and is recorded."""
        with _HEARTBEAT.serialised(self.path):
            if _token(self.path) == self.token:  # not broken and taken by another meanwhile
                self.path.unlink(missing_ok=True)
            _HEARTBEAT.discard(self)

    def abandon(self) -> None:
        """Stop the heartbeat but leave the file: this worker was stopped mid-way (a
        signal, an interrupt), and the claim says so until its interruption is recorded."""
        _HEARTBEAT.discard(self)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def claim(path: Path, owner: dict[str, Any]) -> Claim:
    """Take the claim at ``path``, waiting while a live worker holds it."""
    poll = 0.02
    while True:
        taken = try_claim(path, owner)
        if taken is not None:
            return taken
        time.sleep(poll)
        poll = min(2 * poll, _LONGEST_POLL_S)


def try_claim(path: Path, owner: dict[str, Any]) -> Claim | None:
    """Take the claim at ``path`` if it is free or stale; None while a live worker holds it."""
    with _HEARTBEAT.serialised(path):
        for _ in range(2):  # a stale claim is broken once, then taken
            token = uuid.uuid4().hex
            if _create(path, {**owner, "token": token, "claimed_ns": time.time_ns()}):
                return Claim(path, token)
            if not _break_if_stale(path):
                break
    return None


_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create(path: Path, document: dict[str, Any]) -> bool:
    """Create ``path`` holding ``document`` unless it exists; False if it does. (One file
    created, where a temporary file linked into place took three operations more: the
    claim was a fifth of storing a small state.)"""
    data = json.dumps(document, sort_keys=True).encode()
    try:
        try:
            descriptor = os.open(path, _FLAGS, 0o666)
        except FileNotFoundError:  # the store's first claim: running/ is made then
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, _FLAGS, 0o666)
    except FileExistsError:
        return False
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
    except BaseException:  # a full disk: no claim is left, not even an empty one
        path.unlink(missing_ok=True)
        raise
    return True


def is_stale(document: dict[str, Any] | None, age_s: float) -> bool:
    """Whether a claim (None: unreadable) untouched for ``age_s`` seconds is abandoned."""
    if age_s > EXPIRY_S or (document is None and age_s > HEARTBEAT_S):
        return True
    if document is None or document.get("host") != socket.gethostname():
        return False
    pid = document.get("pid")
    if pid == os.getpid():
        return not _HEARTBEAT.holds(document.get("token"))
    return not pid_alive(pid)


def _break_if_stale(path: Path) -> bool:
    """Remove the claim at ``path`` if it is stale; True if it is gone now."""
    try:
        with open(path, "rb") as file:
            judged = os.fstat(file.fileno())  # fstat on an open file: fresh, even on NFS
            document = _parse(file.read())
    except FileNotFoundError:
        return True
    if not is_stale(document, time.time() - judged.st_mtime):
        return False
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # another claimant broke it first
    try:
        if os.stat(aside).st_ino != judged.st_ino:
            # It was broken and taken again between our look and our move: give it back.
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            return False
        return True
    finally:
        aside.unlink(missing_ok=True)


def read_claim(path: Path) -> dict[str, Any] | None:
    """The document of the claim at ``path``; None if there is none or it is unreadable."""
    try:
        return _parse(path.read_bytes())
    except OSError:
        return None


def _token(path: Path) -> object:
    document = read_claim(path)
    return document.get("token") if document else None


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def may_still_run(host: object, pid: object) -> bool:
    """Whether process ``pid`` of ``host`` may still run: on this host, whether it runs;
    another host's processes cannot be seen from here, so they may."""
    return host != socket.gethostname() or pid_alive(pid)


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` of this host still runs."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat:
    """The claims this process holds, and one daemon thread that touches each of them.

    Threads of one process take and give up a claim one at a time (``serialised``), so
    that none of them judges stale a claim another thread is taking or releasing."""

    _claims: dict[str, Claim]
    _path_locks: dict[str, threading.Lock]
    _lock: threading.Lock
    _thread: threading.Thread | None

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)  # a child holds no claim

    @contextlib.contextmanager
    def serialised(self, path: Path) -> Iterator[None]:
        with self._lock:
            lock = self._path_locks.setdefault(str(path), threading.Lock())
        with lock:
            yield

    def add(self, claim: Claim) -> None:
        with self._lock:
            self._claims[claim.token] = claim
            if self._thread is None:
                thread = threading.Thread(target=self._beat, name="dagger_wf-claims", daemon=True)
                thread.start()
                self._thread = thread

    def discard(self, claim: Claim) -> None:
        with self._lock:
            self._claims.pop(claim.token, None)

    def holds(self, token: object) -> bool:
        with self._lock:
            return token in self._claims

    def _forget(self) -> None:
        self._claims = {}
        self._path_locks = {}
        self._lock = threading.Lock()
        self._thread = None

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self._lock:
                claims = list(self._claims.values())
            for held in claims:
                try:
                    os.utime(held.path)
                except FileNotFoundError:
                    self.discard(held)  # broken by another worker: no longer ours


_HEARTBEAT = _Heartbeat()
