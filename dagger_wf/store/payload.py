"""Payload files: a state's NONHASHED_ATTRIBUTES, pickled with as few copies as possible.

numpy arrays and plain CPU torch tensors travel as pickle protocol 5 out-of-band buffers:
they are written straight from their own memory and, on load, become views into the buffer
their bytes were read into, so an array is never copied twice. (Two tensors that view one
storage are stored as two arrays.)

Buffers of at least ``BLOB_THRESHOLD`` bytes go to a content-addressed blob directory
(``<sha256[:2]>/<sha256>``), written once however many states hold them: a dataset that
every state inherits unchanged is stored once, not once per state.

The file layout, and the checks of it, are in :mod:`.payload_format`: every section and
every blob carries a checksum that is checked on load, so damage is a named
:class:`CorruptStateError`, never a silently wrong value. Loading unpickles: open only
stores you trust.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import cloudpickle

from ..errors import CorruptStateError, UnpicklablePayloadError
from .atomic import Temporary, atomic_write, publish, refresh, sync, write_temporary
from .blob_names import known_name, remember
from .payload_format import (
    CHECKED,
    INLINE,
    MAGIC,
    Damage,
    Section,
    blob_path,
    check_structure,
    checked_sections,
    checksum,
    pack_header,
    padding,
    read_header,
    read_whole,
)

BLOB_THRESHOLD = 64 * 1024


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


def _store_blob(blob_directory: Path, raw: memoryview, check: bytes, durable: bool) -> bytes:
    """Store ``raw`` (whose checksum is ``check``) as a blob unless it is stored; return
    its name. Bytes seen before in this process are not hashed again (:mod:`.blob_names`);
    new large ones are written while they are hashed."""
    known = known_name(raw.nbytes, check)
    if known is None and raw.nbytes >= HASH_WHILE_WRITING:
        digest = _write_while_hashing(blob_directory, raw, durable)
    else:
        digest = known or hashlib.sha256(raw).digest()
        path = blob_path(blob_directory, digest)
        if not _reused(path, raw.nbytes, durable):
            atomic_write(path, lambda file: file.write(raw), durable)
    # A new name is remembered only if the bytes did not change while they were hashed
    # (another thread writing to a shared array): else the pair would be wrong.
    if known is not None or checksum(raw) == check:
        remember(raw.nbytes, check, digest)
    return digest


def _reused(blob: Path, length: int, durable: bool) -> bool:
    """Whether the blob is stored whole already (a cut one is to be replaced); if so it
    is marked as just used and, ``durable``, flushed (its writer may not have)."""
    try:
        stored = refresh(blob) and blob.stat().st_size == length
    except FileNotFoundError:  # moved aside by gc between the two looks
        return False
    if stored and durable:
        sync(blob)
    return stored


# New buffers from this size on are hashed by a second thread while this one writes them
# (both run outside the GIL): their cost is then the longer of the two, not the sum.
HASH_WHILE_WRITING = 8 * 2**20


def _sha256_meanwhile(raw: memoryview) -> Callable[[], bytes]:
    """Start hashing ``raw`` in a thread of its own (a thread per blob, not a pool, which
    a forked worker would inherit without its threads); the call returned waits for it."""
    digests: list[bytes] = []
    thread = threading.Thread(
        target=lambda: digests.append(hashlib.sha256(raw).digest()),
        name="dagger_wf-sha256",
        daemon=True,
    )
    thread.start()

    def digest() -> bytes:
        thread.join()
        return digests[0] if digests else hashlib.sha256(raw).digest()  # its error, here

    return digest


def _write_while_hashing(blob_directory: Path, raw: memoryview, durable: bool) -> bytes:
    """Store new bytes as a blob, written to a temporary file while their sha256 is
    computed, then moved to that name, or dropped if that blob is stored already (the
    bytes are flushed to the disk only in the first case). A write that fails (a full
    disk) is no failure when the blob turns out to be stored."""
    hashed = _sha256_meanwhile(raw)
    temporary: Temporary | None = None
    failed: OSError | None = None
    try:
        temporary = write_temporary(blob_directory / "new", lambda file: file.write(raw))
    except OSError as error:
        failed = error
    try:
        digest = hashed()
        path = blob_path(blob_directory, digest)
        if not _reused(path, raw.nbytes, durable):
            if temporary is None:
                assert failed is not None
                raise failed
            if durable:
                sync(temporary.path)
            publish(temporary, path, durable)
        return digest
    finally:
        if temporary is not None:
            temporary.path.unlink(missing_ok=True)  # dropped, or (published) gone already


def _stored_section(blob_directory: Path, raw: memoryview, durable: bool) -> Section:
    """The header's entry for one buffer; a large one stored as a blob first."""
    check = checksum(raw)
    if raw.nbytes < BLOB_THRESHOLD:
        return Section(raw.nbytes, INLINE, check)
    return Section(raw.nbytes, _store_blob(blob_directory, raw, check, durable), check)


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
    stored = [_stored_section(blob_directory, raw, durable) for raw in raws]
    pickled = stream.getbuffer()
    header = pack_header([Section(pickled.nbytes, INLINE, checksum(pickled)), *stored])
    inline = [raw for raw, section in zip(raws, stored, strict=True) if not section.is_blob]
    sections: list[bytes | memoryview] = [header, pickled, *inline]

    def write_sections(file: IO[bytes]) -> None:
        offset = 0
        for section in sections:
            file.write(b"\0" * padding(offset))
            offset += padding(offset)
            file.write(section)
            offset += memoryview(section).nbytes

    atomic_write(path, write_sections, durable)
    blob_bytes = sum(section.length for section in stored if section.is_blob)
    return path.stat().st_size + blob_bytes


