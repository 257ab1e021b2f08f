"""The sha256 names of the blobs this process has written or read whole and checked, by
their length and XXH3-128 checksum.

A child that inherits a buffer unchanged (a dataset, frozen weights) stores it under the
name its parent's blob already has: the checksum, which a payload carries anyway and
which is computed about fifteen times as fast as sha256, finds that name, and sha256 runs
only over bytes not seen before. 128 bits stand for the bytes as well as the name's 256
do in practice (a collision is not expected in 2^64 distinct buffers); version 3
payloads' crc32 is too short to, so their blobs are not remembered. A remembered name
whose blob is gone meanwhile (gc) is written again, from the bytes being stored.
"""

from __future__ import annotations

import threading

LIMIT = 4096  # names kept; the oldest go first

_NAMES: dict[tuple[int, bytes], bytes] = {}
_LOCK = threading.Lock()


def remember(length: int, check: object, digest: bytes) -> None:
    """Note that the ``length`` bytes with XXH3-128 ``check`` are the blob ``digest``."""
    if not isinstance(check, bytes):  # a crc32: too short to stand for the bytes
        return
    with _LOCK:
        _NAMES.pop((length, check), None)
        _NAMES[(length, check)] = digest
        while len(_NAMES) > LIMIT:
            del _NAMES[next(iter(_NAMES))]


def known_name(length: int, check: bytes) -> bytes | None:
    """The sha256 name of the ``length`` bytes with XXH3-128 ``check``, if seen before."""
    return _NAMES.get((length, check))
