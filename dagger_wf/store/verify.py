"""Checking every file of an experiment directory, and removing the states found damaged.

:func:`verify_store` reads everything a state is made of: its record (it must parse), its
payload (header, length, the checksum of every section) and every blob it refers to (each
blob read and checked once, however many states share it). :func:`repair_store` then
removes each damaged state's record and payload, and each damaged blob (a rewrite would
reuse a blob by its name), so that the next run computes those states again.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

from ..errors import CorruptStateError
from .payload import damaged_payload
from .payload_format import (
    Damage,
    Section,
    checked_sections,
    read_checked_blob,
    read_whole,
)
from .state_store import ExperimentStore


@dataclasses.dataclass
class VerifyReport:
    """What :func:`verify_store` found: the error of each damaged state, by key."""

    checked_states: int = 0
    checked_blobs: int = 0
    damaged: dict[str, CorruptStateError] = dataclasses.field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.damaged

    @property
    def damaged_blobs(self) -> set[Path]:
        return {error.blob for error in self.damaged.values() if error.blob is not None}


def check_state(store: ExperimentStore, key: str, blobs: dict[Path, Damage | None]) -> None:
    """Raise the CorruptStateError of the stored state ``key`` if any file of it is
    damaged. ``blobs`` remembers each blob already checked."""
    store.read_record(key)  # a CorruptStateError naming the state if it is damaged
    path = store.payload_path(key)

    def read_blob(blob: Path, section: Section) -> memoryview:
        if blob not in blobs:
            try:
                read_checked_blob(blob, section)
                blobs[blob] = None
            except Damage as damage:
                blobs[blob] = damage
        found = blobs[blob]
        if found is not None:
            raise found
        return memoryview(b"")

    try:
        checked_sections(memoryview(read_whole(path)), store.blob_directory, read_blob)
    except Damage as damage:
        raise damaged_payload(path, str(damage), damage.blob) from damage
    except OSError as error:
        raise damaged_payload(path, f"it cannot be read ({error})") from error


def verify_store(store: ExperimentStore) -> VerifyReport:
    """Check every computed state's record, payload and blobs (every byte is read)."""
    report = VerifyReport()
    blobs: dict[Path, Damage | None] = {}
    for key in store.done_keys():
        report.checked_states += 1
        try:
            check_state(store, key, blobs)
        except CorruptStateError as error:
            report.damaged[key] = error
    report.checked_blobs = len(blobs)
    return report


def repair_store(store: ExperimentStore, report: VerifyReport) -> list[str]:
    """Remove the states ``report`` found damaged (each under its claim, checked once
    more there: another process may have repaired it meanwhile) and their damaged blobs;
    return the keys removed. The next run computes them again."""
    removed = []
    worker = {"runner": "verify", "host": socket.gethostname(), "pid": os.getpid()}
    for key in sorted(report.damaged):
        with store.claim(key, worker):
            if not store.record_path(key).is_file():
                continue  # removed meanwhile
            try:
                check_state(store, key, {})
            except CorruptStateError as error:
                store.remove_damaged_state(error)
                removed.append(key)
    return removed
