"""What ``durable=True`` costs: a first run with and without flushing to the disk.

A durable store ``fsync``s each state's blobs, payload and record and the directories
naming them before the record marks the state done. This prints, for N trivial states and
for a chain of large payloads, the first run both ways, and as the floor the same number
of tiny files written in plain Python with and without ``fsync`` of file and directory.

Timings are medians of 3 repeats and never asserted. Run from the repository root:
``python bench/bench_durable.py [--states 300] [--payload-mb 50]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from trivial import Counter, Step

import dagger_wf as dg

REPEATS = 3
TRANSITIONS = 3


class Arrays(dg.ExperimentState):
    PROPERTIES = ["megabytes"]
    NONHASHED_ATTRIBUTES = ["array"]

    def initialize_state(self, megabytes: int, **kwargs: object) -> None:
        self.array = np.zeros(megabytes * 2**20 // 8)


class Nudge(dg.Recipe):
    """Changes one element: every state stores a new blob of the whole array."""

    PROPERTIES = ["index"]

    def __init__(self, index: int) -> None:
        self.index = index

    def run(self, state: dg.ExperimentState) -> dg.ExperimentState:
        state.array = state.array.copy()
        state.array[self.index] += 1
        return state


def trivial_run(directory: Path, n: int, durable: bool) -> float:
    exp = dg.Experiment(directory, Counter, durable=durable)
    state = exp.spawn_new_tree(name="bench")
    for index in range(1, n):
        state = Step(index)(state)
    start = time.perf_counter()
    exp.run()
    return time.perf_counter() - start


def payload_run(directory: Path, megabytes: int, durable: bool) -> float:
    exp = dg.Experiment(directory, Arrays, durable=durable)
    state = exp.spawn_new_tree(megabytes=megabytes)
    for index in range(TRANSITIONS):
        state = Nudge(index)(state)
    start = time.perf_counter()
    exp.run()
    return time.perf_counter() - start


def files_floor(directory: Path, n: int, durable: bool) -> float:
    """``3 n`` tiny files (a state's payload, record and claim, roughly), each written to
    a temporary name and renamed; durable: with ``fsync`` of the file and directory."""
    directory.mkdir()
    start = time.perf_counter()
    for index in range(3 * n):
        temporary, path = directory / f".{index}.partial", directory / f"{index}.json"
        with open(temporary, "wb") as file:
            file.write(b'{"key": 1}')
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
        if durable:
            descriptor = os.open(directory, os.O_RDONLY)
            os.fsync(descriptor)
            os.close(descriptor)
    return time.perf_counter() - start


def median_of(measure: Callable[..., float], workdir: Path, *arguments: object) -> float:
    samples = []
    for repeat in range(REPEATS):
        directory = workdir / f"{measure.__name__}-{repeat}-{arguments}"
        samples.append(measure(directory, *arguments))
        shutil.rmtree(directory)
    return statistics.median(samples)


def report(label: str, fast: float, durable: float, n: int) -> None:
    print(
        f"  {label:<34} {fast * 1e3:>9.1f} ms {durable * 1e3:>9.1f} ms "
        f"{(durable - fast) / n * 1e3:>8.2f} ms  {durable / fast:>5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=300)
    parser.add_argument("--payload-mb", type=int, default=50)
    arguments = parser.parse_args()
    n, megabytes = arguments.states, arguments.payload_mb
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as work:
        workdir = Path(work)
        print(f"store in {workdir.parent} (its file system decides what fsync costs)")
        print(f"  {'':<34} {'default':>12} {'durable':>12} {'per state':>11} {'ratio':>6}")
        rows: list[tuple[str, Callable[..., float], int, int]] = [
            (f"floor: {3 * n} tiny files", files_floor, n, n),
            (f"first run, {n} trivial states", trivial_run, n, n),
            (f"first run, {megabytes} MB states", payload_run, megabytes, TRANSITIONS + 1),
        ]
        for label, measure, size, states in rows:
            fast = median_of(measure, workdir, size, False)
            durable = median_of(measure, workdir, size, True)
            report(label, fast, durable, states)


if __name__ == "__main__":
    main()
