"""The byte layout of a payload file, and the checks that tell a whole one from a damaged one.

Version 4 (``DWFPAYL4``): ``MAGIC``; a header (pickle length, buffer count, the pickle's
checksum, then per buffer its length, its sha256 digest if it is a blob (all zero: stored
inline) and its checksum; last, the checksum of the header itself); the cloudpickle
stream; the inline buffers, 64-byte aligned. Checksums are XXH3-128: about seven times the
speed of crc32 here, so checking a loaded model costs little beside reading it, and wide
enough to stand for the bytes (see :mod:`.blob_names`). Blobs are named by sha256 (so
that equal data is stored once, and its name rules out a mix-up), but checked by their
checksum on load (``bench/bench_core.py --only load`` measures both).

Version 3 (``DWFPAYL3``) is the same with crc32 checksums (4 bytes); version 2
(``DWFPAYL2``) the same without any: both still load, version 2's blobs checked against
their sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import xxhash

from .blob_names import remember

MAGIC = b"DWFPAYL4"  # the version written
MAGIC_V3 = b"DWFPAYL3"
MAGIC_V2 = b"DWFPAYL2"
CHECKED = (MAGIC, MAGIC_V3)  # the versions whose every section carries a checksum
ALIGNMENT = 64
INLINE = bytes(32)  # the digest field of a buffer stored inline
Check = int | bytes  # crc32 (version 3) or XXH3-128 (version 4)


@dataclasses.dataclass(frozen=True)
class _Version:
    """How one version lays out its header, and which checksum it uses (None: none)."""

    counts: struct.Struct  # pickle length, buffer count[, pickle checksum]
    buffer: struct.Struct  # length, sha256 digest[, checksum]
    check: struct.Struct | None  # the header's own checksum
    algorithm: str | None


_VERSIONS = {
    MAGIC: _Version(
        struct.Struct("<QQ16s"), struct.Struct("<Q32s16s"), struct.Struct("<16s"), "xxh3"
    ),
    MAGIC_V3: _Version(
        struct.Struct("<QQI"), struct.Struct("<Q32sI"), struct.Struct("<I"), "crc32"
    ),
    MAGIC_V2: _Version(struct.Struct("<QQ"), struct.Struct("<Q32s"), None, None),
}
_LATEST = _VERSIONS[MAGIC]


class Damage(ValueError):
    """What is wrong with a payload file or one of its blobs (``blob``: that blob's file)."""

    def __init__(self, reason: str, blob: Path | None = None) -> None:
        super().__init__(reason)
        self.blob = blob


@dataclasses.dataclass(frozen=True)
class Section:
    """The pickle stream or one buffer: its length, blob digest (``INLINE``: in the
    payload file) and checksum by ``algorithm`` (None in a version 2 file)."""

    length: int
    digest: bytes
    check: Check | None
    algorithm: str | None = "xxh3"

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


def checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The checksum a section written now carries."""
    return xxhash.xxh3_128_digest(data)


def _checksum_by(algorithm: str | None, data: bytes | bytearray | memoryview) -> Check:
    """The checksum of ``data`` as a file of any version computes it."""
    return zlib.crc32(data) if algorithm == "crc32" else checksum(data)


def padding(offset: int) -> int:
    return -offset % ALIGNMENT


def blob_path(blob_directory: Path, digest: bytes) -> Path:
    name = digest.hex()
    return blob_directory / name[:2] / name


def pack_header(sections: list[Section]) -> bytes:
    """The header of a file of the latest version; ``sections[0]`` is the pickle stream."""
    stream, *buffers = sections
    header = MAGIC + _LATEST.counts.pack(stream.length, len(buffers), stream.check)
    header += b"".join(
        _LATEST.buffer.pack(buffer.length, buffer.digest, buffer.check) for buffer in buffers
    )
    assert _LATEST.check is not None
    return header + _LATEST.check.pack(checksum(header))


def _version(prefix: bytes | memoryview) -> _Version:
    try:
        return _VERSIONS[bytes(prefix[: len(MAGIC)])]
    except KeyError:
        raise Damage(
            "it does not start with the dagger_wf payload marker (not a payload file)"
        ) from None


def header_length(prefix: bytes | memoryview) -> int:
    """How many bytes the header takes, from its first :data:`PREFIX_LENGTH` bytes."""
    version = _version(prefix)
    if len(prefix) < len(MAGIC) + version.counts.size:
        raise Damage("it ends inside its header")
    count = version.counts.unpack_from(prefix, len(MAGIC))[1]
    check_size = version.check.size if version.check else 0
    return len(MAGIC) + version.counts.size + count * version.buffer.size + check_size


PREFIX_LENGTH = len(MAGIC) + max(version.counts.size for version in _VERSIONS.values())


def parse_header(view: bytes | memoryview) -> Header:
    """The sections a payload file holds, from its first bytes; :class:`Damage` if the
    header is cut short or fails its checksum."""
    size = header_length(view)
    if len(view) < size:
        raise Damage("it ends inside its header")
    version = _version(view)
    if version.check is not None:
        (stored,) = version.check.unpack_from(view, size - version.check.size)
        if _checksum_by(version.algorithm, view[: size - version.check.size]) != stored:
            raise Damage("its header fails its checksum")
    counts = version.counts.unpack_from(view, len(MAGIC))
    pickle_check = counts[2] if version.check is not None else None
    sections = [Section(counts[0], INLINE, pickle_check, version.algorithm)]
    offset = len(MAGIC) + version.counts.size
    for index in range(counts[1]):
        length, digest, *check = version.buffer.unpack_from(
            view, offset + index * version.buffer.size
        )
        sections.append(Section(length, digest, check[0] if check else None, version.algorithm))
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


Blobs = tuple[tuple[bytes, int], ...]  # (digest, length) of each blob of a payload


def check_structure(path: Path, blob_directory: Path) -> Blobs:
    """What can be checked without reading the data: the header, the file's length, and
    that every blob exists with its length (the blobs returned). :class:`Damage` says
    what is wrong."""
    blobs = check_layout(path)
    check_blobs(blobs, blob_directory)
    return blobs


def check_layout(path: Path) -> Blobs:
    """:func:`check_structure`'s look at the payload file itself: its header and length."""
    header, size = read_header(path)
    check_size(header, size)
    return tuple((section.digest, section.length) for section in header.sections if section.is_blob)


def check_blobs(blobs: Blobs, blob_directory: Path) -> None:
    """:func:`check_structure`'s look at the blobs: each exists, with its length."""
    for digest, length in blobs:
        blob = blob_path(blob_directory, digest)
        try:
            blob_size = blob.stat().st_size
        except FileNotFoundError:
            raise Damage(f"its blob {blob} is missing", blob) from None
        if blob_size != length:
            raise Damage(f"its blob {blob} holds {blob_size} bytes, not {length}", blob)


def check_section(data: memoryview, section: Section, name: str) -> None:
    """``data`` has the checksum its header gives (a version 2 file gives none to check)."""
    if section.check is not None and _checksum_by(section.algorithm, data) != section.check:
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
        what = "fails its checksum" if section.check is not None else "no longer matches its sha256"
        raise Damage(f"its blob {blob} {what} (its bytes changed)", blob)
    remember(section.length, running.xxh3.digest(), section.digest)
    return view


_CHUNK = 256 * 1024


class _RunningCheck:
    """A blob's checksum (versions 3 and 4) or sha256 (version 2), fed chunk by chunk;
    also its XXH3-128 whatever its version, by which :mod:`.blob_names` knows it."""

    def __init__(self, section: Section) -> None:
        self.section = section
        self.crc = 0
        self.xxh3 = xxhash.xxh3_128()
        self.sha256 = hashlib.sha256() if section.check is None else None

    def update(self, chunk: memoryview) -> None:
        self.xxh3.update(chunk)
        if self.sha256 is not None:
            self.sha256.update(chunk)
        elif self.section.algorithm == "crc32":
            self.crc = zlib.crc32(chunk, self.crc)

    def matches(self) -> bool:
        if self.sha256 is not None:
            return self.sha256.digest() == self.section.digest
        if self.section.algorithm == "crc32":
            return self.crc == self.section.check
        return self.xxh3.digest() == self.section.check
