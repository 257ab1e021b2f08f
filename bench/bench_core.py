"""Core costs of dagger_wf, each printed next to a plain-Python floor measured in the same run,
ending with issue 13's table of targets: value, floor, ratio, target, met, and for each
missed one the profile (the functions with the most time of their own) that shows why.

Part 1 (bookkeeping): N trivial states in a tree (root -> 10 branches -> chains): define,
first run, cached re-run, slim restore and tag filtering, against atomically creating N
small files, reading one file of N records or N record files, and a set lookup.
Part 2 (payloads, in fresh interpreters): a chain of recipes over one numpy or torch
buffer (100 MiB, 3 transitions; 1 MiB, 10), per transition, against ``pickle.dump`` +
``pickle.load`` of the same payload; the peak memory of a threads run of a 50 MiB root
and 40 children, in payloads above the memory before it; the fixed cost of a first
``exp.run()`` of a 1-state tree. Part 3 (verified load): loading a stored payload with
every section and blob checked by its XXH3-128, against ``readinto`` of the same files'
bytes; and XXH3-128 against crc32 (the checksum of version 3 payloads) and sha256 (what
blobs are named by) on the same buffer.

Timings are medians of 3 repeats (1 for 100 000 states) and never asserted: these
machines are shared and noisy. Run from the repository root: ``python bench/bench_core.py
[--sizes 1000 10000 100000] [--repeats N] [--payload-mb 200] [--only trivial|payload|load]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import itertools
import json
import operator
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dask
import numpy as np
import torch
import xxhash
from targets import Target, print_targets, profile_lines
from trivial import Counter, Step

import dagger_wf as dg
from dagger_wf.store.payload import blob_digests, blob_path, read_payload, write_payload

T = TypeVar("T")

REPEATS = 3
FILTER_CALLS = 5  # filter calls per repeat, each a sample
ISSUE_SIZE = 10001  # the tree size of issue 13's targets (its run 1 targets: also 1 000)
BRANCHES = 10
TRANSITIONS = 3
MB = 2**20


# ---------------------------------------------------------------- experiment trees


class Weights(dg.ExperimentState):
    """A model-sized payload: one float32 buffer of ``megabytes``, numpy or torch."""

    PROPERTIES = ["kind", "megabytes"]
    NONHASHED_ATTRIBUTES = ["data"]

    def initialize_state(self, kind: str, megabytes: float, **kwargs: Any) -> None:
        self.data = make_buffer(kind, megabytes)


class Nudge(dg.Recipe):
    """Changes one element of the buffer, in place: the rest of the payload is unchanged."""

    PROPERTIES = ["index"]

    def __init__(self, index: int) -> None:
        self.index = index

    def run(self, state: dg.ExperimentState) -> dg.ExperimentState:
        state.data[self.index] += 1
        return state


def make_buffer(kind: str, megabytes: float) -> Any:
    """Seeded, so the dagger_wf root and the pickle floor hold the same bytes."""
    size = int(megabytes * MB) // 4
    if kind == "torch":
        return torch.rand(size, generator=torch.Generator().manual_seed(0))
    return np.random.default_rng(0).random(size, dtype=np.float32)


def branch_lengths(n: int) -> list[int]:
    """Chain lengths of the branches so that the tree has ``n`` states, root included."""
    base, extra = divmod(n - 1, BRANCHES)
    return [base + (branch < extra) for branch in range(BRANCHES)]


def define_trivial_tree(directory: Path, n: int) -> dg.Experiment:
    """Root -> 10 chains of Step; branch b is tagged ``tag:b``, odd branches also ``other``.

    Every Step gets its own index: equal recipes on one parent would be one state.
    """
    exp = dg.Experiment(directory, state_class=Counter)
    root = exp.spawn_new_tree(name="bench")
    indices = itertools.count(1)
    for branch, length in enumerate(branch_lengths(n)):
        tags = [f"tag:{branch}"] + (["other"] if branch % 2 else [])
        with exp.tag(tags):
            state = root
            for _ in range(length):
                state = Step(next(indices))(state)
    return exp


def define_payload_chain(
    directory: Path, kind: str, megabytes: float, transitions: int
) -> dg.Experiment:
    exp = dg.Experiment(directory, state_class=Weights)
    state = exp.spawn_new_tree(kind=kind, megabytes=megabytes)
    for index in range(transitions):
        state = Nudge(index)(state)
    return exp


def define_payload_fan(directory: Path, megabytes: float, children: int) -> dg.Experiment:
    """A numpy root with ``children`` children, each nudging its own element."""
    exp = dg.Experiment(directory, state_class=Weights)
    root = exp.spawn_new_tree(kind="numpy", megabytes=megabytes)
    for index in range(children):
        Nudge(index)(root)
    return exp


# ---------------------------------------------------------------- measuring


def timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def max_rss_mb() -> float:
    """Peak resident memory of this process's image so far (Linux /proc: VmHWM, in kB).
    Not ``ru_maxrss``, which a process started by ``exec`` inherits from its parent: the
    benchmark's own peak after 100 000 states would read as the child's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is measured on Linux")