def read_payload(path: Path, blob_directory: Path) -> Any:
    """Load a payload written by :func:`write_payload`, every section and blob checked;
    arrays are views, not copies. Damage is a :class:`CorruptStateError` naming the state
    (the file's name) and what is damaged."""
    try:
        view = memoryview(read_whole(path))
        sections = checked_sections(view, blob_directory)
    except Damage as damage:
        raise damaged_payload(path, str(damage), damage.blob) from damage
    except OSError as error:
        raise damaged_payload(path, f"it cannot be read ({error})") from error
    try:
        return pickle.loads(sections[0], buffers=sections[1:])
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError) as error:
        if bytes(view[: len(MAGIC)]) in CHECKED:
            raise  # its bytes passed their checksums: not damage, so not to be removed
        raise damaged_payload(path, f"it cannot be unpickled ({error})") from error


def damaged_payload(path: Path, reason: str, blob: Path | None = None) -> CorruptStateError:
    """The error for a damaged payload file (or blob of it), saying how to recover."""
    key = path.name.removesuffix(".payload")
    store = path.parent.parent
    detail = f"the payload of state {key} ({path}) is damaged: {reason}"
    error = CorruptStateError(
        f"{detail[0].upper()}{detail[1:]}. Run the experiment again to recompute that state, "
        f"or remove the damaged states with `dagger-wf verify {store} --repair`."
    )
    error.key, error.blob, error.detail = key, blob, detail
    return error


def payload_damage(path: Path, blob_directory: Path) -> CorruptStateError | None:
    """What a cheap look finds wrong with a payload file (its header, its length, the
    existence and length of its blobs; no data read), or None."""
    try:
        check_structure(path, blob_directory)
    except Damage as damage:
        return damaged_payload(path, str(damage), damage.blob)
    except FileNotFoundError:
        return damaged_payload(path, "it is missing")
    except OSError as error:
        return damaged_payload(path, f"it cannot be read ({error})")
    return None


def blob_digests(path: Path) -> set[bytes]:
    """The blobs a payload file refers to (read from its header only)."""
    header, _ = read_header(path)
    return {section.digest for section in header.sections if section.is_blob}
