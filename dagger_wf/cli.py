"""The ``dagger-wf`` command: parses arguments, then calls the library.

Exit codes scripts can rely on: 0 success; 1 the experiment failed (a recipe or Function
raised; the traceback is printed), or ``verify`` found damage; 2 bad command line or input
(unknown parameter, override that does not parse, missing directory or key, a directory
that is not an experiment).
"""

from __future__ import annotations

import argparse
import runpy
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .dashboard.server import DEFAULT_PORT, LOOPBACK
from .errors import (
    CommandLineError,
    DaggerError,
    InvalidOverrideError,
    UnknownParameterError,
    UnusedOverridesError,
)
from .hashing import short_key
from .parameters import RUN_SCHEDULERS, ScriptCommandLine, parse_assignments, script_overrides
from .settings import DEFAULT_SNAKEFILE, RunSettings, run_session
from .store import ExperimentStore
from .version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _run_script(script: Path, script_arguments: Sequence[str]) -> None:
    """Run ``script`` as ``python script ...`` would; a nonzero exit of its own fails."""
    if not script.is_file():
        raise CommandLineError(f"no such script: {script}")
    saved_argv = sys.argv
    sys.argv = [str(script), *script_arguments]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise RuntimeError(f"{script} exited with {stop.code!r}") from stop
    finally:
        sys.argv = saved_argv


def _run(arguments: argparse.Namespace) -> int:
    """Run the user's script with typed overrides, a seed and a scheduler."""
    overrides = parse_assignments(arguments.overrides)
    line = ScriptCommandLine(overrides, arguments.seed, arguments.scheduler, arguments.check_purity)
    settings = RunSettings().asked_by(line)
    try:
        with run_session(settings), script_overrides(overrides) as used:
            _run_script(Path(arguments.script), [])
    except (UnknownParameterError, InvalidOverrideError, UnusedOverridesError, CommandLineError):
        raise
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    if overrides and not used:
        raise UnusedOverridesError(
            f"{arguments.script} never called dg.parameters(...), so {sorted(overrides)} "
            "cannot reach it; declare its parameters with params = dg.parameters(name=default)."
        )
    return EXIT_OK


def _snakefile(arguments: argparse.Namespace) -> int:
    """Run the user's script with exp.run() replaced by writing the Snakemake workflow."""
    settings = RunSettings(
        runner="snakemake",
        seed=arguments.seed,
        snakefile=Path(arguments.snakefile),
        max_group_size=arguments.group_size,
    )
    with run_session(settings) as session:
        _run_script(Path(arguments.script), arguments.script_arguments)
    if not session.reports:
        raise CommandLineError(
            f"{arguments.script} never called exp.run(), so there was no tree to write; "
            "run the script that defines and runs the experiment."
        )
    print(f"wrote {Path(arguments.snakefile).absolute()}")
    return EXIT_OK


def _store(directory: str) -> ExperimentStore:
    store = ExperimentStore(directory)
    store.read_experiment()  # NotAnExperimentError names the directory
    return store


# What `dagger-wf history` shows unless asked for more: it fits a 100-column terminal.
NARROW_COLUMNS = ("key", "parent", "recipe", "status", "tags", "duration_s")
NARROW_TAGS = 30  # characters of the tags column before it is cut with "…"


def _history(arguments: argparse.Namespace) -> int:
    from .tracking.history import history_frame

    frame = history_frame(_store(arguments.directory), include_superseded=arguments.superseded)
    columns = arguments.columns.split(",") if arguments.columns else None
    unknown = [column for column in columns or () if column not in frame.columns]
    if unknown:
        raise CommandLineError(
            f"No column {', '.join(map(repr, unknown))} in this history; its columns are "
            f"{', '.join(frame.columns)}."
        )
    if arguments.csv:
        frame[columns or frame.columns].to_csv(sys.stdout, index=False)
        return EXIT_OK
    if not len(frame):
        print("(no states)")
        return EXIT_OK
    shown = frame[columns or (frame.columns if arguments.wide else list(NARROW_COLUMNS))].copy()
    for column in ("key", "parent"):
        if column in shown:
            shown[column] = shown[column].map(
                lambda key: short_key(key) if isinstance(key, str) else ""
            )
    if not arguments.wide and "tags" in shown:
        shown["tags"] = shown["tags"].map(_cut)
    print(shown.to_string(index=False, max_colwidth=None if arguments.wide else 40))
    return EXIT_OK


def _cut(text: object) -> object:
    if isinstance(text, str) and len(text) > NARROW_TAGS:
        return text[: NARROW_TAGS - 1] + "…"
    return text


def _full_key(store: ExperimentStore, prefix: str) -> str:
    """The one stored key starting with ``prefix``."""
    keys = set(store.done_keys()) | store.failed_keys()
    matches = sorted(key for key in keys if key.startswith(prefix))
    if not matches:
        raise CommandLineError(
            f"No state of {store.directory} has a key starting with {prefix!r} "
            "(dagger-wf history lists them)."
        )
    if len(matches) > 1:
        raise CommandLineError(
            f"{len(matches)} states of {store.directory} have a key starting with {prefix!r} "
            f"({', '.join(short_key(key) for key in matches[:5])}); give a longer prefix."
        )
    return matches[0]


def _show(arguments: argparse.Namespace) -> int:
    from .tracking.report import show_state

    store = _store(arguments.directory)
    print(show_state(store, _full_key(store, arguments.key)))
    return EXIT_OK


def _diff(arguments: argparse.Namespace) -> int:
    from .tracking.report import diff_states

    store = _store(arguments.directory)
    first, second = (_full_key(store, key) for key in (arguments.first, arguments.second))
    print(diff_states(store, first, second))
    return EXIT_OK