def rss_mb() -> float:
    """Resident memory now (Linux /proc): the baseline, as the import peak may be higher."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MB


def measure_trivial(
    workdir: Path, n: int, repeats: int = REPEATS
) -> tuple[dict[str, list[float]], int]:
    """Samples (seconds) of each bookkeeping step for ``n`` states; also the filter's hits."""
    samples: dict[str, list[float]] = defaultdict(list)
    hits = 0
    for repeat in range(repeats):
        directory = workdir / f"trivial-{n}-{repeat}"
        # Each step as the script of a new process would take it: what ran before is
        # dropped first (else its objects would be in memory, and the collector's work).
        samples["first"].append(timed(define_trivial_tree(directory, n).run)[0])
        gc.collect()
        # The first cached re-run after a run reads the records and looks at the payloads
        # of the states that run computed, and writes the record index; the next ones
        # (the edit loop's) read the index.
        for sample in ("cached, index written", "cached"):
            define, cached = timed(functools.partial(define_trivial_tree, directory, n))
            samples["define"].append(define)
            samples[sample].append(define + timed(cached.run)[0])
            del cached
            gc.collect()
        restore = functools.partial(dg.Experiment.restore, directory, Counter, slim=True)
        # The first restore after a run reads every record file and writes the record
        # index; the next ones (an analysis run again) read the index.
        samples["restore, index written"].append(timed(restore)[0])
        gc.collect()
        seconds, restored = timed(restore)
        samples["restore"].append(seconds)
        seconds, selected = timed(functools.partial(select, restored.graph))
        samples["filter"].append(seconds)
        hits = len(selected)
        nodes = restored.graph.nodes
        for _ in range(FILTER_CALLS):  # an analysis filters one restored tree many times
            samples["filter tag"].append(timed(functools.partial(nodes.filter, "tag:3"))[0])
            samples["filter glob"].append(timed(functools.partial(nodes.filter, "tag:*"))[0])
        tags = {tag for node in nodes for tag in node.tags}
        samples["set lookup"].append(timed(functools.partial(operator.contains, tags, "tag:3"))[0])
        documents = record_documents(restored.graph)
        samples["index floor"].append(index_floor(workdir / f"index-{n}-{repeat}", documents))
        samples["files floor"].append(files_floor(workdir / f"files-{n}-{repeat}", documents))
        samples["floor"].append(filesystem_floor(workdir / f"floor-{n}-{repeat}", n))
        samples["atomic floor"].append(atomic_floor(workdir / f"atomic-{n}-{repeat}", n))
        shutil.rmtree(directory)
    return samples, hits


def select(tree: dg.StaticExperimentTree) -> dg.NodeSet:
    """The filter benchmarked: tagged states outside the ``other`` branches."""
    return tree.nodes.filter("tag:*") & tree.nodes.filter("!other")


def filesystem_floor(directory: Path, n: int) -> float:
    """Seconds to write, then read back, ``n`` tiny JSON files and ``n`` tiny pickle files."""
    directory.mkdir()
    start = time.perf_counter()
    for i in range(n):
        (directory / f"{i}.json").write_text(json.dumps({"key": i, "tags": ["tag:0"]}))
        with open(directory / f"{i}.pickle", "wb") as file:
            pickle.dump({"value": i}, file, protocol=5)
    for i in range(n):
        json.loads((directory / f"{i}.json").read_bytes())
        with open(directory / f"{i}.pickle", "rb") as file:
            pickle.load(file)
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return elapsed


