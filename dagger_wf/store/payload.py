"""Payload blobs: a state's NONHASHED_ATTRIBUTES, pickled with as few copies as possible.

File layout: ``MAGIC``, a header (pickle length, buffer count, buffer lengths), the
cloudpickle stream (protocol 5), then every large buffer out of band, 64-byte aligned.
numpy arrays and plain CPU torch tensors travel as out-of-band buffers: they are written
straight from their own memory and, on load, become views into the one buffer the file was
read into, so an array is never copied twice. (Two tensors that view one storage are
stored as two arrays.) Loading unpickles: open only stores you trust.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import IO, Any

import cloudpickle

from ..errors import CorruptStateError
from .atomic import atomic_write

MAGIC = b"DWFPAYL1"
_ALIGNMENT = 64
_COUNTS = struct.Struct("<QQ")
_LENGTH = struct.Struct("<Q")


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


def write_payload(path: Path, payload: Any) -> int:
    """Atomically write ``payload`` to ``path``; return the file size in bytes."""
    stream = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    _PayloadPickler(stream, protocol=5, buffer_callback=buffers.append).dump(payload)
    raw_buffers = [buffer.raw() for buffer in buffers]
    header = MAGIC + _COUNTS.pack(stream.getbuffer().nbytes, len(raw_buffers))
    header += b"".join(_LENGTH.pack(raw.nbytes) for raw in raw_buffers)
    sections = [header, stream.getbuffer(), *raw_buffers]

    def write_sections(file: IO[bytes]) -> None:
        offset = 0
        for section in sections:
            file.write(b"\0" * _padding(offset))
            offset += _padding(offset)
            file.write(section)
            offset += memoryview(section).nbytes

    atomic_write(path, write_sections)
    return path.stat().st_size


def read_payload(path: Path) -> Any:
    """Load a payload written by :func:`write_payload`; arrays are views into one buffer."""
    with open(path, "rb") as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        file.readinto(data)
    view = memoryview(data)
    try:
        sections = _sections(view)
        return pickle.loads(sections[0], buffers=sections[1:])
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError) as error:
        raise CorruptStateError(
            f"Payload file {path} is corrupt or truncated ({error}). Delete it (and the "
            "state's metadata file) and run the experiment again to recompute that state."
        ) from error


def _sections(view: memoryview) -> list[memoryview]:
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise ValueError("it does not start with the dagger_wf payload marker")
    offset = len(MAGIC)
    pickle_length, buffer_count = _COUNTS.unpack_from(view, offset)
    offset += _COUNTS.size
    lengths = [pickle_length]
    for _ in range(buffer_count):
        lengths.append(_LENGTH.unpack_from(view, offset)[0])
        offset += _LENGTH.size
    sections = []
    for length in lengths:
        offset += _padding(offset)
        if offset + length > view.nbytes:
            raise ValueError(f"it ends {offset + length - view.nbytes} bytes early")
        sections.append(view[offset : offset + length])
        offset += length
    return sections
