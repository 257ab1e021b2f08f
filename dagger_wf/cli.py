"""The ``dagger-wf`` command: parses arguments, then calls the library."""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

from .experiment import EMIT_INSTEAD_OF_RUN


def _snakefile(arguments: argparse.Namespace) -> int:
    """Run the user's script with exp.run() replaced by writing the Snakemake workflow."""
    script = Path(arguments.script)
    if not script.is_file():
        print(f"dagger-wf: no such script: {script}", file=sys.stderr)
        return 2
    request = {"snakefile": arguments.snakefile, "max_group_size": arguments.group_size}
    token = EMIT_INSTEAD_OF_RUN.set(request)
    saved_argv = sys.argv
    sys.argv = [str(script), *arguments.script_arguments]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv
        EMIT_INSTEAD_OF_RUN.reset(token)
    print(f"wrote {Path(arguments.snakefile).absolute()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dagger-wf", description="Reproducible, branching ML experiments."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    snakefile = commands.add_parser(
        "snakefile",
        help="write the Snakemake workflow of an experiment script instead of running it",
        description="Run SCRIPT with exp.run() replaced by writing a Snakefile; then run "
        "`snakemake --profile profiles/local` (or profiles/slurm) next to it.",
    )
    snakefile.add_argument("script", help="the experiment script (it calls exp.run())")
    snakefile.add_argument("script_arguments", nargs=argparse.REMAINDER)
    snakefile.add_argument("--snakefile", default="Snakefile", help="where to write it")
    snakefile.add_argument(
        "--group-size", type=int, default=None, help="states per cluster job at most (1: one each)"
    )
    snakefile.set_defaults(handler=_snakefile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    return arguments.handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
