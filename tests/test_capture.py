"""Capture of environment and code: what changed between a stored run and now."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from dagger_wf.errors import CorruptSnapshotError, SnapshotNotFoundError
from dagger_wf.store.snapshots import (
    load_snapshot,
    snapshot_path,
    store_snapshot,
)
from dagger_wf.tracking.code import capture_code, code_diff
from dagger_wf.tracking.environment import capture_environment, environment_diff

# ---------------------------------------------------------------- environment


def write_distribution(site: Path, name: str, version: str) -> Path:
    """An installed distribution as pip leaves it: a ``.dist-info`` folder with METADATA."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return info


def test_environment_diff_reports_an_upgraded_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    old_info = write_distribution(site, "fakepkg", "1.0")
    monkeypatch.syspath_prepend(site)
    old = capture_environment(refresh=True)

    shutil.rmtree(old_info)
    write_distribution(site, "fakepkg", "2.0")
    importlib.invalidate_caches()
    new = capture_environment(refresh=True)

    assert old["packages"]["fakepkg"] == "1.0"
    assert "package fakepkg: 1.0 -> 2.0" in environment_diff(old, new)


def test_environment_is_json_and_names_torch_without_importing_it(tmp_path):
    script = "import json, sys; from dagger_wf.tracking.environment import capture_environment\n"
    script += "environment = capture_environment()\n"
    script += "print(json.dumps([environment, 'torch' in sys.modules, 'numpy' in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    environment, torch_imported, numpy_imported = json.loads(result.stdout)
    assert environment["torch"] == importlib.metadata.version("torch")
    assert environment["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert environment["cuda_devices"] is None
    assert not torch_imported and not numpy_imported


def test_a_capture_changed_by_its_caller_does_not_change_the_next_one():
    first = capture_environment()
    first["packages"].clear()
    assert capture_environment()["packages"]


def git(repository: Path, *arguments: str) -> None:
    command = ["git", "-c", "user.name=x", "-c", "user.email=x@y", "-c", "commit.gpgsign=false"]
    subprocess.run([*command, *arguments], cwd=repository, check=True, capture_output=True)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository with one commit of ``train.py``."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repository = tmp_path / "repository"
    (repository / "outputs").mkdir(parents=True)
    (repository / "train.py").write_text("learning_rate = 0.1\n")
    git(repository, "init", "-q", "--initial-branch=main")
    git(repository, "add", "train.py")
    git(repository, "commit", "-q", "-m", "first")
    return repository


def test_uncommitted_edit_makes_the_work_tree_dirty_with_its_diff(repository, monkeypatch):
    monkeypatch.chdir(repository / "outputs")
    clean = capture_environment(refresh=True)
    (repository / "train.py").write_text("learning_rate = 0.2\n")
    dirty = capture_environment(refresh=True)

    assert clean["git"]["branch"] == "main" and len(clean["git"]["commit"]) == 40
    assert clean["git"]["dirty"] is False and clean["git"]["diff"] is None
    assert dirty["git"]["dirty"] is True
    assert "+learning_rate = 0.2" in dirty["git"]["diff"]
    assert environment_diff(clean, dirty) == ["git work tree: clean -> dirty"]


def test_untracked_outputs_leave_the_work_tree_clean(repository, monkeypatch):
    monkeypatch.chdir(repository)
    (repository / "outputs" / "state.json").write_text("{}")
    assert capture_environment(refresh=True)["git"]["dirty"] is False


def test_new_commit_is_reported(repository, monkeypatch):
    monkeypatch.chdir(repository)
    before = capture_environment(refresh=True)
    (repository / "train.py").write_text("learning_rate = 0.3\n")
    git(repository, "commit", "-q", "-am", "second")
    after = capture_environment(refresh=True)

    old_commit, new_commit = before["git"]["commit"][:12], after["git"]["commit"][:12]
    assert environment_diff(before, after) == [f"git commit: {old_commit} -> {new_commit}"]


def test_outside_a_git_work_tree_git_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert capture_environment(refresh=True)["git"] is None


def test_environment_diff_lists_each_change_and_summarises_the_git_diff():
    old = {
        "python": {"version": "3.11.7"},
        "packages": {"numpy": "2.0.0", "torch": "2.12.0", "gone": "1.0"},
        "git": {"commit": "a" * 40, "branch": "main", "dirty": True, "diff": "+lr = 1\n"},
    }
    new = {
        "python": {"version": "3.12.1"},
        "packages": {"numpy": "2.0.0", "torch": "2.13.0", "foo": "1.0"},
        "git": {"commit": "a" * 40, "branch": "main", "dirty": True, "diff": "+lr = 2\n"},
    }
    assert environment_diff(old, new) == [
        "python: 3.11.7 -> 3.12.1",
        "package foo: added (1.0)",
        "package gone: removed (was 1.0)",
        "package torch: 2.12.0 -> 2.13.0",
        "git diff changed",
    ]


def test_equal_environments_have_no_diff():
    environment = capture_environment()
    assert environment_diff(environment, capture_environment()) == []


# ---------------------------------------------------------------- snapshots


def test_equal_documents_are_stored_once(tmp_path):
    first = store_snapshot(tmp_path, "environment", {"python": "3.11", "packages": {"a": "1"}})
    second = store_snapshot(tmp_path, "environment", {"packages": {"a": "1"}, "python": "3.11"})
    assert first == second
    assert [path.name for path in (tmp_path / "environment").iterdir()] == [f"{first}.json"]
    assert load_snapshot(tmp_path, "environment", first) == {
        "python": "3.11",
        "packages": {"a": "1"},
    }


def test_truncated_snapshot_raises_corrupt_snapshot_error(tmp_path):
    snapshot_digest = store_snapshot(tmp_path, "code", {"recipe": "train.Train"})
    path = snapshot_path(tmp_path, "code", snapshot_digest)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(CorruptSnapshotError, match="Delete it"):
        load_snapshot(tmp_path, "code", snapshot_digest)


def test_edited_snapshot_raises_corrupt_snapshot_error(tmp_path):
    snapshot_digest = store_snapshot(tmp_path, "code", {"recipe": "train.Train"})
    snapshot_path(tmp_path, "code", snapshot_digest).write_text('{"recipe": "train.Other"}')
    with pytest.raises(ValueError, match="does not match its digest"):
        load_snapshot(tmp_path, "code", snapshot_digest)


def test_missing_snapshot_raises_snapshot_not_found_error(tmp_path):
    with pytest.raises(SnapshotNotFoundError, match="copy its code/ folder"):
        load_snapshot(tmp_path, "code", "0" * 64)
    assert issubclass(SnapshotNotFoundError, FileNotFoundError)


# ---------------------------------------------------------------- code

RECIPES = """\
def scale(value):
    return value * {factor}


class Train:
    def run(self, state):
        return scale(state)
"""


def import_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``path`` as the module named after it, as a user's recipe module is."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)
    spec.loader.exec_module(module)
    return module


def write_recipes(directory: Path, factor: int) -> Path:
    path = directory / "recipes.py"
    directory.mkdir()
    path.write_text(RECIPES.format(factor=factor))
    return path


def test_capture_code_keeps_the_recipe_and_its_module(tmp_path, monkeypatch):
    path = write_recipes(tmp_path / "v1", factor=2)
    module = import_file(path, monkeypatch)
    code = capture_code(module.Train)
    assert code["recipe"] == "recipes.Train" and code["module"] == "recipes"
    assert code["recipe_source"].startswith("class Train:\n")
    assert code["module_source"] == path.read_text()


def test_code_diff_shows_the_changed_helper_line(tmp_path, monkeypatch):
    stored = capture_code(import_file(write_recipes(tmp_path / "v1", 2), monkeypatch).Train)
    now = capture_code(import_file(write_recipes(tmp_path / "v2", 3), monkeypatch).Train)
    diff = code_diff(stored, now).splitlines()
    assert diff[:2] == ["--- recipes.Train (stored)", "+++ recipes.Train (now)"]
    assert "-    return value * 2" in diff and "+    return value * 3" in diff
    assert code_diff(stored, stored) == ""


def test_capture_code_of_a_script_run_as_main(tmp_path):
    script = tmp_path / "train_script.py"
    script.write_text(
        textwrap.dedent(
            """\
            import json
            from dagger_wf.tracking.code import capture_code

            class Train:
                pass

            print(json.dumps(capture_code(Train)))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    code = json.loads(result.stdout)
    assert code["recipe"] == "train_script.Train"
    assert code["recipe_source"] == "class Train:\n    pass\n"
    assert code["module_source"] == script.read_text()
