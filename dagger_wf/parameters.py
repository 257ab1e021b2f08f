"""Script parameters that the command line overrides, however the script is started.

A script declares its parameters with defaults, ``params = dg.parameters(epochs=8,
lr=0.1)``; command-line overrides are parsed as YAML scalars and lists and must fit the
default's type, so ``epochs=3`` is an int, ``lr=1e-3`` a float, ``augment=false`` a bool
and ``lrs=[0.1,0.01]`` a list. ``dagger-wf run SCRIPT key=value --seed N`` hands them
over; ``python SCRIPT key=value --seed N`` means the same, read by ``dg.parameters()``
from ``sys.argv`` when that command line holds nothing else (a script with arguments of
its own, read by its own argparse, is left alone). Every check happens when the script
asks for its parameters, before it computes anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import (
    CommandLineError,
    DuplicateOverrideError,
    InvalidOverrideError,
    MixedArgumentsError,
    UnknownParameterError,
    UnusedOverridesError,
)

RUN_SCHEDULERS = ("single-threaded", "threads", "processes")  # what a command line may name


@dataclasses.dataclass(frozen=True)
class ScriptCommandLine:
    """What ``python SCRIPT ...`` asks, read as ``dagger-wf run SCRIPT ...`` reads it."""

    overrides: dict[str, str]
    seed: int | None = None
    scheduler: str | None = None
    check_purity: bool = False


# Set by ``dagger-wf run`` for the whole process (the script's threads too): overrides as
# given ("key" -> "text"), and a list that records each time they were asked for.
_overrides: dict[str, str] | None = None
_used: list[bool] | None = None
# Set by ``parameters()`` when it read ``python SCRIPT ...``'s own command line; the
# process's too, since that command line is.
_command_line: ScriptCommandLine | None = None


def parse_assignments(assignments: Sequence[str]) -> dict[str, str]:
    """``["epochs=3", "lr=0.1"]`` as ``{"epochs": "3", "lr": "0.1"}``; a key given twice
    is an error, not a silent last-one-wins."""
    overrides: dict[str, str] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator or not key.isidentifier():
            raise InvalidOverrideError(
                f"Override {assignment!r} is not key=value (e.g. epochs=3, lr=0.01)."
            )
        if key in overrides:
            raise DuplicateOverrideError(
                f"Parameter {key} is given twice ({key}={overrides[key]} and {assignment}); "
                "give each parameter once."
            )
        overrides[key] = text
    return overrides


def parse_command_line(arguments: Sequence[str]) -> ScriptCommandLine | None:
    """``arguments`` as ``dagger-wf run`` reads what follows its SCRIPT: ``key=value``
    overrides, ``--seed N``, ``--scheduler NAME``, ``--check-purity``. ``None`` when
    some argument is none of these (they belong to the script's own argparse); values
    are checked only once every argument is known to be one of them."""
    assignments: list[str] = []
    options: dict[str, str | None] = {}
    check_purity = False
    remaining = list(arguments)
    while remaining:
        argument = remaining.pop(0)
        name, separator, value = argument.partition("=")
        if argument == "--check-purity":
            check_purity = True
        elif name in ("--seed", "--scheduler"):
            options[name] = value if separator else (remaining.pop(0) if remaining else None)
        elif not argument.startswith("-") and separator and name.strip().isidentifier():
            assignments.append(argument)
        else:
            return None
    seed, scheduler = options.get("--seed", ""), options.get("--scheduler", "")
    return ScriptCommandLine(
        parse_assignments(assignments),
        seed=None if seed == "" else _seed(seed),
        scheduler=None if scheduler == "" else _scheduler(scheduler),
        check_purity=check_purity,
    )


def _seed(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise CommandLineError(f"--seed {text or ''!r} is not an integer; e.g. --seed 3.") from None


def _scheduler(name: str | None) -> str:
    if name not in RUN_SCHEDULERS:
        raise CommandLineError(f"--scheduler {name or ''!r} is not one of {list(RUN_SCHEDULERS)}.")
    return name


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(key: str, text: str, default: Any) -> Any:
    """``text`` as a value of the default's type, by explicit rules: ints in base 10,
    floats as Python writes them (``1e-3``), bools as true/false, lists as YAML flow
    lists whose items fit the type of the default's first item."""
    expected = type(default)
    try:
        if default is None:
            return yaml.safe_load(text)
        if expected is str:
            return text
        if expected is bool:
            word = text.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError("not true or false")
            return word in _TRUE
        if expected in (int, float):
            return expected(text.strip())
        if expected in (list, tuple):
            items = yaml.safe_load(text)
            if not isinstance(items, list):
                raise ValueError("not a list such as [0.1, 0.01]")
            if default:
                items = [
                    parse_value(f"{key}[{index}]", str(item), default[0])
                    for index, item in enumerate(items)
                ]
            return expected(items)
    except (ValueError, yaml.YAMLError) as error:
        raise InvalidOverrideError(
            f"Override {key}={text!r} does not fit {key}, a {expected.__name__} (default "
            f"{default!r}): {error}."
        ) from None
    raise InvalidOverrideError(
        f"Parameter {key} has a default of type {expected.__name__}, which the command line "
        "cannot set; use a str, int, float, bool or list default."
    )


def script_command_line() -> ScriptCommandLine | None:
    """What the script's own command line asked (``python SCRIPT ... --seed 3``), once
    ``parameters()`` has read it; ``None`` if it has not, or there was nothing to read."""
    return _command_line


def check_overrides_used() -> None:
    """Refuse to compute anything for a script that never asked for the overrides it
    was given: by ``dagger-wf run``, or on its own command line."""
    if _overrides is not None:
        if _overrides and _used == []:
            raise UnusedOverridesError(
                f"Overrides {sorted(_overrides)} were given, but the script computes its "
                "experiment without calling dg.parameters(...); declare its parameters "
                "with params = dg.parameters(name=default) before defining the tree."
            )
        return
    if _command_line is None and _runs_as_script():
        line = _read_own_command_line()
        if line is not None and line.overrides:
            raise UnusedOverridesError(
                f"{Path(sys.argv[0]).name} got overrides {sorted(line.overrides)}, but it "
                "computes its experiment without calling dg.parameters(...), so they "
                "would be ignored; declare its parameters with params = "
                "dg.parameters(name=default) before defining the tree."
            )


def parameters(**defaults: Any) -> types.SimpleNamespace:
    """The script's parameters: ``defaults``, with the command line's overrides applied
    (``dagger-wf run SCRIPT key=value`` or ``python SCRIPT key=value``).

    Checked here, before the script does any work: an unknown or repeated key, a value
    that does not fit its default's type.
    """
    overrides = _overrides if _overrides is not None else _own_overrides(defaults)
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise UnknownParameterError(
            f"Unknown parameter {unknown[0]!r}; this script's parameters are {sorted(defaults)}."
        )
    if _used is not None:
        _used.append(True)
    values = dict(defaults)
    values.update({key: parse_value(key, text, defaults[key]) for key, text in overrides.items()})
    return types.SimpleNamespace(**values)


def _own_overrides(defaults: dict[str, Any]) -> dict[str, str]:
    """The overrides on ``python SCRIPT ...``'s own command line, remembering the rest
    of it (seed, scheduler) for the script's ``exp.run()``."""
    global _command_line
    if not _runs_as_script():
        return {}
    line = _read_own_command_line()
    if line is None:
        given = [argument for argument in sys.argv[1:] if argument.partition("=")[0] in defaults]
        if given:
            raise MixedArgumentsError(
                f"{Path(sys.argv[0]).name} got the overrides {given} among arguments that "
                "dg.parameters() does not read (only key=value, --seed, --scheduler and "
                "--check-purity); run it as `dagger-wf run "
                f"{sys.argv[0]} {' '.join(given)}`, or read all its arguments with your "
                "own argparse."
            )
        line = ScriptCommandLine({})
    _command_line = line
    return line.overrides


def _runs_as_script() -> bool:
    """Whether this process runs a script file (``python SCRIPT``, ``dagger-wf
    snakefile SCRIPT``): a cluster job or a notebook has a command line of its own."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main_file or not sys.argv or not sys.argv[0]:
        return False
    return Path(main_file).resolve() == Path(sys.argv[0]).resolve()


def _read_own_command_line() -> ScriptCommandLine | None:
    return parse_command_line(sys.argv[1:])


@contextlib.contextmanager
def script_overrides(overrides: dict[str, str]) -> Iterator[list[bool]]:
    """Within the block, ``parameters()`` applies ``overrides``; the list it yields gets
    an entry each time the script asks for its parameters."""
    global _overrides, _used
    outer = _overrides, _used
    _overrides, _used = overrides, []
    try:
        yield _used
    finally:
        _overrides, _used = outer
