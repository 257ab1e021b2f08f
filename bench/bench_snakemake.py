"""Snakemake costs of dagger_wf, each printed next to a bare workflow measured in the same run.

Part 1: emitting the workflow of N trivial states (root -> 10 chains). Part 2: ``snakemake
-n`` on our workflow against a bare one-rule workflow with as many flat targets (also
with our garbage collector setting), and against a bare workflow with our chains but
no groups (what the chains alone cost).
Part 3: N' trivial states computed locally, fused in the Snakemake process (our
workflow, profiles/local) against one shell job per state, and against the same job
function called in a loop without Snakemake. Part 4 (``--slurm``): the example tree on
the SLURM cluster of shared/services/slurm, with and without grouping.

Timings are medians of 3 repeats (SLURM runs: once) and never asserted: these machines
are shared and noisy. Run from the repository root: ``python bench/bench_snakemake.py
[--states 10000] [--trivial 1000] [--slurm]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import itertools
import json
import math
import os
import platform
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_core import HEADER, REPEATS, duration, ratio, row, timed
from trivial import Counter, Step

import dagger_wf as dg
from dagger_wf.runners.snakemake import DAG_GC_THRESHOLDS
from dagger_wf.runners.snakemake_job import compute_state_job

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "profiles"
EXAMPLE = ROOT / "examples" / "lottery_ticket.py"
EXAMPLE_ARGUMENTS = ["--epochs", "2", "--finetune-epochs", "1"]
BRANCHES = 10
EMIT_TARGET_S = 1.0
DRY_RUN_TARGET = 1.3
FUSED_TARGET = 5.0
QUEUE_WAIT_S = 300
QUEUE_POLL_S = 10
PROFILE_ENTRIES = 10
SNAKEMAKE_PACKAGES = ["snakemake", "snakemake-executor-plugin-slurm"]


# ---------------------------------------------------------------- experiment trees


def chain_lengths(n: int, branches: int) -> list[int]:
    """Chain lengths of ``branches`` chains so that the tree has ``n`` states, root included."""
    base, extra = divmod(n - 1, branches)
    return [base + (branch < extra) for branch in range(branches)]


def define_tree(directory: Path, n: int, branches: int) -> dg.Experiment:
    """Root -> ``branches`` chains of Step, each Step with its own index (a unique key)."""
    exp = dg.Experiment(directory, state_class=Counter)
    root = exp.spawn_new_tree(name="bench")
    indices = itertools.count(1)
    for length in chain_lengths(n, branches):
        state = root
        for _ in range(length):
            state = Step(next(indices))(state)
    return exp


def shape(n: int, branches: int) -> str:
    return f"{branches} chains of {max(chain_lengths(n, branches))}"


def depth(n: int, branches: int) -> int:
    """States on the longest path, root included."""
    return max(chain_lengths(n, branches)) + 1


def emit(directory: Path, n: int, branches: int) -> Path:
    """Our workflow for a fresh tree: the Snakefile in ``directory``, the store below it."""
    return define_tree(directory / "store", n, branches).emit_snakefile(directory / "Snakefile")


# ---------------------------------------------------------------- bare workflows


def write_snakefile(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    snakefile = directory / "Snakefile"
    snakefile.write_text(text)
    return snakefile


# What templates/Snakefile.j2 does to Python's garbage collector while Snakemake builds
# its DAG; the bare flat workflow is also measured with it, to show what it alone buys.
RARE_COLLECTIONS = f"import gc\ngc.freeze()\ngc.set_threshold{DAG_GC_THRESHOLDS}\n\n"


def flat_workflow(directory: Path, n: int, *, rare_collections: bool = False) -> Path:
    """The floor: one rule, ``n`` independent targets, nothing read, no groups."""
    return write_snakefile(
        directory,
        (RARE_COLLECTIONS if rare_collections else "") + f"rule all:\n"
        f'    input: expand("out/{{i}}.txt", i=range({n}))\n\n'
        f"rule make:\n"
        f'    output: "out/{{i}}.txt"\n'
        f'    shell: "touch {{output}}"\n',
    )


MANIFEST_PROLOGUE = """\
import json
import sys