def atomic_floor(directory: Path, n: int) -> float:
    """Seconds to create ``n`` small files atomically: each written to a temporary name
    in the same directory (named from the pid and a counter), then renamed into place."""
    directory.mkdir()
    pid = os.getpid()
    start = time.perf_counter()
    for i in range(n):
        temporary = directory / f".{i}.json.{pid}.{i}.partial"
        with open(temporary, "wb") as file:
            file.write(json.dumps({"key": i, "tags": ["tag:0"], "value": i}).encode())
        os.replace(temporary, directory / f"{i}.json")
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return elapsed


def record_documents(tree: dg.StaticExperimentTree) -> list[dict[str, Any]]:
    """Every restored state's record, as it is stored: what a slim restore must read."""
    return [state.dagger.record.to_json() for state in tree.nodes]


def index_floor(directory: Path, documents: list[dict[str, Any]]) -> float:
    """Seconds to read and parse one JSON file holding every record (an index's floor),
    with the cyclic collector off, as a restore builds its objects."""
    directory.mkdir()
    path = directory / "index.json"
    path.write_text(json.dumps(documents))
    gc.disable()
    start = time.perf_counter()
    json.loads(path.read_bytes())
    elapsed = time.perf_counter() - start
    gc.enable()
    shutil.rmtree(directory)
    return elapsed


def files_floor(directory: Path, documents: list[dict[str, Any]]) -> float:
    """Seconds to read and parse one JSON file per record (what a store without an index
    reads, listing included), with the cyclic collector off."""
    directory.mkdir()
    for number, document in enumerate(documents):
        (directory / f"{number}.json").write_text(json.dumps(document))
    gc.disable()
    start = time.perf_counter()
    for path in directory.glob("*.json"):
        json.loads(path.read_bytes())
    elapsed = time.perf_counter() - start
    gc.enable()
    shutil.rmtree(directory)
    return elapsed


def measure_transition(
    workdir: Path, kind: str, megabytes: float, transitions: int
) -> dict[str, Any]:
    """Seconds per transition of a chain over a cached root (load the parent, run, write
    the child), beside ``pickle.dump`` + ``pickle.load`` of the same payload; and the
    profile of one more chain."""
    define_trivial_tree(workdir / "warm-up", 2).run()  # lazy imports are not transitions
    payload = {"data": make_buffer(kind, megabytes)}
    result: dict[str, Any] = defaultdict(list)
    path = workdir / "floor.pickle"
    for repeat in range(REPEATS + 1):
        directory = workdir / f"payload-{repeat}"
        define_payload_chain(directory, kind, megabytes, transitions=0).run()
        chain = define_payload_chain(directory, kind, megabytes, transitions)
        if repeat == REPEATS:
            result["profile"] = profile_lines(chain.run)
        else:
            result["transition"].append(timed(chain.run)[0] / transitions)
            result["floor"].append(timed(functools.partial(pickle_round_trip, path, payload))[0])
        shutil.rmtree(directory)
    return dict(result)


def measure_fan(workdir: Path, megabytes: float, children: int) -> dict[str, Any]:
    """Peak resident memory of a run on threads of a root and its children, over the
    resident memory before it (imports done), in payloads."""
    # Lazy imports and first-use allocations (of blob writes and reads too) are not payloads.
    define_payload_fan(workdir / "warm-up", 1, 2).run(scheduler="threads")
    baseline = rss_mb()
    define_payload_fan(workdir / "fan", megabytes, children).run(scheduler="threads")
    return {"payloads": (max_rss_mb() - baseline) / megabytes}


def measure_fixed_cost(workdir: Path) -> dict[str, Any]:
    """Seconds of defining and running a 1-state tree in a process that has imported
    dagger_wf (and torch) but run nothing yet: what every script pays once."""
    return {"seconds": timed(define_trivial_tree(workdir / "one", 1).run)[0]}


def pickle_round_trip(path: Path, payload: dict[str, Any]) -> Any:
    with open(path, "wb") as file:
        pickle.dump(payload, file, protocol=5)
    with open(path, "rb") as file:
        return pickle.load(file)


