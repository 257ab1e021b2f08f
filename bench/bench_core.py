"""Core costs of dagger_wf, each printed next to a plain-Python floor measured in the same run.

Part 1 (bookkeeping): N trivial states in a tree (root -> 10 branches -> chains): define,
first run, cached re-run, slim restore and tag filtering, against writing and reading N tiny
JSON + N tiny pickle files. Part 2 (payloads): a chain of recipes over a large tensor and
array, per transition, against ``pickle.dump`` + ``pickle.load`` of the same dict; it runs
in fresh subprocesses so their peak RSS shows how many payload copies are alive at once.
Part 3 (verified load, ``--only load``): loading a stored payload with every section and
blob checked by crc32, against the floor of ``readinto`` of the same files' bytes; and the
throughput of crc32 against sha256 (what blobs are named by) on the same buffer.

Timings are medians of 3 repeats and never asserted: these machines are shared and noisy.
Run from the repository root: ``python bench/bench_core.py [--sizes 1000 10000]
[--payload-mb 200] [--only trivial|load]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import os
import pickle
import platform
import resource
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
from trivial import Counter, Step

import dagger_wf as dg
from dagger_wf.store.payload import blob_digests, blob_path, read_payload, write_payload

T = TypeVar("T")

REPEATS = 3
BRANCHES = 10
TRANSITIONS = 3
MB = 2**20


# ---------------------------------------------------------------- experiment trees


class Weights(dg.ExperimentState):
    """A model-sized payload: a float32 tensor and a numpy array a quarter of its size."""

    PROPERTIES = ["tensor_mb"]
    NONHASHED_ATTRIBUTES = ["tensor", "array"]

    def initialize_state(self, tensor_mb: int, **kwargs: Any) -> None:
        payload = make_payload(tensor_mb)
        self.tensor, self.array = payload["tensor"], payload["array"]


class Nudge(dg.Recipe):
    """Changes one element of each buffer, in place: the rest of the payload is unchanged."""

    PROPERTIES = ["index"]

    def __init__(self, index: int) -> None:
        self.index = index

    def run(self, state: dg.ExperimentState) -> dg.ExperimentState:
        state.tensor[self.index] += 1
        state.array[self.index] += 1
        return state


def element_counts(tensor_mb: int) -> tuple[int, int]:
    """float32 elements of the tensor (``tensor_mb`` MB) and of the array (a quarter)."""
    return tensor_mb * MB // 4, tensor_mb * MB // 16


def make_payload(tensor_mb: int) -> dict[str, Any]:
    """Seeded, so the dagger_wf root and the pickle floor hold the same bytes."""
    tensor_size, array_size = element_counts(tensor_mb)
    tensor = torch.rand(tensor_size, generator=torch.Generator().manual_seed(0))
    array = np.random.default_rng(0).random(array_size, dtype=np.float32)
    return {"tensor": tensor, "array": array}


def payload_mb(tensor_mb: int) -> float:
    return sum(element_counts(tensor_mb)) * 4 / MB


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


def define_payload_chain(directory: Path, tensor_mb: int, transitions: int) -> dg.Experiment:
    exp = dg.Experiment(directory, state_class=Weights)
    state = exp.spawn_new_tree(tensor_mb=tensor_mb)
    for index in range(transitions):
        state = Nudge(index)(state)
    return exp


# ---------------------------------------------------------------- measuring


def timed(action: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def max_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        first = define_trivial_tree(directory, n)
        samples["first"].append(timed(first.run)[0])
        define, cached = timed(functools.partial(define_trivial_tree, directory, n))
        samples["define"].append(define)
        samples["cached"].append(define + timed(cached.run)[0])
        restore, restored = timed(
            functools.partial(dg.Experiment.restore, directory, Counter, slim=True)
        )
        samples["restore"].append(restore)
        seconds, selected = timed(functools.partial(select, restored.graph))
        samples["filter"].append(seconds)
        hits = len(selected)
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
    """Seconds to read and parse one JSON file holding every record (an index's floor)."""
    directory.mkdir()
    path = directory / "index.json"
    path.write_text(json.dumps(documents))
    start = time.perf_counter()
    json.loads(path.read_bytes())
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return elapsed


def files_floor(directory: Path, documents: list[dict[str, Any]]) -> float:
    """Seconds to read and parse one JSON file per record (what a store without an index
    reads, listing included)."""
    directory.mkdir()
    for number, document in enumerate(documents):
        (directory / f"{number}.json").write_text(json.dumps(document))
    start = time.perf_counter()
    for path in directory.glob("*.json"):
        json.loads(path.read_bytes())
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return elapsed


def measure_payload_run(workdir: Path, tensor_mb: int) -> dict[str, Any]:
    """Root init, then the chain of transitions over a cached root, with peak RSS after each."""
    define_trivial_tree(workdir / "warm-up", 2).run()  # lazy imports are not payload memory
    result: dict[str, Any] = defaultdict(list, baseline_mb=rss_mb())
    for repeat in range(REPEATS):
        directory = workdir / f"payload-{repeat}"
        root_only = define_payload_chain(directory, tensor_mb, transitions=0)
        result["root"].append(timed(root_only.run)[0])
        result.setdefault("peak_after_root_mb", max_rss_mb())  # before any transition ran
        chain = define_payload_chain(directory, tensor_mb, TRANSITIONS)
        result["chain"].append(timed(chain.run)[0])
        shutil.rmtree(directory)
    result["peak_mb"] = max_rss_mb()
    return dict(result)


def measure_payload_floor(workdir: Path, tensor_mb: int) -> dict[str, Any]:
    """Plain in-band pickle round trip of the same payload dict, and raw buffer I/O."""
    result: dict[str, Any] = defaultdict(list, baseline_mb=rss_mb())
    payload = make_payload(tensor_mb)
    path = workdir / "floor.pickle"
    for _ in range(REPEATS):
        result["pickle"].append(timed(functools.partial(pickle_round_trip, path, payload))[0])
        path.unlink()
    result["peak_pickle_mb"] = max_rss_mb()
    for _ in range(REPEATS):
        result["raw"].append(timed(functools.partial(raw_round_trip, path, payload))[0])
        path.unlink()
    return dict(result)


def pickle_round_trip(path: Path, payload: dict[str, Any]) -> Any:
    with open(path, "wb") as file:
        pickle.dump(payload, file, protocol=5)
    with open(path, "rb") as file:
        return pickle.load(file)


def raw_round_trip(path: Path, payload: dict[str, Any]) -> bytearray:
    """The disk / page-cache bound: the buffers' bytes written and read back, no framing."""
    views = [memoryview(payload["tensor"].numpy()).cast("B"), memoryview(payload["array"])]
    with open(path, "wb") as file:
        for view in views:
            file.write(view)
    with open(path, "rb") as file:
        data = bytearray(os.fstat(file.fileno()).st_size)
        file.readinto(data)
    return data


def measure_load(workdir: Path, tensor_mb: int) -> dict[str, list[float]]:
    """Seconds to load one stored payload, checked, against reading its files' bytes;
    and seconds of crc32 and of sha256 over the tensor's bytes."""
    payload = make_payload(tensor_mb)
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


def run_child(mode: str, tensor_mb: int) -> dict[str, Any]:
    """Run one payload measurement in a fresh interpreter (so its ru_maxrss is its own)."""
    command = [sys.executable, __file__, "--only", mode, "--payload-mb", str(tensor_mb)]
    completed = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(completed.stdout.splitlines()[-1])


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
    print(
        row(
            "cached re-run: new Experiment, define + run()",
            cached,
            n,
            f"{ratio(cached, first):.2f}x first run; define is {ratio(define, cached):.0%}",
        )
    )
    print(row("Experiment.restore(slim=True)", restore, n))
    print(row(f'filter "tag:*" & "!other" ({hits} hits)', samples["filter"]))
    print(row("floor: write+read N JSON + N pickle files", samples["floor"], n))
    print(row("floor: N small files, write temp + rename", samples["atomic floor"], n))
    print(row("floor: read + parse one file of N records", samples["index floor"], n))
    print(row("floor: read + parse N record files", samples["files floor"], n))
    print("  targets (issue 13)                               value      floor  ratio  target")
    print(target("first run / atomic small files", first, samples["atomic floor"], "<= 1.5x"))
    print(target("define + cached re-run / define", cached, define, "<= 1.3x"))
    print(target("restore(slim) / one index read", restore, samples["index floor"], "<= 2x"))
    print(
        target(
            "N record files read / restore(slim)",
            samples["files floor"],
            restore,
            ">= 10x",
        )
    )
    print()


def target(label: str, value: list[float], floor: list[float], goal: str) -> str:
    """One target row: the measure, its floor, their ratio, and the issue's target."""
    value_s, floor_s = statistics.median(value), statistics.median(floor)
    return (
        f"  {label:<44} {duration(value_s):>10} {duration(floor_s):>10}"
        f" {value_s / floor_s:>5.2f}x  {goal}"
    )


def print_growth(measured: dict[int, dict[str, list[float]]]) -> None:
    """Per-state cost at each size, and against the smallest: flat means it scales."""
    sizes = sorted(measured)
    smallest = sizes[0]
    print("cost growth: per state at each size (x the smallest size's per-state cost)")
    print(f"  {'':<24}" + "".join(f"{n:>20}" for n in sizes))
    for name, label in (("first", "run 1"), ("cached", "cached re-run"), ("restore", "restore")):
        base = statistics.median(measured[smallest][name]) / smallest
        cells = []
        for n in sizes:
            per = statistics.median(measured[n][name]) / n
            cells.append(f"{per * 1e6:.0f} µs ({per / base:.2f}x)")
        print(f"  {label:<24}" + "".join(f"{cell:>20}" for cell in cells))
    print()


def print_payload(tensor_mb: int, run: dict[str, Any], floor: dict[str, Any]) -> None:
    size = payload_mb(tensor_mb)
    transition = [seconds / TRANSITIONS for seconds in run["chain"]]
    print(
        f"payload: {tensor_mb} MB float32 tensor + {tensor_mb // 4} MB numpy array "
        f"({size:.0f} MB), root -> {TRANSITIONS} in-place recipes"
    )
    print(HEADER)
    print(row("root init (initialize_state + write)", run["root"]))
    print(
        row(
            "transition (load parent + run + write child)",
            transition,
            None,
            f"{ratio(transition, floor['pickle']):.2f}x pickle floor, "
            f"{ratio(transition, floor['raw']):.2f}x raw floor",
        )
    )
    print(row("floor: pickle.dump + pickle.load (proto 5)", floor["pickle"]))
    print(row("floor: raw write + readinto of the buffers", floor["raw"]))
    print("  peak RSS growth (ru_maxrss in a fresh process, over its RSS after imports)")
    print(rss_line("dagger_wf: root init", run["baseline_mb"], run["peak_after_root_mb"], size))
    print(
        rss_line("dagger_wf: root init, then transitions", run["baseline_mb"], run["peak_mb"], size)
    )
    print(
        rss_line(
            "plain pickle: build, dump + load", floor["baseline_mb"], floor["peak_pickle_mb"], size
        )
    )
    print()


def print_load(tensor_mb: int, samples: dict[str, list[float]]) -> None:
    size = payload_mb(tensor_mb)
    load, floor = samples["load"], samples["floor"]
    print(f"verified load: {size:.0f} MB payload (tensor and array blobs), page-cached files")
    print(HEADER)
    print(
        row(
            "read_payload: read + crc32 check + unpickle",
            load,
            None,
            f"{ratio(load, floor):.2f}x floor",
        )
    )
    print(row("floor: readinto of the same files", floor))
    for name in ("crc32", "sha256"):
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


def rss_line(label: str, baseline: float, peak: float, size: float) -> str:
    growth = peak - baseline
    return f"    {label:<44} {growth:>8.0f} MB = {growth / size:.2f}x payload"


# ---------------------------------------------------------------- entry point


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="repeats of part 1 (fewer for 100000)"
    )
    parser.add_argument("--payload-mb", type=int, default=200, help="tensor size; array = 1/4")
    parser.add_argument(
        "--only",
        choices=["trivial", "load", "payload", "payload-floor"],
        help="trivial: part 1 alone; load: part 3 alone; payload / payload-floor: one "
        "payload measurement, printed as JSON (what the main run starts in a subprocess)",
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    children = {"payload": measure_payload_run, "payload-floor": measure_payload_floor}
    with tempfile.TemporaryDirectory(prefix="dagger_bench-") as workdir:
        if arguments.only in children:
            print(json.dumps(children[arguments.only](Path(workdir), arguments.payload_mb)))
            return
        print_machine()
        if arguments.only in (None, "trivial"):
            measured = {}
            for n in arguments.sizes:
                measured[n], hits = measure_trivial(Path(workdir), n, arguments.repeats)
                print_trivial(n, measured[n], hits)
            if len(measured) > 1:
                print_growth(measured)
        if arguments.only in (None, "load"):
            print_load(arguments.payload_mb, measure_load(Path(workdir), arguments.payload_mb))
    if arguments.only is None:
        run = run_child("payload", arguments.payload_mb)
        floor = run_child("payload-floor", arguments.payload_mb)
        print_payload(arguments.payload_mb, run, floor)


if __name__ == "__main__":
    main()