def _gc(arguments: argparse.Namespace) -> int:
    from .store.gc import find_garbage, remove_garbage

    store = _store(arguments.directory)
    garbage = find_garbage(store, superseded=arguments.superseded)
    verb = "would remove" if arguments.dry_run else "removed"
    sizes = garbage.sizes()
    files = garbage.files if arguments.dry_run else remove_garbage(garbage)
    for path in files:
        print(f"{verb} {path}")
    kind = "superseded or unreachable" if arguments.superseded else "unreachable"
    print(
        f"{verb} {len(garbage.states)} {kind} state(s) and "
        f"{len(files)} file(s), {sum(sizes[path] for path in files) / 1e6:.1f} MB"
    )
    return EXIT_OK


def _verify(arguments: argparse.Namespace) -> int:
    from .store.verify import repair_store, verify_store

    store = _store(arguments.directory)
    report = verify_store(store)
    for key, error in sorted(report.damaged.items()):
        print(f"damaged {key}: {error.detail or error}")
    print(
        f"checked {report.checked_states} state(s) and {report.checked_blobs} blob(s): "
        f"{len(report.damaged)} damaged"
    )
    if arguments.repair and not report.clean:
        removed = repair_store(store, report)
        print(f"removed {len(removed)} damaged state(s); the next run computes them again")
    return EXIT_OK if report.clean else EXIT_FAILED


def _dashboard(arguments: argparse.Namespace) -> int:
    from .dashboard import serve

    serve(arguments.directory, arguments.host, arguments.port, arguments.open, block=True)
    return EXIT_OK


def _report(arguments: argparse.Namespace) -> int:
    from .dashboard import write_report

    print(f"wrote {write_report(arguments.directory, arguments.output).absolute()}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dagger-wf",
        description="Reproducible, branching ML experiments. Exit codes: 0 success, "
        "1 the experiment failed (or verify found damage), 2 bad command line or input.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, **kw: Any
    ) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text, **kw)
        command.set_defaults(handler=handler)
        return command

    run = add("run", _run, "run an experiment script with typed parameter overrides")
    run.add_argument("script", help="the experiment script (declares dg.parameters(...))")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. epochs=3 lr=0.01")
    run.add_argument("--seed", type=int, help="seed every state from this and its key")
    run.add_argument("--scheduler", choices=RUN_SCHEDULERS)
    run.add_argument(
        "--check-purity",
        action="store_true",
        help="after the run, run one state of each recipe twice more and warn if the bytes differ",
    )

    snakefile = add(
        "snakefile",
        _snakefile,
        "write the Snakemake workflow of an experiment script instead of running it; then "
        "run `snakemake --profile profiles/local` (or profiles/slurm) next to it",
    )
    snakefile.add_argument("script", help="the experiment script (it calls exp.run())")
    snakefile.add_argument(
        "script_arguments",
        nargs=argparse.REMAINDER,
        help="arguments for the script; put this command's own options before SCRIPT",
    )
    snakefile.add_argument(
        "--snakefile", default=str(DEFAULT_SNAKEFILE), help="where to write it (%(default)s)"
    )
    snakefile.add_argument("--group-size", type=int, help="states per cluster job at most")
    snakefile.add_argument("--seed", type=int, help="seed every state from this and its key")

    history = add("history", _history, "one row per attempt of every state, as a table")
    history.add_argument("directory", help="the experiment directory")
    history.add_argument("--csv", action="store_true", help="CSV on standard output")
    history.add_argument("--columns", help="comma-separated columns to show")
    history.add_argument(
        "--wide", action="store_true", help="every column, uncut (default: what fits 100 columns)"
    )
    history.add_argument(
        "--superseded",
        action="store_true",
        help="also the states outside the current tree (column current: False)",
    )

    show = add("show", _show, "one state: parameters, metrics, code, environment, error")
    show.add_argument("directory")
    show.add_argument("key", help="a key or a unique prefix of one")

    diff = add("diff", _diff, "two states side by side: parameters, code and environment")
    diff.add_argument("directory")
    diff.add_argument("first", help="a key or a unique prefix")
    diff.add_argument("second", help="a key or a unique prefix")

    gc = add("gc", _gc, "remove states no root reaches, unused blobs and snapshots")
    gc.add_argument("directory")
    gc.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    gc.add_argument(
        "--superseded",
        action="store_true",
        help="also remove the states outside the current tree (that the latest runs "
        "of the scripts no longer define); see the list with --dry-run first",
    )

    verify = add(
        "verify",
        _verify,
        "read every record, payload and blob and report the damaged states (exit 1 if any)",
    )
    verify.add_argument("directory")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="remove the damaged states (and damaged blobs): the next run computes them again",
    )

    dashboard = add(
        "dashboard",
        _dashboard,
        "serve a read-only web page of the experiment (tree, history, states, compare) "
        "that follows a run as it goes; Ctrl-C stops it",
    )
    dashboard.add_argument("directory")
    dashboard.add_argument(
        "--host",
        default=LOOPBACK,
        help="the address to listen on (%(default)s: this machine only; another address "
        "lets whoever reaches it read the experiment)",
    )
    dashboard.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="%(default)s; 0 picks a free one"
    )
    dashboard.add_argument("--open", action="store_true", help="open it in a web browser")

    report = add(
        "report",
        _report,
        "write the dashboard's views as one self-contained HTML file (opens with no server)",
    )
    report.add_argument("directory")
    report.add_argument(
        "-o", "--output", default="report.html", help="the file to write (%(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except DaggerError as error:
        print(f"dagger-wf: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. dagger-wf history DIR | head
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