def measure_load(workdir: Path, tensor_mb: int) -> dict[str, list[float]]:
    """Seconds to load one stored payload, checked, against reading its files' bytes;
    and seconds of XXH3-128, crc32 and sha256 over the tensor's bytes."""
    payload = {
        "tensor": make_buffer("torch", tensor_mb),
        "array": make_buffer("numpy", tensor_mb / 4),
    }
    path, blobs = workdir / "load.payload", workdir / "blobs"
    write_payload(path, payload, blobs)
    files = [path, *(blob_path(blobs, digest) for digest in sorted(blob_digests(path)))]
    buffer = memoryview(payload["tensor"].numpy()).cast("B")
    samples: dict[str, list[float]] = defaultdict(list)
    read_files(files)  # into the page cache, as a recently written state is
    for _ in range(REPEATS):
        samples["load"].append(timed(functools.partial(read_payload, path, blobs))[0])
        samples["floor"].append(timed(functools.partial(read_files, files))[0])
        samples["crc32"].append(timed(functools.partial(zlib.crc32, buffer))[0])
        samples["xxh3-128"].append(timed(functools.partial(xxhash.xxh3_128_digest, buffer))[0])
        samples["sha256"].append(timed(functools.partial(hashlib.sha256, buffer))[0])
    return dict(samples)


def read_files(paths: list[Path]) -> list[bytearray]:
    """The floor of a load: each file's bytes ``readinto`` one buffer of its size."""
    buffers = []
    for path in paths:
        with open(path, "rb") as file:
            data = bytearray(os.fstat(file.fileno()).st_size)
            file.readinto(data)
        buffers.append(data)
    return buffers


