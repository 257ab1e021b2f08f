"""The sha256 names of the blobs this process has written or read whole and checked, by
their length and XXH3-128 checksum.

A child that inherits a buffer unchanged (a dataset, frozen weights) stores it under the
name its parent's blob already has: the checksum, which a version 4 payload carries
anyway (and which a load computes for older ones too) and which runs about ten times as
fast as sha256, finds that name, and sha256 runs only over bytes not seen before. A
remembered name whose blob is gone meanwhile (gc) is written again, from the bytes.

128 bits stand for the bytes as well as the name's 256 do against chance (no collision
is expected among 2^64 distinct buffers), not against intent: XXH3 is not a
cryptographic hash, so data crafted to collide with other data of the same length,
stored by the same process, would be stored under the other's name. A store is trusted
anyway (loading a payload unpickles it); do not store such data.
"""

from __future__ import annotations

import os
import threading

LIMIT = 4096  # names kept; the oldest go first

_NAMES: dict[tuple[int, bytes], bytes] = {}
_LOCK = threading.Lock()


def _renew_lock() -> None:
    """In a forked child: a lock another thread held at the fork would never be freed."""
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_renew_lock)


def remember(length: int, check: bytes, digest: bytes) -> None:
    """Note that the ``length`` bytes with XXH3-128 ``check`` are the blob ``digest``."""
    with _LOCK:
        _NAMES.pop((length, check), None)
        _NAMES[(length, check)] = digest
        while len(_NAMES) > LIMIT:
            del _NAMES[next(iter(_NAMES))]


def known_name(length: int, check: bytes) -> bytes | None:
    """The sha256 name of the ``length`` bytes with XXH3-128 ``check``, if seen before."""
    return _NAMES.get((length, check))
