"""Where code runs: machine, Python, installed packages, git work tree, conda env, GPUs.

A result can change with nothing in the experiment changing: a package upgrade, a new
Python, an uncommitted edit. :func:`capture_environment` records these cheaply (a few tens
of milliseconds, then cached) without importing numpy or torch, and
:func:`environment_diff` says in a few lines what differs between two captures.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import logging
import os
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENVIRONMENT_FORMAT = "dagger_wf.environment/1"
GIT_TIMEOUT_SECONDS = 5.0
_CAPTURING = threading.Lock()  # threads that ask at once get one capture


def capture_environment(*, refresh: bool = False) -> dict[str, Any]:
    """A JSON-serialisable description of the machine and software this process runs on.

    Cached per process, working directory and whether torch is imported, since package
    versions and hardware do not change under a running process; pass ``refresh=True``
    to capture again after changing ``sys.path`` or the git work tree (uncommitted edits
    are otherwise seen only by the next process). The caller gets its own copy to mutate.
    """
    with _CAPTURING:
        if refresh:
            _cached_environment.cache_clear()
        captured = _cached_environment(os.getcwd(), "torch" in sys.modules)
    return copy.deepcopy(captured)


@functools.cache
def _cached_environment(working_directory: str, torch_imported: bool) -> dict[str, Any]:
    packages = _installed_packages()
    return {
        "format": ENVIRONMENT_FORMAT,
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": packages,
        "numpy": packages.get("numpy"),
        "torch": packages.get("torch"),
        "cuda_devices": _cuda_devices() if torch_imported else None,
        "git": _git_work_tree(Path(working_directory)),
        "conda": _conda_environment(),
    }


def _installed_packages() -> dict[str, str]:
    """Normalised distribution name → version, sorted, as importing would find them.

    Read from the installed metadata (nothing is imported); where ``sys.path`` holds a
    distribution twice, the first one wins, as it does for ``import``.
    """
    packages: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name, version = _name_and_version(distribution)
        if name:  # a broken .dist-info folder has no name
            packages.setdefault(_normalised_name(name), version)
    return dict(sorted(packages.items()))


def _name_and_version(distribution: importlib.metadata.Distribution) -> tuple[str, str]:
    """The ``Name`` and ``Version`` fields of a distribution's metadata header, read as
    text: ``distribution.metadata`` parses the whole file as an e-mail (long description
    included), 5x slower, and every first run in a process waits for it."""
    text = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line:  # the header ends at the first blank line
            break
        field, _, value = line.partition(":")
        if field in ("Name", "Version"):
            fields.setdefault(field, value.strip())
    return fields.get("Name", ""), fields.get("Version", "")


def _normalised_name(name: str) -> str:
    """PEP 503: ``Typing_Extensions`` and ``typing-extensions`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:  # not Linux
        pass
    return platform.processor()


def _cuda_devices() -> list[str]:
    """GPU names as torch sees them (honouring ``CUDA_VISIBLE_DEVICES``).

    Asked only once the user imported torch (importing it costs seconds), and only once
    CUDA is initialised: reading a name would otherwise initialise it here, which breaks
    fork-started children that use CUDA.
    """
    torch = sys.modules["torch"]
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]


def _conda_environment() -> dict[str, str | None] | None:
    name, prefix = os.environ.get("CONDA_DEFAULT_ENV"), os.environ.get("CONDA_PREFIX")
    if name is None and prefix is None:
        return None
    return {"name": name, "prefix": prefix}


def _git_work_tree(directory: Path) -> dict[str, Any] | None:
    """Commit, branch and uncommitted changes of the git work tree holding ``directory``.

    ``None`` outside a work tree or without git. Untracked files do not make the tree
    dirty: experiment outputs written inside a repository would otherwise make every run
    after the first look dirty.
    """
    status = _run_git(directory, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return None
    headers = {}
    dirty = False
    for line in status.splitlines():
        if line.startswith("# "):
            key, _, value = line[2:].partition(" ")
            headers[key] = value
        else:
            dirty = True
    commit = None if headers.get("branch.oid") == "(initial)" else headers.get("branch.oid")
    branch = None if headers.get("branch.head") == "(detached)" else headers.get("branch.head")
    return {
        "commit": commit,
        "branch": branch,
        "dirty": dirty,
        "diff": _run_git(directory, "diff", "--no-color", "--no-ext-diff", "HEAD")
        if dirty and commit
        else None,
    }


def _run_git(directory: Path, *arguments: str) -> str | None:
    """Output of a read-only git command, or ``None`` where git cannot answer.

    ``--no-optional-locks`` keeps ``git status`` from taking the index lock, so capturing
    never collides with the user's own git commands.
    """
    command = ["git", "--no-optional-locks", *arguments]
    try:
        result = subprocess.run(
            command,
            cwd=directory,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=GIT_TIMEOUT_SECONDS,
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:  # git is not installed
        return None
    except subprocess.TimeoutExpired:
        logger.warning("%s took over %s s; git state not recorded", command, GIT_TIMEOUT_SECONDS)
        return None
    if result.returncode != 0:
        if "not a git repository" not in result.stderr:  # e.g. git's "dubious ownership"
            logger.warning("%s failed; git state not recorded: %s", command, result.stderr.strip())
        return None
    return result.stdout


# ---------------------------------------------------------------- differences

_COMPARED_FIELDS: dict[str, tuple[str, ...]] = {
    "os": ("platform", "system"),
    "os release": ("platform", "release"),
    "machine": ("platform", "machine"),
    "cpu": ("cpu", "model"),
    "cpu count": ("cpu", "count"),
    "python": ("python", "version"),
    "python implementation": ("python", "implementation"),
    "python executable": ("python", "executable"),
    "conda env": ("conda", "name"),
}


def environment_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per difference that may change results, e.g. ``package torch: 2.12 -> 2.13``.

    Empty when nothing relevant changed. numpy and torch appear once, as packages. GPUs
    are compared only when both captures know them (torch was imported). The text of an
    uncommitted git diff is summarised as ``git diff changed``.
    """
    lines = []
    for label, path in _COMPARED_FIELDS.items():
        before, after = _lookup(old, path), _lookup(new, path)
        if before != after:
            lines.append(f"{label}: {_shown(before)} -> {_shown(after)}")
    old_gpus, new_gpus = old.get("cuda_devices"), new.get("cuda_devices")
    if old_gpus is not None and new_gpus is not None and old_gpus != new_gpus:
        lines.append(f"cuda devices: {_shown(old_gpus)} -> {_shown(new_gpus)}")
    lines += _package_diff(old.get("packages") or {}, new.get("packages") or {})
    lines += _git_diff(old.get("git"), new.get("git"))
    return lines


def _lookup(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _package_diff(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            lines.append(f"package {name}: added ({new[name]})")
        elif name not in new:
            lines.append(f"package {name}: removed (was {old[name]})")
        elif old[name] != new[name]:
            lines.append(f"package {name}: {old[name]} -> {new[name]}")
    return lines


def _git_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    if old is None and new is None:
        return []
    if old is None or new is None:
        return [f"git work tree: {git_summary(old)} -> {git_summary(new)}"]
    lines = []
    if old.get("commit") != new.get("commit"):
        before, after = _short_commit(old.get("commit")), _short_commit(new.get("commit"))
        lines.append(f"git commit: {before} -> {after}")
    if old.get("branch") != new.get("branch"):
        lines.append(f"git branch: {_shown(old.get('branch'))} -> {_shown(new.get('branch'))}")
    if old.get("dirty") != new.get("dirty"):
        lines.append(f"git work tree: {_cleanliness(old)} -> {_cleanliness(new)}")
    elif old.get("dirty") and old.get("diff") != new.get("diff"):
        lines.append("git diff changed")
    return lines


def _short_commit(commit: str | None) -> str:
    return commit[:12] if commit else "none"


def _cleanliness(work_tree: dict[str, Any]) -> str:
    return "dirty" if work_tree.get("dirty") else "clean"


def git_summary(work_tree: dict[str, Any] | None) -> str:
    """One line for a captured git work tree: its commit (if any yet) and cleanliness."""
    if work_tree is None:
        return "none"
    return f"commit {_short_commit(work_tree.get('commit'))} ({_cleanliness(work_tree)})"
