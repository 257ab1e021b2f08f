"""JSON documents stored once by content: ``<directory>/<kind>/<digest>.json``, where
``kind`` is one of :data:`dagger_wf.store.layout.SNAPSHOT_KINDS`.

Thousands of states usually share one environment and a few versions of the code; each
distinct document is written once and states refer to it by digest. The digest is
:func:`dagger_wf.hashing.digest` of the kind and the document, so a file can be checked
against its own name when it is read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CorruptSnapshotError, SnapshotNotFoundError
from ..hashing import digest
from .atomic import atomic_write_json, naming_failed_write, refresh


def snapshot_path(directory: Path, kind: str, snapshot_digest: str) -> Path:
    return Path(directory) / kind / f"{snapshot_digest}.json"


def snapshot_files(directory: Path, kind: str) -> list[Path]:
    """Every stored snapshot of ``kind``; a file's stem is its digest."""
    return sorted((Path(directory) / kind).glob("*.json"))


def store_snapshot(directory: Path, kind: str, document: Any) -> str:
    """Store a JSON-serialisable ``document`` unless an equal one is stored; its digest.

    Safe to call from many processes at once: equal documents land at the same path and
    the write is atomic.
    """
    snapshot_digest = digest(kind, document)
    path = snapshot_path(directory, kind, snapshot_digest)
    if not refresh(path):
        what = f"the snapshot {snapshot_digest[:12]} ({kind}/)"
        with naming_failed_write(what, Path(directory)):
            atomic_write_json(path, document)
    return snapshot_digest


def load_snapshot(directory: Path, kind: str, snapshot_digest: str) -> Any:
    """The document stored as ``snapshot_digest``, checked against that digest."""
    path = snapshot_path(directory, kind, snapshot_digest)
    rewrite_hint = (
        f"Delete it; the next run that records the same {kind} writes it again, "
        "until then what it recorded is lost."
    )
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SnapshotNotFoundError(
            f"No {kind} snapshot {snapshot_digest[:12]} in {Path(directory)} ({path} is "
            f"missing). If the experiment directory was copied, copy its {kind}/ folder too."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptSnapshotError(
            f"{path} is corrupt or truncated ({error}). {rewrite_hint}"
        ) from error
    if digest(kind, document) != snapshot_digest:
        raise CorruptSnapshotError(
            f"{path} does not match its digest: it was edited. {rewrite_hint}"
        )
    return document
