"""Code and environment recorded per state, and the warnings when they change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
    assert rerun.stdout.strip() == "0" and "Warning" not in rerun.stderr


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
    record = tree.nodes_at_distance(1)[0].dagger.record
    environment = load_snapshot(tmp_path / "exp", "environments", record.environment)
    assert environment["git"]["dirty"] is True
    assert "+uncommitted line" in environment["git"]["diff"]
    code = load_snapshot(tmp_path / "exp", "code", record.code)
    assert "def helper(x):" in code["module_source"]


TOUR = textwrap.dedent(
    '''
    """Two recipes in one module, and helpers around them."""
    import sys
    import dagger_wf as dg


    def keep_count(weights, fraction):
        return int(len(weights) * (1 - fraction))


    def unused_helper():
        return 1


    class State(dg.ExperimentState):
        PROPERTIES = ["name"]
        NONHASHED_ATTRIBUTES = ["weights"]

        def initialize_state(self, **kwargs):
            self.weights = [1.0, 2.0, 3.0, 4.0]


    class Train(dg.Recipe):
        """Train."""

        PROPERTIES = ["lr"]

        def __init__(self, lr):
            self.lr = lr

        def run(self, state):
            state.weights = [w - self.lr for w in state.weights]
            return state


    class Prune(dg.Recipe):
        PROPERTIES = ["fraction"]

        def __init__(self, fraction):
            self.fraction = fraction

        def run(self, state):
            keep = keep_count(state.weights, self.fraction)
            state.weights = state.weights[:keep] + [0.0] * (len(state.weights) - keep)
            return state


    if __name__ == "__main__":
        exp = dg.Experiment(sys.argv[1], State)
        Prune(0.5)(Train(0.1)(exp.spawn_new_tree(name="n")))
        print(len(exp.run().ran))
    '''
)


def _tour(tmp_path, *edits: tuple[str, str]) -> subprocess.CompletedProcess:
    """Run ``TOUR`` as ``tour.py`` with each (old, new) edit applied to its text."""
    source = TOUR
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    (tmp_path / "tour.py").write_text(source)
    return subprocess.run(
        [sys.executable, "tour.py", str(tmp_path / "exp")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )


def test_editing_a_recipe_class_makes_a_new_key_and_warns_about_nothing(tmp_path):
    _tour(tmp_path)
    edited = _tour(tmp_path, ("[0.0] * (len", "[0.5] * (len"))
    assert edited.stdout.strip() == "1"  # only Prune's state
    assert "Warning" not in edited.stderr


def test_editing_a_helper_warns_about_the_recipe_using_it_with_its_diff_alone(tmp_path):
    _tour(tmp_path)
    edited = _tour(
        tmp_path,
        ("return int(len(weights)", "return round(len(weights)"),
        ("return 1\n", "return 2\n"),  # a helper no recipe uses
        ('"""Train."""', '"""Train the weights."""  # reworded'),
    )
    assert edited.stdout.strip() == "0"
    assert edited.stderr.count("CodeChangedWarning") == 1
    assert "Code that tour.Prune runs changed" in edited.stderr
    assert "tour.Train" not in edited.stderr
    diff = edited.stderr[edited.stderr.index("--- ") :].splitlines()
    assert diff[:2] == ["--- tour.keep_count (stored)", "+++ tour.keep_count (now)"]
    changed = [line for line in diff[2:] if line[:1] in "+-"]
    assert changed == [
        "-    return int(len(weights) * (1 - fraction))",
        "+    return round(len(weights) * (1 - fraction))",
    ]


def test_a_change_a_version_pin_hides_warns_with_the_class_diff(tmp_path):
    pinned = (
        '    PROPERTIES = ["fraction"]',
        '    PROPERTIES = ["fraction"]\n    VERSION = "1"',
    )
    _tour(tmp_path, pinned)
    edited = _tour(tmp_path, pinned, ("[0.0] * (len", "[0.5] * (len"))
    assert edited.stdout.strip() == "0"
    assert "Code that tour.Prune runs changed" in edited.stderr
    assert "--- tour.Prune (stored)" in edited.stderr
    assert "+        state.weights = state.weights[:keep] + [0.5]" in edited.stderr
    assert "tour.keep_count" not in edited.stderr


def test_a_snakemake_run_warns_about_the_environment_its_jobs_ran_in(tmp_path):
    old_packages = _fake_distribution(tmp_path / "v1", "1.0")
    _run(tmp_path, "1", 1, old_packages)
    emitted = _run(tmp_path, "1", 2, old_packages, emit=True)
    assert "Warning" not in emitted.stderr  # here, the environment is the stored one
    profile = str(Path(__file__).parent.parent / "profiles" / "local")
    jobs_path = _fake_distribution(tmp_path / "v2", "2.0")
    workflow = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", profile],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": jobs_path},
        timeout=300,
    )
    assert workflow.returncode == 0, workflow.stderr
    output = workflow.stdout + workflow.stderr
    assert "EnvironmentChangedWarning" in output
    assert "package fakepkg: 1.0 -> 2.0" in output
