"""Payload files: a state's NONHASHED_ATTRIBUTES, pickled with as few copies as possible.

numpy arrays and plain CPU torch tensors travel as pickle protocol 5 out-of-band buffers:
they are written straight from their own memory and, on load, become views into the buffer
their bytes were read into, so an array is never copied twice. (Two tensors that view one
storage are stored as two arrays.)

Buffers of at least ``BLOB_THRESHOLD`` bytes go to a content-addressed blob directory
(``<sha256[:2]>/<sha256>``), written once however many states hold them: a dataset that
every state inherits unchanged is stored once, not once per state.

File layout: ``MAGIC``; a header (pickle length, buffer count, then per buffer its length
and, for a blob, its digest); the cloudpickle stream; the small buffers, 64-byte aligned.
Loading unpickles: open only stores you trust.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import IO, Any

import cloudpickle

from ..errors import CorruptStateError, UnpicklablePayloadError
from .atomic import atomic_write, refresh, sync_file

MAGIC = b"DWFPAYL2"
BLOB_THRESHOLD = 64 * 1024
_ALIGNMENT = 64
_COUNTS = struct.Struct("<QQ")
_BUFFER = struct.Struct("<Q32s")  # length, sha256 digest (all zero: stored inline)
_INLINE = bytes(32)


class _PayloadPickler(cloudpickle.CloudPickler):
    """cloudpickle, plus tensors reduced to numpy arrays so their bytes go out of band."""

    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and type(obj) is torch.Tensor and _is_plain_cpu_tensor(obj):
            array = obj.detach().resolve_conj().resolve_neg().contiguous().numpy()
            return _tensor_from_array, (array,)
        return super().reducer_override(obj)


def _is_plain_cpu_tensor(tensor: Any) -> bool:
    import torch

    return (
        tensor.device.type == "cpu"
        and tensor.layout == torch.strided
        and not tensor.requires_grad
        and not tensor.is_quantized
        and tensor.dtype not in _dtypes_without_numpy_equivalent()
    )


@functools.cache
def _dtypes_without_numpy_equivalent() -> frozenset:
    import torch

    names = ("bfloat16", "complex32", "float8_e4m3fn", "float8_e5m2", "uint16", "uint32")
    return frozenset(getattr(torch, name) for name in names if hasattr(torch, name))


def _tensor_from_array(array: Any) -> Any:
    import torch

    return torch.from_numpy(array)


def _padding(offset: int) -> int:
    return -offset % _ALIGNMENT


def blob_path(blob_directory: Path, digest: bytes) -> Path:
    name = digest.hex()
    return blob_directory / name[:2] / name


def _store_blob(blob_directory: Path, raw: memoryview, durable: bool) -> bytes:
    digest = hashlib.sha256(raw).digest()
    path = blob_path(blob_directory, digest)
    if not refresh(path):
        atomic_write(path, lambda file: file.write(raw), durable)
    elif durable:  # stored by a writer that may not have flushed it
        sync_file(path)
    return digest


def payload_bytes(value: Any) -> bytes:
    """The bytes ``value`` is stored as (pickle stream, then its buffers): equal bytes
    mean an equal stored value."""
    stream = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    _PayloadPickler(stream, protocol=5, buffer_callback=buffers.append).dump(value)
    return b"".join([stream.getvalue(), *(bytes(buffer.raw()) for buffer in buffers)])


_PICKLING_ERRORS = (pickle.PicklingError, TypeError, AttributeError, RecursionError)


def _unpicklable(key: str, payload: Any, error: BaseException) -> UnpicklablePayloadError:
    """The error naming the first attribute of ``payload`` that cannot be pickled."""
    culprit = None
    for name, value in payload.items() if isinstance(payload, dict) else ():
        try:
            payload_bytes(value)
        except _PICKLING_ERRORS:
            culprit = name
            break
    what = f"Attribute {culprit!r}" if culprit else "The payload"
    cause = (
        "is nested too deeply to pickle; store a flatter structure"
        if RecursionError in (type(error), type(error.__cause__))
        else f"cannot be pickled ({type(error).__name__}: {error}); keep in the payload only "
        "what pickles, and build locks, open files and generators again where they are used"
    )
    return UnpicklablePayloadError(f"{what} of state {key[:12]} {cause}.")


def write_payload(path: Path, payload: Any, blob_directory: Path, durable: bool = False) -> int:
    """Atomically write ``payload`` to ``path`` (large buffers to ``blob_directory``
    first); return the payload's size in bytes, blobs included. ``durable``: on the disk
    (``fsync``), blobs first, when it returns."""
    stream = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    try:
        _PayloadPickler(stream, protocol=5, buffer_callback=buffers.append).dump(payload)
    except _PICKLING_ERRORS as error:
        raise _unpicklable(path.stem, payload, error) from error
    raws = [buffer.raw() for buffer in buffers]
    stored = [
        (
            raw,
            _store_blob(blob_directory, raw, durable) if raw.nbytes >= BLOB_THRESHOLD else _INLINE,
        )
        for raw in raws
    ]
    header = MAGIC + _COUNTS.pack(stream.getbuffer().nbytes, len(stored))
    header += b"".join(_BUFFER.pack(raw.nbytes, digest) for raw, digest in stored)
    inline = [raw for raw, digest in stored if digest == _INLINE]
    sections: list[bytes | memoryview] = [header, stream.getbuffer(), *inline]

    def write_sections(file: IO[bytes]) -> None:
        offset = 0
        for section in sections:
            file.write(b"\0" * _padding(offset))
            offset += _padding(offset)
            file.write(section)
            offset += memoryview(section).nbytes

    atomic_write(path, write_sections, durable)
    blob_bytes = sum(raw.nbytes for raw, digest in stored if digest != _INLINE)
    return path.stat().st_size + blob_bytes


def read_payload(path: Path, blob_directory: Path) -> Any:
    """Load a payload written by :func:`write_payload`; arrays are views, not copies."""
    view = memoryview(_read_whole(path))
    try:
        sections = _sections(view, blob_directory)
        return pickle.loads(sections[0], buffers=sections[1:])
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, OSError) as error:
        raise CorruptStateError(
            f"Payload file {path} is corrupt or truncated ({error}). Delete it (and the "
            "state's metadata file) and run the experiment again to recompute that state."
        ) from error


def _read_whole(path: Path) -> bytearray:
    with open(path, "rb") as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        file.readinto(data)
    return data


def _header(view: memoryview) -> tuple[list[tuple[int, bytes]], int]:
    """The (length, digest) of the pickle and of each buffer, and where the header ends."""
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise ValueError("it does not start with the dagger_wf payload marker")
    offset = len(MAGIC)
    pickle_length, buffer_count = _COUNTS.unpack_from(view, offset)
    offset += _COUNTS.size
    entries = [(pickle_length, _INLINE)]
    for _ in range(buffer_count):
        entries.append(_BUFFER.unpack_from(view, offset))
        offset += _BUFFER.size
    return entries, offset


def blob_digests(path: Path) -> set[bytes]:
    """The blobs a payload file refers to (read from its header only)."""
    with open(path, "rb") as file:
        head = file.read(len(MAGIC) + _COUNTS.size)
        buffer_count = _COUNTS.unpack_from(head, len(MAGIC))[1]  # struct.error if cut short
        view = memoryview(head + file.read(buffer_count * _BUFFER.size))
    entries, _ = _header(view)
    return {digest for _, digest in entries if digest != _INLINE}


def _sections(view: memoryview, blob_directory: Path) -> list[memoryview]:
    entries, offset = _header(view)
    sections = []
    for length, digest in entries:
        if digest != _INLINE:
            sections.append(_blob_section(blob_directory, digest, length))
            continue
        offset += _padding(offset)
        if offset + length > view.nbytes:
            raise ValueError(f"it ends {offset + length - view.nbytes} bytes early")
        sections.append(view[offset : offset + length])
        offset += length
    return sections


def _blob_section(blob_directory: Path, digest: bytes, length: int) -> memoryview:
    path = blob_path(blob_directory, digest)
    if not path.is_file():
        raise ValueError(f"its blob {path} is missing")
    data = _read_whole(path)
    if len(data) != length:
        raise ValueError(f"its blob {path} holds {len(data)} bytes, not {length}")
    return memoryview(data)
