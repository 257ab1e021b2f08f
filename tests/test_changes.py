"""Code and environment recorded per state, and the warnings when they change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import dagger_wf as dg
from dagger_wf.store.snapshots import load_snapshot

SCRIPT = textwrap.dedent(
    """
    import sys
    import dagger_wf as dg

    def helper(x):
        return x + HELPER_VALUE

    class State(dg.ExperimentState):
        PROPERTIES = ["name"]
        NONHASHED_ATTRIBUTES = ["value"]
        def initialize_state(self, **kwargs):
            self.value = 0

    class Step(dg.Recipe):
        PROPERTIES = ["index"]
        def __init__(self, index):
            self.index = index
        def run(self, state):
            state.value = helper(state.value) + RUN_OFFSET
            return state

    if __name__ == "__main__":
        exp = dg.Experiment(sys.argv[1], State)
        promise = exp.spawn_new_tree(name="n")
        for index in range(int(sys.argv[2])):
            promise = Step(index)(promise)
        print(len(exp.run().ran))
    """
)


def _run(
    tmp_path,
    helper_value: str,
    steps: int,
    extra_path: str = "",
    run_offset: str = "0",
    emit: bool = False,
    edit: tuple[str, str] = ("", ""),
) -> subprocess.CompletedProcess:
    """Run the script above with its helper returning ``x + helper_value`` and ``run()``
    adding ``run_offset`` (an edit of the recipe class itself), and ``edit`` (old, new)
    applied to its text; with ``emit``, through ``dagger-wf snakefile``, which emits a
    workflow instead of running."""
    script = tmp_path / "experiment.py"
    source = SCRIPT.replace("HELPER_VALUE", helper_value).replace("RUN_OFFSET", run_offset)
    source = source.replace(*edit)
    script.write_text(source)
    environment = {**os.environ, "PYTHONPATH": extra_path}
    emitting = ["-m", "dagger_wf.cli", "snakefile"] if emit else []
    return subprocess.run(
        [sys.executable, *emitting, str(script), str(tmp_path / "exp"), str(steps)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=environment,
    )


def test_editing_run_makes_a_new_state_and_keeps_the_old_one(tmp_path):
    ran = [_run(tmp_path, "1", 1, run_offset=offset).stdout.strip() for offset in "001"]
    assert ran == ["2", "0", "1"]  # root and step; nothing; only the edited step
    assert len(list((tmp_path / "exp" / "states").glob("*.json"))) == 3


def test_documenting_a_recipe_recomputes_nothing(tmp_path):
    documented = (
        "class Step(dg.Recipe):\n",
        'class Step(dg.Recipe):\n    """One step."""\n\n',
    )
    _run(tmp_path, "1", 2)
    assert _run(tmp_path, "1", 2, edit=documented).stdout.strip() == "0"
    run_documented = ("def run(self, state):\n", 'def run(self, state):\n        """Add."""\n')
    rerun = _run(tmp_path, "1", 2, edit=run_documented)
    assert rerun.stdout.strip() == "0"


def test_a_helper_edited_between_runs_warns_with_a_diff(tmp_path):
    _run(tmp_path, "1", 2)
    second = _run(tmp_path, "2", 2)
    assert second.stdout.strip() == "0"  # the recipe class did not change: all cached
    assert "CodeChangedWarning" in second.stderr
    assert "-    return x + 1" in second.stderr and "+    return x + 2" in second.stderr


def test_emitting_a_workflow_gives_the_warnings_a_run_would(tmp_path):
    _run(tmp_path, "1", 2)
    assert "Warning" not in _run(tmp_path, "1", 3, emit=True).stderr
    emitted = _run(tmp_path, "2", 3, emit=True)
    assert "CodeChangedWarning" in emitted.stderr and "+    return x + 2" in emitted.stderr


def test_an_unchanged_rerun_warns_about_nothing(tmp_path):
    _run(tmp_path, "1", 2)
    assert "Warning" not in _run(tmp_path, "1", 3).stderr


def _fake_distribution(directory, version: str) -> str:
    info = directory / f"fakepkg-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
    return str(directory)


def test_extending_states_made_with_other_package_versions_warns_with_the_change(tmp_path):
    _run(tmp_path, "1", 1, _fake_distribution(tmp_path / "v1", "1.0"))
    extended = _run(tmp_path, "1", 2, _fake_distribution(tmp_path / "v2", "2.0"))
    assert extended.stdout.strip() == "1"
    assert "EnvironmentChangedWarning" in extended.stderr
    assert "package fakepkg: 1.0 -> 2.0" in extended.stderr


def test_each_state_records_the_git_commit_and_dirty_work_tree_it_ran_in(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "notes.txt").write_text("first\n")
    subprocess.run([*git, "add", "notes.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=tmp_path, check=True)
    (tmp_path / "notes.txt").write_text("first\nuncommitted line\n")
    _run(tmp_path, "1", 1)
    tree = dg.Experiment.restore(tmp_path / "exp").graph
    record = tree.nodes_at_distance(1)[0].record
    environment = load_snapshot(tmp_path / "exp", "environments", record.environment)
    assert environment["git"]["dirty"] is True
    assert "+uncommitted line" in environment["git"]["diff"]
    code = load_snapshot(tmp_path / "exp", "code", record.code)
    assert "def helper(x):" in code["module_source"]