workdir: {store}

with open("workflow/manifest.json") as _manifest_file:
    _MANIFEST = json.load(_manifest_file)
_STATES = _MANIFEST["states"]
# As ours does: Snakemake walks the chain of parents recursively.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * {depth} + 1000))

wildcard_constraints:
    key="[0-9a-f]{{64}}",


def _parent(wildcards, prefix, suffix):
    parent = _STATES[wildcards.key]["parent"]
    return [f"{{prefix}}{{parent}}{{suffix}}"] if parent else []

"""


def prologue(store: Path, depth: int) -> str:
    return MANIFEST_PROLOGUE.format(store=json.dumps(str(store)), depth=depth)


def chained_workflow(directory: Path, store: Path, depth: int) -> Path:
    """Our DAG (the store's manifest: every state a target, same parents) as ``touch`` jobs,
    no groups. Against it, ours shows what the template adds; against the flat one, what
    the chains add.
    """
    return write_snakefile(
        directory,
        prologue(store, depth) + 'rule all:\n    input: expand("bare/{key}.done", key=_STATES)\n\n'
        "rule make:\n"
        '    input: lambda wildcards: _parent(wildcards, "bare/", ".done")\n'
        '    output: "bare/{key}.done"\n'
        '    shell: "touch {output}"\n',
    )


def shell_workflow(directory: Path, store: Path, depth: int) -> Path:
    """One shell job per state: a fresh interpreter runs ``compute_state_job`` for it.

    It reads the manifest and specs our emission wrote into ``store`` and computes the
    same states into it; only the rule's body differs from ours (and it has no groups).
    """
    code = (
        "from dagger_wf.runners.snakemake_job import compute_state_job; "
        f"compute_state_job({str(store)!r}, '{{wildcards.key}}', '{{output}}')"
    )
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    return write_snakefile(
        directory,
        prologue(store, depth)
        + 'rule all:\n    input: expand("states/{key}.json", key=_STATES)\n\n'
        "rule state:\n"
        '    input: lambda wildcards: _parent(wildcards, "states/", ".json")\n'
        '    output: "states/{key}.json"\n'
        f"    shell: {json.dumps(command)}\n",
    )


# ---------------------------------------------------------------- running snakemake


@dataclasses.dataclass
class Outcome:
    """Seconds of each successful repeat, or why the first attempt failed."""

    samples: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None


class SnakemakeFailed(RuntimeError):
    """A snakemake run exited non-zero; the message is the first error line of its log."""

    def __init__(self, output: str, seconds: float) -> None:
        super().__init__(first_error(output))
        self.output, self.seconds = output, seconds


def first_error(output: str) -> str:
    """The first ``SomeError: message`` (or ``SomeError in file ...``, how Snakemake names a
    failing rule's error) line: Snakemake wraps them in a bare ``WorkflowError:``."""
    error = re.search(r"\b\w+(Error|Exception)(: \S.*| in file .*\n.*)", output)
    if error:
        return error.group(0).replace("\n", " ")
    lines = output.strip().splitlines()
    return lines[-1] if lines else "no output"


def snakemake(
    snakefile: Path, *arguments: str, profile_to: Path | None = None
) -> tuple[float, str]:
    """Wall time and output of ``python -m snakemake``, run next to the Snakefile as a user
    runs it; the output goes to a log file there, never to the table."""
    profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to else []
    command = [sys.executable, *profiler, "-m", "snakemake", "--snakefile", str(snakefile)]
    log = snakefile.with_suffix(".log")
    with open(log, "w") as file:
        start = time.perf_counter()
        completed = subprocess.run(
            [*command, *arguments], cwd=snakefile.parent, stdout=file, stderr=subprocess.STDOUT
        )
        seconds = time.perf_counter() - start
    output = log.read_text()
    if completed.returncode != 0:
        raise SnakemakeFailed(output, seconds)
    return seconds, output


def repeated(snakefile: Path, *arguments: str) -> Outcome:
    """Three runs; a failing first run is reported, not repeated (it fails the same way)."""
    outcome = Outcome()
    for _ in range(REPEATS):
        try:
            outcome.samples.append(snakemake(snakefile, *arguments)[0])
        except SnakemakeFailed as error:
            outcome.error = str(error)
            break
    return outcome


DRY_RUN = ("-n", "--cores", "1", "--quiet")


def measure_emission(workdir: Path, n: int) -> list[float]:
    """Seconds of ``exp.emit_snakefile`` on a freshly defined tree (so it is a first emit)."""
    samples = []
    for repeat in range(REPEATS):
        directory = workdir / f"emit-{repeat}"
        exp = define_tree(directory / "store", n, BRANCHES)
        samples.append(timed(functools.partial(exp.emit_snakefile, directory / "Snakefile"))[0])
        shutil.rmtree(directory)
    return samples


def shapes(n: int) -> list[int]:
    """Chain counts: the emission tree's 10 long chains, then shallower trees of ``n``."""
    return sorted({BRANCHES, math.isqrt(n), max(n // 10, 1)})


def measure_dry_runs(workdir: Path, n: int) -> dict[str, Outcome]:
    """Flat floor once; ours and the bare chains for each tree shape, in fresh stores."""
    outcomes = {
        "flat": repeated(flat_workflow(workdir / "flat", n), *DRY_RUN),
        "flat-gc": repeated(flat_workflow(workdir / "flat-gc", n, rare_collections=True), *DRY_RUN),
    }
    for branches in shapes(n):
        ours = emit(workdir / f"ours-{branches}", n, branches)
        store = ours.parent / "store"
        chained = chained_workflow(workdir / f"chained-{branches}", store, depth(n, branches))
        outcomes[f"ours-{branches}"] = repeated(ours, *DRY_RUN)
        outcomes[f"chained-{branches}"] = repeated(chained, *DRY_RUN)
    return outcomes


def profile_dry_run(workdir: Path, branches: int) -> pstats.Stats:
    """One dry run of ours under cProfile (the workflow measured in part 2)."""
    snakefile = workdir / f"ours-{branches}" / "Snakefile"
    profile = workdir / "dry-run.prof"
    snakemake(snakefile, *DRY_RUN, profile_to=profile)
    return pstats.Stats(str(profile))


def local_run(snakefile: Path, store: Path, n: int) -> float:
    """Seconds of a local run; raises unless it left all ``n`` states in ``store``."""
    seconds, _ = snakemake(snakefile, "--profile", str(PROFILES / "local"), "--cores", "2")
    computed = len(list((store / "states").glob("*.json")))
    if computed != n:
        raise RuntimeError(f"{snakefile} computed {computed} states, not {n}")
    return seconds


def job_floor(directory: Path, n: int) -> float:
    """Seconds of ``compute_state_job`` (what each rule calls) on every state in plan order,
    in this process: the work both workflows do, without Snakemake around it."""
    exp = define_tree(directory / "store", n, BRANCHES)
    exp.emit_snakefile(directory / "Snakefile")
    start = time.perf_counter()
    targets = directory / "store" / "workflow" / "targets"  # what the rules touch
    for key in exp.plan.states:
        compute_state_job(directory / "store", key, str(targets / key))
    seconds = time.perf_counter() - start
    shutil.rmtree(directory)
    return seconds


def measure_local(workdir: Path, n: int) -> dict[str, list[float]]:
    """Ours (fused) and one shell job per state, alternating, each from an empty store;
    and the floor, the same jobs called in a loop."""
    samples: dict[str, list[float]] = {"fused": [], "shell": [], "floor": []}
    for repeat in range(REPEATS):
        samples["floor"].append(job_floor(workdir / f"floor-{repeat}", n))
        fused = emit(workdir / f"fused-{repeat}", n, BRANCHES)
        samples["fused"].append(local_run(fused, fused.parent / "store", n))
        store = emit(workdir / f"shell-{repeat}", n, BRANCHES).parent / "store"
        shell = shell_workflow(store.parent / "shell", store, depth(n, BRANCHES))
        samples["shell"].append(local_run(shell, store, n))
        shutil.rmtree(fused.parent)
        shutil.rmtree(store.parent)
    return samples


# ---------------------------------------------------------------- SLURM


@dataclasses.dataclass(frozen=True)
class SlurmRun:
    """What one workflow run on the cluster cost."""

    seconds: float
    submitted: int  # "submitted with SLURM jobid" lines in snakemake's output
    accounted: int  # jobs sacct knows under this run's job name since it started
    states: int
    error: str | None  # the first error of a failed run; its figures are then no cost


def slurm_answers() -> bool:
    """Whether the cluster of shared/services/slurm/start.sh is up (sinfo answers)."""
    return subprocess.run(["sinfo"], capture_output=True).returncode == 0


def queue_is_empty() -> bool:
    return not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()


def wait_for_idle_cluster() -> str | None:
    """Others share the cluster (their tests may even restart it): start once it answers
    and its queue is empty. Returns why not, after QUEUE_WAIT_S."""
    deadline = time.monotonic() + QUEUE_WAIT_S
    while not (slurm_answers() and queue_is_empty()):
        if time.monotonic() >= deadline:
            if not slurm_answers():
                return "sinfo does not answer (start shared/services/slurm)"
            return f"the queue was not empty after {QUEUE_WAIT_S} s"
        time.sleep(QUEUE_POLL_S)
    return None


def emit_example(directory: Path, group_size: int | None) -> Path:
    """The example's workflow, emitted as a user would: ``dagger-wf snakefile``."""
    directory.mkdir(parents=True)
    snakefile = directory / "Snakefile"
    size = ["--group-size", str(group_size)] if group_size else []
    command = [sys.executable, "-m", "dagger_wf.cli", "snakefile", "--snakefile", str(snakefile)]
    arguments = [str(EXAMPLE), "--directory", str(directory / "store"), *EXAMPLE_ARGUMENTS]
    subprocess.run([*command, *size, *arguments], cwd=directory, check=True, capture_output=True)
    return snakefile


def slurm_run(snakefile: Path) -> SlurmRun:
    """One run with profiles/slurm; submissions counted in its log and, as a check, in sacct
    (jobs since the start named with this run's SLURM run ID, so others' jobs don't count)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    error = None
    try:
        seconds, output = snakemake(snakefile, "--profile", str(PROFILES / "slurm"))
    except SnakemakeFailed as failure:
        seconds, output, error = failure.seconds, failure.output, str(failure)
    run_id = re.search(r"SLURM run ID: (\S+)", output)
    sacct = ["sacct", "-X", "-n", "-S", start, "-o", "JobID"]
    if run_id:
        sacct.append(f"--name={run_id.group(1)}")
    accounted = subprocess.run(sacct, capture_output=True, text=True, check=True).stdout.split()
    return SlurmRun(
        seconds,
        len(re.findall(r"submitted with SLURM jobid", output)),
        len(accounted),
        len(list((snakefile.parent / "store" / "states").glob("*.json"))),
        error,
    )


def measure_slurm(workdir: Path) -> dict[str, SlurmRun]:
    """The example tree with default grouping, then one job per state; once each."""
    return {
        "grouped": slurm_run(emit_example(workdir / "grouped", None)),
        "single": slurm_run(emit_example(workdir / "single", 1)),
    }


# ---------------------------------------------------------------- reporting


def outcome_row(label: str, outcome: Outcome, n: int, note: str = "") -> str:
    if outcome.error:
        return f"  {label:<46} fails: {outcome.error}"
    return row(label, outcome.samples, n, note)


def target(met: bool) -> str:
    return "met" if met else "NOT met"


def print_machine() -> None:
    versions = {name: importlib.metadata.version(name) for name in SNAKEMAKE_PACKAGES}
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}\n"
        f"python {platform.python_version()}, "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + f", dagger_wf {dg.__version__}\n"
        f"each figure: median of {REPEATS} repeats, range = (max - min) / median; "
        "ratios compare medians of this run\n"
    )


def print_emission(n: int, samples: list[float]) -> None:
    median = statistics.median(samples)
    print(f"Part 1: emission, {n} trivial states ({shape(n, BRANCHES)}), fresh tree each time")
    print(HEADER)
    note = f"target < {EMIT_TARGET_S:.0f} s: {target(median < EMIT_TARGET_S)}"
    print(row("exp.emit_snakefile(path)", samples, n, note))
    print()


def print_dry_runs(n: int, outcomes: dict[str, Outcome]) -> int | None:
    """The table; returns the chain count of ours with the worst ratio over the target."""
    flat, flat_gc = outcomes["flat"], outcomes["flat-gc"]
    print(f"Part 2: dry run (snakemake {' '.join(DRY_RUN)}), {n} states, empty store")
    print(HEADER)
    print(outcome_row(f"bare: 1 rule, {n} flat targets", flat, n))
    print(outcome_row("bare flat, collecting garbage as ours does", flat_gc, n))
    worst: tuple[float, int] | None = None
    for branches in shapes(n):
        ours, chained = outcomes[f"ours-{branches}"], outcomes[f"chained-{branches}"]
        print(f"  {shape(n, branches)} (depth {depth(n, branches)}):")
        note = ""
        if ours.samples and flat.samples:
            over_flat = ratio(ours.samples, flat.samples)
            note = f"{over_flat:.2f}x flat; target <= {DRY_RUN_TARGET}x: "
            note += target(over_flat <= DRY_RUN_TARGET)
            if flat_gc.samples:
                note += f"; {ratio(ours.samples, flat_gc.samples):.2f}x flat collecting as ours"
            if over_flat > DRY_RUN_TARGET and (worst is None or over_flat > worst[0]):
                worst = (over_flat, branches)
        print(outcome_row("  ours (emitted workflow)", ours, n, note))
        note = ""
        if ours.samples and chained.samples:
            note = f"ours = {ratio(ours.samples, chained.samples):.2f}x this"
        print(outcome_row("  bare: same chains, 1 touch rule, no groups", chained, n, note))
    print()
    return worst[1] if worst else None


Function = tuple[str, int, str]  # pstats' key: file, line, name


def location(function: Function) -> str:
    """``snakemake/dag.py:1855 dfs`` rather than the whole path; builtins by name."""
    file, line, name = function
    if file == "~":
        return name
    short = file.split("site-packages/")[-1] if "site-packages/" in file else Path(file).name
    return f"{short}:{line} {name}"


def main_caller(function: Function, entries: dict[Function, tuple[Any, ...]]) -> str:
    """The caller that spent the most time in ``function`` (recursion aside), with the
    share of the whole run spent under that caller."""
    callers = {caller: edge for caller, edge in entries[function][4].items() if caller != function}
    if not callers:
        return ""
    caller = max(callers, key=lambda caller: callers[caller][3])
    total = max(data[3] for data in entries.values())
    return f"{location(caller)} ({entries[caller][3] / total:.0%} under it)"


def print_profile(stats: pstats.Stats, snakefile: Path, branches: int, n: int) -> None:
    """The functions with the most time of their own, each with the caller it serves, then
    the Snakefile's own code (module: settings, manifest; its input and group functions)."""
    entries: dict[Function, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = max(data[3] for data in entries.values())
    heaviest = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)
    print(
        f"  where ours spends its dry run ({shape(n, branches)}): one run under cProfile, "
        f"{duration(total)} there; functions by time of their own"
    )
    print(f"    {'own':>10} {'share':>5} {'cumulative':>10} {'calls':>9}  function  <- main caller")
    for function, (_, calls, own, cumulative, _) in heaviest[:PROFILE_ENTRIES]:
        print(
            f"    {duration(own):>10} {own / total:>5.0%} {duration(cumulative):>10} {calls:>9}"
            f"  {location(function)}  <- {main_caller(function, entries)}"
        )
    own_code = [(name, data) for (file, _, name), data in entries.items() if file == str(snakefile)]
    seconds = sum(data[3] if name == "<module>" else data[2] for name, data in own_code)
    names = ", ".join(sorted(name for name, _ in own_code))
    print(f"    the Snakefile's own code ({names}): {duration(seconds)} = {seconds / total:.1%}")
    print()


def print_local(n: int, samples: dict[str, list[float]]) -> None:
    fused, shell, floor = samples["fused"], samples["shell"], samples["floor"]
    speedup = ratio(shell, fused)
    met = speedup >= FUSED_TARGET
    print(
        f"Part 3: local run, {n} trivial states ({shape(n, BRANCHES)}) from an empty store, "
        "--profile profiles/local --cores 2"
    )
    print(HEADER)
    note = f"{speedup:.1f}x faster; target >= {FUSED_TARGET:.0f}x: "
    print(row("ours: fused, run: in the Snakemake process", fused, n, note + target(met)))
    print(row("one shell job per state (python -c ...)", shell, n))
    note = f"ours = {ratio(fused, floor):.1f}x this"
    print(row("floor: compute_state_job loop, no Snakemake", floor, n, note))
    print()


def print_slurm(runs: dict[str, SlurmRun]) -> None:
    grouped, single = runs["grouped"], runs["single"]
    print(
        f"Part 4: SLURM, examples/lottery_ticket.py {' '.join(EXAMPLE_ARGUMENTS)}, "
        "--profile profiles/slurm; each variant run ONCE, not 3 times (SLURM runs are slow)"
    )
    print(f"  {'':<44} {'sbatch (log / sacct)':>20} {'states':>7} {'wall':>10}")
    for label, run in [
        ("grouped (default emit_snakefile)", grouped),
        ("one job per state (max_group_size=1)", single),
    ]:
        counts = f"{run.submitted} / {run.accounted}"
        print(f"  {label:<44} {counts:>20} {run.states:>7} {duration(run.seconds):>10}")
        if run.error:
            print(f"    FAILED: {run.error}")
    if grouped.error or single.error:
        print("  no ratio: a failed run's figures measure its failure\n")
        return
    print(
        f"  grouping: {single.submitted / max(grouped.submitted, 1):.1f}x fewer submissions, "
        f"{single.seconds / grouped.seconds:.2f}x faster"
    )
    print()


# ---------------------------------------------------------------- entry point


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--states", type=int, default=10000, help="parts 1 and 2")
    parser.add_argument("--trivial", type=int, default=1000, help="part 3")
    parser.add_argument("--slurm", action="store_true", help="part 4: needs a SLURM cluster")
    return parser.parse_args()


def run_slurm_part(workdir: Path) -> None:
    if shutil.which("sinfo") is None:
        print("Part 4: SLURM skipped: no sinfo here, so no SLURM cluster")
        return
    skipped = wait_for_idle_cluster()
    if skipped:
        print(f"Part 4: SLURM skipped: {skipped}")
        return
    print_slurm(measure_slurm(workdir))


def main() -> None:
    arguments = parse_arguments()
    print_machine()
    with tempfile.TemporaryDirectory(prefix="dagger_bench_snakemake-") as name:
        workdir = Path(name)
        print_emission(arguments.states, measure_emission(workdir, arguments.states))
        outcomes = measure_dry_runs(workdir, arguments.states)
        worst = print_dry_runs(arguments.states, outcomes)
        if worst is not None:
            snakefile = workdir / f"ours-{worst}" / "Snakefile"
            print_profile(profile_dry_run(workdir, worst), snakefile, worst, arguments.states)
        print_local(arguments.trivial, measure_local(workdir, arguments.trivial))
        if arguments.slurm:
            run_slurm_part(workdir)


if __name__ == "__main__":
    main()
