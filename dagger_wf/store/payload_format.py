"""The byte layout of a payload file, and the checks that tell a whole one from a damaged one.

Version 3 (``DWFPAYL3``): ``MAGIC``; a header (pickle length, buffer count, the pickle's
crc32, then per buffer its length, its sha256 digest if it is a blob (all zero: stored
inline) and its crc32; last, the crc32 of the header itself); the cloudpickle stream; the
inline buffers, 64-byte aligned. Blobs are named by sha256 (so that equal data is stored
once) but checked by crc32 on load: twice as fast, and a blob's name already rules out
a mix-up, so the check needs to catch damage only (``bench/bench_core.py --only load``
measures both).

Version 2 (``DWFPAYL2``) is the same without any crc: it still loads, its blobs checked
against their sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

MAGIC = b"DWFPAYL3"
MAGIC_V2 = b"DWFPAYL2"
ALIGNMENT = 64
INLINE = bytes(32)  # the digest field of a buffer stored inline
_COUNTS = struct.Struct("<QQI")  # pickle length, buffer count, pickle crc32
_BUFFER = struct.Struct("<Q32sI")  # length, sha256 digest, crc32
_CRC = struct.Struct("<I")
_COUNTS_V2 = struct.Struct("<QQ")
_BUFFER_V2 = struct.Struct("<Q32s")


class Damage(ValueError):
    """What is wrong with a payload file or one of its blobs (``blob``: that blob's file)."""

    def __init__(self, reason: str, blob: Path | None = None) -> None:
        super().__init__(reason)
        self.blob = blob


@dataclasses.dataclass(frozen=True)
class Section:
    """The pickle stream or one buffer: its length, blob digest (``INLINE``: in the
    payload file) and crc32 (None in a version 2 file)."""

    length: int
    digest: bytes
    crc: int | None

    @property
    def is_blob(self) -> bool:
        return self.digest != INLINE


@dataclasses.dataclass(frozen=True)
class Header:
    sections: list[Section]  # the pickle stream first
    size: int  # bytes of the header, MAGIC included

    def file_size(self) -> int:
        """How long the payload file is when whole."""
        offset = self.size
        for section in self.sections:
            if not section.is_blob:
                offset += padding(offset) + section.length
        return offset


def checksum(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data)


def padding(offset: int) -> int:
    return -offset % ALIGNMENT


def blob_path(blob_directory: Path, digest: bytes) -> Path:
    name = digest.hex()
    return blob_directory / name[:2] / name


def pack_header(sections: list[Section]) -> bytes:
    """The header of a version 3 file; ``sections[0]`` is the pickle stream."""
    stream, *buffers = sections
    header = MAGIC + _COUNTS.pack(stream.length, len(buffers), stream.crc or 0)
    header += b"".join(_BUFFER.pack(buffer.length, buffer.digest, buffer.crc) for buffer in buffers)
    return header + _CRC.pack(checksum(header))


def header_length(prefix: bytes | memoryview) -> int:
    """How many bytes the header takes, from its first :data:`PREFIX_LENGTH` bytes."""
    magic = bytes(prefix[: len(MAGIC)])
    if magic not in (MAGIC, MAGIC_V2):
        raise Damage("it does not start with the dagger_wf payload marker (not a payload file)")
    counts = _COUNTS if magic == MAGIC else _COUNTS_V2
    if len(prefix) < len(MAGIC) + counts.size:
        raise Damage("it ends inside its header")
    count = counts.unpack_from(prefix, len(MAGIC))[1]
    if magic == MAGIC_V2:
        return len(MAGIC) + counts.size + count * _BUFFER_V2.size
    return len(MAGIC) + counts.size + count * _BUFFER.size + _CRC.size


PREFIX_LENGTH = len(MAGIC) + _COUNTS.size


def parse_header(view: bytes | memoryview) -> Header:
    """The sections a payload file holds, from its first bytes; :class:`Damage` if the
    header is cut short or (version 3) fails its crc."""
    size = header_length(view[:PREFIX_LENGTH])
    if len(view) < size:
        raise Damage("it ends inside its header")
    if bytes(view[: len(MAGIC)]) == MAGIC_V2:
        pickle_length, count = _COUNTS_V2.unpack_from(view, len(MAGIC))
        offset = len(MAGIC) + _COUNTS_V2.size
        sections = [Section(pickle_length, INLINE, None)]
        for index in range(count):
            length, digest = _BUFFER_V2.unpack_from(view, offset + index * _BUFFER_V2.size)
            sections.append(Section(length, digest, None))
        return Header(sections, size)
    (stored_crc,) = _CRC.unpack_from(view, size - _CRC.size)
    if checksum(view[: size - _CRC.size]) != stored_crc:
        raise Damage("its header fails its checksum")
    pickle_length, count, pickle_crc = _COUNTS.unpack_from(view, len(MAGIC))
    offset = len(MAGIC) + _COUNTS.size
    sections = [Section(pickle_length, INLINE, pickle_crc)]
    for index in range(count):
        sections.append(Section(*_BUFFER.unpack_from(view, offset + index * _BUFFER.size)))
    return Header(sections, size)


def read_header(path: Path) -> tuple[Header, int]:
    """The header of the payload file at ``path`` (its first bytes only), and the file's size."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        prefix = file.read(PREFIX_LENGTH)
        head = prefix + file.read(max(0, header_length(prefix) - len(prefix)))
    return parse_header(head), size


def check_size(header: Header, size: int) -> None:
    expected = header.file_size()
    if size < expected:
        raise Damage(f"it ends {expected - size} bytes early (truncated)")
    if size > expected:
        raise Damage(f"it is {size - expected} bytes longer than its header says")


def check_structure(path: Path, blob_directory: Path) -> None:
    """What can be checked without reading the data: the header, the file's length, and
    that every blob exists with its length. :class:`Damage` says what is wrong."""
    header, size = read_header(path)
    check_size(header, size)
    for section in header.sections:
        if section.is_blob:
            blob = blob_path(blob_directory, section.digest)
            try:
                blob_size = blob.stat().st_size
            except FileNotFoundError:
                raise Damage(f"its blob {blob} is missing", blob) from None
            if blob_size != section.length:
                raise Damage(f"its blob {blob} holds {blob_size} bytes, not {section.length}", blob)


def check_section(data: memoryview, section: Section, name: str) -> None:
    """``data`` has the crc32 its header gives (a version 2 file gives none to check)."""
    if section.crc is not None and checksum(data) != section.crc:
        raise Damage(f"{name} fails its checksum (its bytes changed)")


def read_whole(path: Path) -> bytearray:
    with open(path, "rb") as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        file.readinto(data)
    return data


def checked_sections(
    view: memoryview, blob_directory: Path, read_blob: BlobReader | None = None
) -> list[memoryview]:
    """The pickle stream and every buffer of the payload file read into ``view``, each
    checked; views into ``view`` and into the blobs read whole, never copies.
    ``read_blob(path, section)``: the checked bytes of one blob (default: read and check it)."""
    read_blob = read_blob or read_checked_blob
    header = parse_header(view)
    check_size(header, view.nbytes)
    offset = header.size
    sections = []
    for index, section in enumerate(header.sections):
        name = "its pickle stream" if index == 0 else f"its buffer {index}"
        if section.is_blob:
            sections.append(read_blob(blob_path(blob_directory, section.digest), section))
            continue
        offset += padding(offset)
        data = view[offset : offset + section.length]
        check_section(data, section, name)
        sections.append(data)
        offset += section.length
    return sections


BlobReader = Callable[[Path, Section], memoryview]


def read_checked_blob(blob: Path, section: Section) -> memoryview:
    """The bytes of one blob, read whole and checked against ``section``. The check runs
    on each chunk just read, while it is in the CPU's cache: reading and checking then
    cost about what reading alone does (``bench/bench_core.py --only load``)."""
    try:
        file = open(blob, "rb")  # noqa: SIM115 - closed below, after the size check
    except FileNotFoundError:
        raise Damage(f"its blob {blob} is missing", blob) from None
    with file:
        size = os.fstat(file.fileno()).st_size
        if size != section.length:
            raise Damage(f"its blob {blob} holds {size} bytes, not {section.length}", blob)
        view = memoryview(bytearray(size))
        running = _RunningCheck(section)
        offset = 0
        while offset < size:
            count = file.readinto(view[offset : offset + _CHUNK])
            if not count:
                raise Damage(f"its blob {blob} shrank while it was read", blob)
            running.update(view[offset : offset + count])
            offset += count
    if not running.matches():
        what = "fails its checksum" if section.crc is not None else "no longer matches its sha256"
        raise Damage(f"its blob {blob} {what} (its bytes changed)", blob)
    return view


_CHUNK = 256 * 1024


class _RunningCheck:
    """crc32 (version 3) or sha256 (version 2) of a blob, fed chunk by chunk."""

    def __init__(self, section: Section) -> None:
        self.section = section
        self.crc = 0
        self.sha256 = hashlib.sha256() if section.crc is None else None

    def update(self, chunk: memoryview) -> None:
        if self.sha256 is not None:
            self.sha256.update(chunk)
        else:
            self.crc = zlib.crc32(chunk, self.crc)

    def matches(self) -> bool:
        if self.sha256 is not None:
            return self.sha256.digest() == self.section.digest
        return self.crc == self.section.crc