def run_child(mode: str, *options: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (so its peak memory and its first run
    are its own); it prints its result as JSON."""
    command = [sys.executable, __file__, "--only", mode, *options]
    completed = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


# ---------------------------------------------------------------- reporting


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


HEADER = f"  {'':<46} {'median':>10} {'range':>6} {'per state':>13}  ratio"


def row(label: str, samples: list[float], n: int | None = None, note: str = "") -> str:
    """Median, spread of the repeats ((max - min) / median) and, given ``n``, per state."""
    median = statistics.median(samples)
    spread = (max(samples) - min(samples)) / median
    per = f"{median / n * 1e6:.0f} µs" if n else ""
    return f"  {label:<46} {duration(median):>10} {spread:>6.0%} {per:>13}  {note}"


def ratio(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(numerator) / statistics.median(denominator)


def print_machine() -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}\n"
        f"python {platform.python_version()}, dask {dask.__version__}, torch "
        f"{torch.__version__}, numpy {np.__version__}, dagger_wf {dg.__version__}\n"
        f"each figure: median of {REPEATS} repeats, range = (max - min) / median; "
        "ratios compare medians of this run\n"
    )


def print_trivial(n: int, samples: dict[str, list[float]], hits: int) -> None:
    depth = max(branch_lengths(n)) + 1
    first, cached, define = samples["first"], samples["cached"], samples["define"]
    restore = samples["restore"]
    print(f"{n} trivial states (root -> {BRANCHES} chains, depth {depth}), single-threaded")
    print(HEADER)
    print(row("define tree (plan + keys)", define, n))
    print(row("first run: exp.run()", first, n, f"{ratio(first, samples['floor']):.1f}x floor"))
    print(row("cached re-run, first: define + run()", samples["cached, index written"], n))
    print(
        row(
            "cached re-run, again: define + run()",
            cached,
            n,
            f"{ratio(cached, first):.2f}x first run; define is {ratio(define, cached):.0%}",
        )
    )
    print(row("Experiment.restore(slim=True), first", samples["restore, index written"], n))
    print(row("Experiment.restore(slim=True), again", restore, n))
    print(row(f'filter "tag:*" & "!other" ({hits} hits)', samples["filter"]))
    print(row('filter "tag:3" (one tag)', samples["filter tag"]))
    print(row('filter "tag:*" (a glob)', samples["filter glob"]))
    print(row("floor: a set lookup", samples["set lookup"]))
    print(row("floor: write+read N JSON + N pickle files", samples["floor"], n))
    print(row("floor: N small files, write temp + rename", samples["atomic floor"], n))
    print(row("floor: read + parse one file of N records", samples["index floor"], n))
    print(row("floor: read + parse N record files", samples["files floor"], n))
    print()


def trivial_targets(n: int, samples: dict[str, list[float]], issue_size: bool) -> list[Target]:
    """Issue 13's targets for ``n`` trivial states: run 1 up to 10 000 states, the rest
    at the size nearest its 10 001 (``issue_size``); other sizes are reported in the
    growth table. The text before a row's first comma names the profile that explains a
    miss (see :func:`profile_trivial`)."""
    restore, index_read = samples["restore"], samples["index floor"]
    targets = []
    if n <= 10000:
        targets.append(
            Target(
                f"run 1, {n} states / atomic small files",
                samples["first"],
                samples["atomic floor"],
                "<=",
                1.5,
            )
        )
    if issue_size:
        targets += [
            Target(
                f"cached re-run, {n} states / define",
                samples["cached"],
                samples["define"],
                "<=",
                1.3,
            ),
            Target(
                f"restore(slim=True), {n} states / one index read", restore, index_read, "<=", 2
            ),
            Target(
                f"record files read, {n} / restore(slim=True)",
                samples["files floor"],
                restore,
                ">=",
                10,
            ),
            Target(
                f"filter one tag, {n} states (floor: a set lookup)",
                samples["filter tag"],
                samples["set lookup"],
                "<=",
                1e-3,
                on_value=True,
            ),
            Target(
                f"filter a glob, {n} states (floor: a set lookup)",
                samples["filter glob"],
                samples["set lookup"],
                "<=",
                5e-3,
                on_value=True,
            ),
        ]
    return targets  # fmt: skip


def profile_trivial(workdir: Path, n: int) -> dict[str, list[str]]:
    """One more round of part 1's measures for ``n`` states, each under cProfile."""
    directory = workdir / f"profiled-{n}"
    profiles = {"run 1": profile_lines(define_trivial_tree(directory, n).run)}
    define_trivial_tree(directory, n).run()  # writes the record index, as a first re-run does
    profiles["cached re-run"] = profile_lines(lambda: define_trivial_tree(directory, n).run())
    restored: list[dg.Experiment] = []
    restore = functools.partial(dg.Experiment.restore, directory, Counter, slim=True)
    restore()  # writes the record index, as the first restore after a run does
    profiles["restore(slim=True)"] = profile_lines(lambda: restored.append(restore()))
    profiles["record files read"] = profiles["restore(slim=True)"]
    nodes = restored[0].graph.nodes
    profiles["filter one tag"] = profile_lines(functools.partial(nodes.filter, "tag:3"))
    profiles["filter a glob"] = profile_lines(functools.partial(nodes.filter, "tag:*"))
    shutil.rmtree(directory)
    return profiles


def print_growth(measured: dict[int, dict[str, list[float]]]) -> None:
    """Per-state cost at each size, and against the smallest: flat means it scales."""
    sizes = sorted(measured)
    smallest = sizes[0]
    print("cost growth: per state at each size (x the smallest size's per-state cost)")
    print(f"  {'':<24}" + "".join(f"{n:>20}" for n in sizes))
    for name, label in (
        ("first", "run 1"),
        ("cached", "cached re-run, again"),
        ("restore", "restore, again"),
    ):
        base = statistics.median(measured[smallest][name]) / smallest
        cells = []
        for n in sizes:
            per = statistics.median(measured[n][name]) / n
            cells.append(f"{per * 1e6:.0f} µs ({per / base:.2f}x)")
        print(f"  {label:<24}" + "".join(f"{cell:>20}" for cell in cells))
    print()


def print_load(tensor_mb: float, samples: dict[str, list[float]]) -> None:
    size = tensor_mb * 1.25
    load, floor = samples["load"], samples["floor"]
    print(f"verified load: {size:.0f} MB payload (tensor and array blobs), page-cached files")
    print(HEADER)
    print(
        row(
            "read_payload: read + checksums + unpickle",
            load,
            None,
            f"{ratio(load, floor):.2f}x floor",
        )
    )
    print(row("floor: readinto of the same files", floor))
    for name in ("xxh3-128", "crc32", "sha256"):
        throughput = tensor_mb * MB / statistics.median(samples[name]) / 1e9
        print(
            row(
                f"{name} of the {tensor_mb} MB tensor",
                samples[name],
                None,
                f"{throughput:.2f} GB/s",
            )
        )
    print()


# ---------------------------------------------------------------- entry point


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"repeats of part 1 (default {REPEATS}; 1 for sizes of 100000 and more)",
    )
    parser.add_argument(
        "--payload-mb", type=float, default=200, help="part 3's tensor size; array = 1/4"
    )
    parser.add_argument(
        "--only",
        choices=["trivial", "load", "payload", *CHILDREN],
        help="trivial: part 1 alone; load: part 3 alone; payload: part 2 alone; "
        f"{', '.join(CHILDREN)}: one measurement, printed as JSON (what part 2 starts in a "
        "fresh interpreter)",
    )
    parser.add_argument("--kind", choices=["numpy", "torch"], default="numpy")
    parser.add_argument("--transitions", type=int, default=3)
    parser.add_argument("--children", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="fixed: profile it instead")
    return parser.parse_args()


