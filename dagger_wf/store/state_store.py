"""One experiment directory on disk: where each state's metadata and payload live.

Where each file lives is spelled in :mod:`dagger_wf.store.layout`.

A state counts as computed exactly when ``states/<key>.json`` and its payload exist. The
payload is written first, both atomically, so a run killed at any moment leaves either a whole
state or none, and the next run recomputes only what did not finish. What a disk or a hand
damages later is found by a run (:meth:`ExperimentStore.damage` before reusing a state, the
checksums when loading one) or by :mod:`.verify`, and the state is computed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import uuid
import warnings
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import (
    CorruptStateError,
    CorruptStateWarning,
    NotAnExperimentError,
    StateNotComputedError,
)
from ..metrics import from_json_series
from ..records import StateRecord, Status
from . import layout
from .atomic import atomic_write_json, naming_failed_write
from .claims import Claim, claim, read_claim
from .payload import payload_damage, read_payload, write_payload
from .payload_format import Blobs, Damage, check_blobs, check_layout
from .record_index import RecordIndex

EXPERIMENT_FORMAT = "dagger_wf.experiment/1"


class ExperimentStore:
    """Reads and writes the states of one experiment directory."""

    def __init__(self, directory: str | Path, durable: bool = False) -> None:
        self.directory = Path(directory).absolute()
        # Flush each state's files to the disk before its record marks it done, so that
        # a power loss cannot leave a done mark over missing bytes (kill -9 cannot anyway).
        self.durable = durable

    def _naming(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Around a write: an OSError (a full disk) says what it was writing, and where."""
        return naming_failed_write(what, self.directory)

    # ------------------------------------------------------------ paths

    @property
    def experiment_path(self) -> Path:
        return self.directory / layout.EXPERIMENT_FILE

    def record_path(self, key: str) -> Path:
        return self.directory / layout.record_name(key)

    def payload_path(self, key: str) -> Path:
        return self.directory / layout.payload_name(key)

    @property
    def blob_directory(self) -> Path:
        return self.directory / layout.BLOBS

    def failure_directory(self, key: str) -> Path:
        return self.directory / layout.FAILURES / key

    def evaluation_directory(self, key: str) -> Path:
        return self.directory / layout.EVALUATIONS / key

    @property
    def workflow_directory(self) -> Path:
        """Where an emitted workflow keeps its files (the runner names them)."""
        return self.directory / layout.WORKFLOW

    def done_keys(self) -> list[str]:
        """The key of every computed state, sorted."""
        return sorted(path.stem for path in (self.directory / layout.STATES).glob("*.json"))

    def failed_keys(self) -> set[str]:
        """The key of every state with a failed attempt, computed since or not."""
        return {path.parent.name for path in (self.directory / layout.FAILURES).glob("*/*.json")}

    # ------------------------------------------------------------ experiment

    def is_experiment(self) -> bool:
        return self.experiment_path.is_file()

    def read_experiment(self) -> dict[str, Any]:
        if not self.is_experiment():
            raise NotAnExperimentError(
                f"{self.directory} is not a dagger_wf experiment (no {layout.EXPERIMENT_FILE}). "
                "Pass the directory you gave to Experiment(...), after a run."
            )
        document = _read_json(self.experiment_path)
        if not isinstance(document, dict):
            raise CorruptStateError(
                f"{self.experiment_path} holds a JSON {type(document).__name__}, not an object, "
                "so it is not an experiment file. Restore it from a copy (the states in "
                f"{layout.STATES}/ are untouched)."
            )
        if document.get("format") != EXPERIMENT_FORMAT:
            raise NotAnExperimentError(
                f"{self.experiment_path} has format {document.get('format')!r}, not "
                f"{EXPERIMENT_FORMAT!r}; it was not written by this version of dagger_wf."
            )
        return document

    def write_experiment(self, document: dict[str, Any]) -> None:
        """Write the experiment's description; its roots are kept apart (``add_root``).
        An unchanged description is not written again: a run that only reuses states
        then writes nothing (and works on a full disk)."""
        for key in self._legacy_roots():  # stores written before roots/ existed
            self.add_root(key)
        document = {**document, "format": EXPERIMENT_FORMAT}
        if self.is_experiment() and self.read_experiment() == json.loads(json.dumps(document)):
            return
        with self._naming(layout.EXPERIMENT_FILE):
            atomic_write_json(self.experiment_path, document, self.durable)

    def add_root(self, key: str) -> None:
        """Record ``key`` as a root. One file per root, never rewritten: processes that
        spawn roots at the same time cannot lose one another's (no read-modify-write)."""
        path = self.directory / layout.ROOTS / f"{key}.json"
        if not path.is_file():
            with self._naming(f"root {key[:12]} ({layout.ROOTS}/)"):
                atomic_write_json(path, {"key": key, "added_ns": time.time_ns()}, self.durable)

    def root_keys(self) -> list[str]:
        """Every root ever recorded here, the first spawned first."""
        added: list[tuple[int, str]] = []
        for path in (self.directory / layout.ROOTS).glob("*.json"):
            try:
                moment = int(json.loads(path.read_bytes())["added_ns"])
            except (OSError, ValueError, KeyError, TypeError):
                moment = 0  # unreadable: still a root (gc must keep what it reaches)
            added.append((moment, path.stem))
        recorded = [key for _, key in sorted(added)]
        return [*[key for key in self._legacy_roots() if key not in recorded], *recorded]

    def _legacy_roots(self) -> list[str]:
        if not self.is_experiment():
            return []
        roots = self.read_experiment().get("roots", [])
        return [key for key in roots if isinstance(key, str)]

    # ------------------------------------------------------------ states

    def is_done(self, key: str) -> bool:
        """Computed: the metadata (written last) and the payload both exist. Whether they
        are whole is :meth:`damage`'s question (a run asks both)."""
        return self.record_path(key).is_file() and self.payload_path(key).is_file()

    def damage(self, key: str) -> CorruptStateError | None:
        """What a cheap look finds wrong with the stored state ``key`` (its record does
        not parse; its payload's header, length, or a blob's existence or length is
        wrong), or None. No data is read: a changed byte is found when it is loaded."""
        try:
            _record_from_file(self.record_path(key), key)
        except CorruptStateError as error:
            return error
        except FileNotFoundError:
            return None  # not stored (or removed meanwhile): nothing to repair
        return self.payload_damage(key)

    def payload_damage(self, key: str) -> CorruptStateError | None:
        """:meth:`damage`, the payload's part only (for a caller that reads the record)."""
        return payload_damage(self.payload_path(key), self.blob_directory)

    def remove_damaged_state(self, damage: CorruptStateError) -> None:
        """Remove the damaged state ``damage.key`` so that it counts as not computed: its
        record first (the done mark), then its payload, and the damaged blob, which a
        rewrite would otherwise reuse by name. Call it holding the state's claim."""
        if damage.key is None:
            raise ValueError("only the damage of a known state can be removed")
        self.record_path(damage.key).unlink(missing_ok=True)
        self.payload_path(damage.key).unlink(missing_ok=True)
        if damage.blob is not None:
            damage.blob.unlink(missing_ok=True)

    def stored_keys(self) -> set[str]:
        """The keys :meth:`is_done` holds for, from two directory listings: for asking
        about many states at once."""
        payloads = {path.stem for path in (self.directory / layout.PAYLOADS).glob("*.payload")}
        return payloads & set(self.done_keys())

    def whole_states(self, keys: Collection[str]) -> dict[str, StateRecord]:
        """The record of each of the stored states ``keys`` that :meth:`damage`'s cheap
        look finds whole, by key: for asking about many states at once. Through the record
        index, a record or payload file unchanged since it passed is not read or looked at
        again (the presence and length of its blobs are)."""
        index = self._index()
        records = index.read_records(_record_or_error, keys)

        def look(path: Path, key: str) -> Blobs | None:
            try:
                return check_layout(path)
            except (Damage, OSError):
                return None

        looked = index.looked(look, records)
        index.save()
        whole = {}
        blob_directory = self.blob_directory
        for key, blobs in looked.items():
            record = records[key]
            if not isinstance(record, StateRecord):
                continue
            if blobs:
                try:
                    check_blobs(blobs, blob_directory)
                except Damage:
                    continue
            whole[key] = record
        return whole

    def write_state(self, record: StateRecord, payload: dict[str, Any]) -> StateRecord:
        """Store a computed state: payload first, then the metadata that marks it done."""
        with self._naming(f"the payload of state {record.key[:12]}"):
            size = write_payload(
                self.payload_path(record.key), payload, self.blob_directory, self.durable
            )
        record = dataclasses.replace(record, payload_bytes=size)
        with self._naming(f"the record of state {record.key[:12]}"):
            atomic_write_json(self.record_path(record.key), record.to_json(), self.durable)
        return record

    def running_path(self, key: str) -> Path:
        return self.directory / layout.RUNNING / f"{key}.json"

    def run_plan_path(self, run_id: str) -> Path:
        return self.directory / layout.run_plan_name(run_id)

    def claim(self, key: str, worker: dict[str, Any]) -> Claim:
        """Claim ``key`` for ``worker`` (see :mod:`.claims`), waiting while another live
        worker holds it: it is computing that state, or merging its tags."""
        with self._naming(f"the claim on state {key[:12]} ({layout.RUNNING}/)"):
            return claim(self.running_path(key), {**worker, "key": key})

    def clear_running(self, key: str) -> None:
        """Remove the claim on ``key`` of a worker that is gone."""
        self.running_path(key).unlink(missing_ok=True)

    def running_markers(self) -> list[dict[str, Any]]:
        """Every claim held now (or left by a worker that was stopped mid-way)."""
        paths = sorted((self.directory / layout.RUNNING).glob("*.json"))
        return [marker for marker in map(read_claim, paths) if marker is not None]

    def write_failure(self, record: StateRecord) -> None:
        """Add a failed attempt; earlier attempts (and a later success) leave it in place."""
        moment = (record.finished or "").replace(":", "").replace("-", "")
        name = f"{moment}-{uuid.uuid4().hex[:8]}.json"
        path = self.failure_directory(record.key) / name
        with self._naming(f"the failure record of state {record.key[:12]}"):
            atomic_write_json(path, record.to_json(), self.durable)

    def failure_paths(self, key: str) -> list[Path]:
        """Every failed attempt of ``key``, oldest first."""
        return sorted(self.failure_directory(key).glob("*.json"))

    def read_failure(self, key: str) -> StateRecord:
        """The latest failed attempt of ``key``."""
        return _record_from_file(self.failure_paths(key)[-1])

    def read_failures(self, key: str) -> list[StateRecord | CorruptStateError]:
        """Every failed attempt of ``key``, oldest first (an unreadable one as its error)."""
        return [_record_or_error(path, key) for path in self.failure_paths(key)]

    def add_tags(self, key: str, tags: Iterable[str]) -> StateRecord:
        """Give the computed state ``key`` these tags too; return its record.

        Call it holding the state's claim (:meth:`claim`): processes tagging one state at
        once then keep every tag, where unclaimed rewrites would keep the last writer's.
        The file keeps its modification time: a newer record would look like a new state."""
        record = self.read_record(key)
        if set(tags) <= set(record.tags):
            return record
        record = dataclasses.replace(record, tags=tuple(sorted({*record.tags, *tags})))
        path = self.record_path(key)
        before = path.stat()
        with self._naming(f"the tags of state {key[:12]}"):
            atomic_write_json(path, record.to_json(), self.durable)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return record

    def read_record(self, key: str) -> StateRecord:
        try:
            return _record_from_file(self.record_path(key), key)
        except (FileNotFoundError, IsADirectoryError):
            raise StateNotComputedError(
                f"State {key[:12]} has not been computed in {self.directory}; run the "
                "experiment first (exp.run())."
            ) from None

    def load_payload(self, key: str) -> dict[str, Any]:
        path = self.payload_path(key)
        if not path.is_file():
            raise StateNotComputedError(
                f"State {key[:12]} has no payload in {self.directory}; it was never computed "
                "or its payload file was deleted. Run the experiment to recompute it."
            )
        return read_payload(path, self.blob_directory)

    def iter_records(self) -> Iterator[StateRecord | CorruptStateError]:
        """Every state's latest record (done beats failed); a corrupt file yields its error."""
        done = self._stored_records()
        yield from done.values()
        for key in sorted(self.failed_keys() - done.keys()):
            yield _record_or_error(self.failure_paths(key)[-1], key)

    def _stored_records(self) -> dict[str, StateRecord | CorruptStateError]:
        """Each computed state's record, by key in key order, through the record index."""
        index = self._index()
        records = index.read_records(_record_or_error)
        index.save()
        return records

    def _index(self) -> RecordIndex:
        return RecordIndex(self.directory / layout.STATES, self.directory / layout.PAYLOADS)

    def write_evaluation(self, key: str, document: dict[str, Any]) -> None:
        moment = document["started"].replace(":", "").replace("-", "")
        name = f"{moment}-{uuid.uuid4().hex[:8]}.json"
        path = self.evaluation_directory(key) / name
        with self._naming(f"an evaluation of state {key[:12]} ({layout.EVALUATIONS}/)"):
            atomic_write_json(path, document, self.durable)

    def iter_evaluations(self, key: str) -> Iterator[dict[str, Any] | CorruptStateError]:
        """Every Function run on ``key``, oldest first; a corrupt file yields its error."""
        for path in sorted(self.evaluation_directory(key).glob("*.json")):
            try:
                yield _read_json(path)
            except CorruptStateError as error:
                yield error

    def evaluation_metrics(self, key: str) -> dict[str, list[list[float]]]:
        """The latest series of each metric that a Function recorded on ``key``."""
        metrics: dict[str, list[list[float]]] = {}
        for evaluation in self.iter_evaluations(key):
            if isinstance(evaluation, CorruptStateError):
                warnings.warn(str(evaluation), CorruptStateWarning, stacklevel=4)
                continue
            metrics.update(from_json_series(evaluation.get("metrics", {})))
        return metrics

    def recorded_metrics(self, record: StateRecord) -> dict[str, list[list[float]]]:
        """Every metric series of one attempt: the recipe's own over the latest that each
        Function recorded. A failed attempt has only what it logged before failing, since
        Functions run on done states."""
        if record.status is not Status.DONE:
            return dict(record.metrics)
        return {**self.evaluation_metrics(record.key), **record.metrics}

    def iter_attempts(self) -> Iterator[StateRecord | CorruptStateError]:
        """Every attempt: each computed state and each failed attempt, failed ones first."""
        for path in sorted((self.directory / layout.FAILURES).glob("*/*.json")):
            yield _record_or_error(path)
        yield from self._stored_records().values()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptStateError(
            f"{path} is corrupt or truncated ({error}). Delete it and run the experiment "
            "again to recompute what it described."
        ) from error


def _record_from_file(path: Path, key: str | None = None) -> StateRecord:
    """The record in ``path``; a CorruptStateError (naming ``key``) if it is damaged."""
    try:
        document = _read_json(path)
        try:
            return StateRecord.from_json(document)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise CorruptStateError(
                f"{path} is not a dagger_wf state record (missing or wrong field: {error}). "
                "Delete it and run the experiment again to recompute that state."
            ) from error
    except CorruptStateError as error:
        error.key = key
        raise


def _record_or_error(path: Path, key: str | None = None) -> StateRecord | CorruptStateError:
    try:
        return _record_from_file(path, key)
    except CorruptStateError as error:
        return error