CHILDREN = ("transition", "fan", "fixed")


def run_child_measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    if arguments.only == "transition":
        return measure_transition(
            workdir, arguments.kind, arguments.payload_mb, arguments.transitions
        )
    if arguments.only == "fan":
        return measure_fan(workdir, arguments.payload_mb, arguments.children)
    if arguments.profile:
        return {"profile": profile_lines(define_trivial_tree(workdir / "one", 1).run)}
    return measure_fixed_cost(workdir)


def part_1(workdir: Path, arguments: argparse.Namespace) -> list[Target]:
    measured, targets = {}, []
    nearest = min(arguments.sizes, key=lambda size: abs(size - ISSUE_SIZE))
    for n in arguments.sizes:
        repeats = arguments.repeats or (REPEATS if n < 100000 else 1)
        measured[n], hits = measure_trivial(workdir, n, repeats)
        print_trivial(n, measured[n], hits)
        targets += trivial_targets(n, measured[n], n == nearest)
    if len(measured) > 1:
        print_growth(measured)
    missed = [target for target in targets if not target.met]
    if missed:  # profiled at the size nearest the issue's
        profiles = profile_trivial(workdir, nearest)
        for target in missed:
            target.profile = profiles.get(target.measure.split(",")[0], [])
    return targets


def part_2() -> list[Target]:
    """Payload transitions, peak memory and the fixed cost, each in fresh interpreters."""
    targets = []
    for kind, megabytes, transitions, limit in PAYLOAD_TARGETS:
        result = run_child(
            "transition",
            *("--kind", kind, "--payload-mb", str(megabytes)),
            *("--transitions", str(transitions)),
        )
        label = f"payload transition, {kind} {megabytes} MiB, chain of {transitions}"
        targets.append(
            Target(
                f"{label} / pickle dump + load",
                result["transition"],
                result["floor"],
                "<=",
                limit,
                profile=result["profile"],
            )
        )
    fan = run_child("fan", "--payload-mb", "50", "--children", "40")
    targets.append(
        Target(
            "peak memory, threads, 50 MiB root + 40 children",
            [fan["payloads"]],
            None,
            "<=",
            2,
            unit="payloads",
        )
    )
    fixed = Target(
        "fixed cost of exp.run(), 1-state tree (fresh process)",
        [run_child("fixed")["seconds"] for _ in range(REPEATS)],
        None,
        "<=",
        0.1,
    )
    if not fixed.met:
        fixed.profile = run_child("fixed", "--profile")["profile"]
    return [*targets, fixed]


# (kind, MiB, transitions in one run, target ratio to pickle dump + load)
PAYLOAD_TARGETS = [("numpy", 100, 3, 1.1), ("torch", 100, 3, 1.1), ("numpy", 1, 10, 1.5)]


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory(prefix="dagger_bench-") as workdir:
        if arguments.only in CHILDREN:
            print(json.dumps(run_child_measure(arguments, Path(workdir))))
            return
        print_machine()
        targets = []
        if arguments.only in (None, "trivial"):
            targets += part_1(Path(workdir), arguments)
        if arguments.only in (None, "load"):
            print_load(arguments.payload_mb, measure_load(Path(workdir), arguments.payload_mb))
    if arguments.only in (None, "payload"):
        targets += part_2()
    print_targets(targets)


if __name__ == "__main__":
    main()
