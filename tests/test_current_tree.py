"""The current tree: after an edit and a rerun, restore, history, the CLI and the
example's analysis show what the latest definitions define; superseded states stay
stored until ``gc --superseded``, and reverting the edit brings them back, computed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TESTS_DIR
from trees import State, Train

import dagger_wf as dg
from dagger_wf.store import ExperimentStore
from dagger_wf.store.gc import find_garbage, remove_garbage

ROOT = Path(__file__).parent.parent
TRAIN_LINE = "state.weights = [w - self.lr * self.nb_epochs for w in state.weights]"
EDITED_LINE = "state.weights = [w - 2 * self.lr * self.nb_epochs for w in state.weights]"


def _python(arguments: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _tour(tmp_path: Path, source: str) -> str:
    """Run the README's tour (its first Python block) as the script ``tour.py``."""
    script = tmp_path / "tour.py"
    script.write_text(source)
    return _python([str(script)], tmp_path)


def _tour_source() -> str:
    readme = (ROOT / "README.md").read_text()
    source = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)[0]
    assert TRAIN_LINE in source
    return source


def _keys(tree: dg.StaticExperimentTree) -> set[str]:
    return set(tree.node_map)


@pytest.fixture
def edited_tour(tmp_path):
    """The tour run, then run again with Train.run() edited: (directory, first keys,
    keys after the edit, what the edited run printed)."""
    source = _tour_source()
    _tour(tmp_path, source)
    directory = tmp_path / "runs" / "tour"
    first = _keys(dg.Experiment.restore(directory).graph)
    printed = _tour(tmp_path, source.replace(TRAIN_LINE, EDITED_LINE))
    edited = _keys(dg.Experiment.restore(directory).graph)
    return directory, first, edited, printed


def test_after_an_edit_the_tree_holds_the_new_states_only(edited_tour):
    directory, first, edited, printed = edited_tour
    assert "4 states computed, 1 cached" in printed.splitlines()
    assert len(edited) == 5 and first & edited == {dg.Experiment.restore(directory).root.sha()}
    tree = dg.Experiment.restore(directory).graph
    selected = tree.nodes.filter("pruned") & tree.nodes.filter("lr:0.1")
    assert len(selected) == 1
    selected[0].restore()
    assert selected[0].weights == pytest.approx([0.4, 1.4, 0.0, 0.0])  # 3 epochs at 2 x 0.1
    assert tree.superseded == first - edited


def test_superseded_states_are_reachable_on_purpose(edited_tour, tmp_path):
    directory, first, edited, _ = edited_tour
    everything = dg.Experiment.restore(directory, include_superseded=True).graph
    assert _keys(everything) == first | edited
    history = dg.Experiment.restore(directory).history(include_superseded=True)
    assert dict(zip(history["key"], history["current"], strict=True)) == {
        key: key in edited for key in first | edited
    }
    assert set(dg.Experiment.restore(directory).history()["key"]) == edited
    svg = everything.draw(tmp_path / "all.svg").read_text()
    assert svg.count("superseded") == 4
    assert (
        "superseded"
        not in dg.Experiment.restore(directory).graph.draw(tmp_path / "now.svg").read_text()
    )


def test_reverting_the_edit_makes_the_old_states_current_computing_nothing(edited_tour, tmp_path):
    directory, first, edited, _ = edited_tour
    printed = _tour(tmp_path, _tour_source())
    assert "0 states computed, 5 cached" in printed.splitlines()
    tree = dg.Experiment.restore(directory).graph
    assert _keys(tree) == first
    assert tree.superseded == edited - first


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def _listed(output: str) -> list[Path]:
    return [
        Path(line.split(" ", 2)[-1])
        for line in output.splitlines()
        if line.startswith(("would remove /", "removed /"))
    ]


def test_gc_superseded_removes_exactly_the_superseded_states(edited_tour):
    directory, first, edited, _ = edited_tour
    assert _listed(_cli("gc", str(directory), "--dry-run").stdout) == []  # all reachable
    listed = _listed(_cli("gc", str(directory), "--superseded", "--dry-run").stdout)
    old = first - edited
    assert {path.stem for path in listed if path.parent.name == "states"} == old
    assert {path.stem for path in listed if path.parent.name == "payloads"} == old
    removed = _listed(_cli("gc", str(directory), "--superseded").stdout)
    assert removed == listed
    assert all(not path.exists() for path in removed)
    restored = dg.Experiment.restore(directory, slim=False, include_superseded=True)
    assert _keys(restored.graph) == edited and restored.graph.superseded == set()
    assert all(node.weights is not None for node in restored.graph.nodes)
    assert _listed(_cli("gc", str(directory), "--superseded", "--dry-run").stdout) == []


def test_the_cli_history_shows_the_current_tree_unless_asked(edited_tour):
    directory, first, edited, _ = edited_tour
    current = _cli("history", str(directory), "--csv").stdout
    every = _cli("history", str(directory), "--csv", "--superseded").stdout
    assert len(current.splitlines()) == 1 + len(edited)
    assert len(every.splitlines()) == 1 + len(first | edited)
    assert all(key[:12] not in current for key in first - edited)


EXTENSION = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS_DIR)!r})
    import dagger_wf as dg
    from trees import Prune, State, Train

    exp = dg.Experiment(sys.argv[1], State)
    trained = Train(2, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    for fraction in [float(value) for value in sys.argv[2:]]:
        with exp.tag(f"{{__file__}}:{{fraction}}"):
            Prune("magnitude", fraction)(trained)
    exp.run()
    """
)


def test_scripts_extending_one_experiment_keep_each_others_branches_current(tmp_path):
    directory = str(tmp_path / "store")
    for name in ("first.py", "second.py"):
        (tmp_path / name).write_text(EXTENSION)
    _python(["first.py", directory, "0.5"], tmp_path)
    _python(["second.py", directory, "0.8", "0.9"], tmp_path)
    _python(["first.py", directory, "0.5"], tmp_path)  # a rerun: the second's stay
    tree = dg.Experiment.restore(directory).graph
    assert {tag.rsplit("/", 1)[-1] for node in tree.nodes for tag in node.tags} == {
        "first.py:0.5",
        "second.py:0.8",
        "second.py:0.9",
    }
    _python(["second.py", directory, "0.9"], tmp_path)  # drops its 0.8 branch
    tree = dg.Experiment.restore(directory).graph
    assert len(tree) == 4 and len(tree.superseded) == 1
    assert len(tree.nodes.filter("*second.py:0.8")) == 0


SHARED_STEP = """
import dagger_wf as dg


class Scale(dg.Recipe):
    PROPERTIES = ["factor"]

    def __init__(self, factor):
        self.factor = factor

    def run(self, state):
        state.weights = [weight * self.factor for weight in state.weights]
        return state
"""

USES_SHARED_STEP = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS_DIR)!r})
    sys.path.insert(0, ".")
    import dagger_wf as dg
    from shared import Scale
    from trees import Prune, State

    exp = dg.Experiment(sys.argv[1], State)
    scaled = Scale(2)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with exp.tag(__file__.rsplit("/", 1)[-1]):
        Prune("magnitude", float(sys.argv[2]))(scaled)
    exp.run()
    """
)


def test_a_shared_recipe_edited_by_one_script_supersedes_the_old_version_in_all(tmp_path):
    directory = str(tmp_path / "store")
    (tmp_path / "shared.py").write_text(SHARED_STEP)
    for name in ("first.py", "second.py"):
        (tmp_path / name).write_text(USES_SHARED_STEP)
    _python(["first.py", directory, "0.5"], tmp_path)
    _python(["second.py", directory, "0.75"], tmp_path)
    (tmp_path / "shared.py").write_text(SHARED_STEP.replace("weight * self.factor", "weight + 1"))
    _python(["first.py", directory, "0.5"], tmp_path)
    tree = dg.Experiment.restore(directory).graph
    # the second script's branch hangs from the old Scale: superseded until it reruns
    assert [sorted(node.tags) for node in tree.leaves()] == [["first.py"]]
    assert len(tree.superseded) == 3
    _python(["second.py", directory, "0.75"], tmp_path)
    tree = dg.Experiment.restore(directory).graph
    assert sorted(tag for node in tree.leaves() for tag in node.tags) == ["first.py", "second.py"]
    assert len(tree) == 4


@pytest.mark.slow
def test_the_example_rerun_with_other_epochs_analyses_the_new_results_only(tmp_path):
    script = str(ROOT / "examples" / "lottery_ticket.py")
    analyse = str(ROOT / "examples" / "analyse_lottery.py")
    short = ["--finetune-epochs", "1", "--scheduler", "single-threaded"]
    _python([script, "--directory", "rerun", "--epochs", "1", *short], tmp_path)
    _python([script, "--directory", "rerun", "--epochs", "4", *short], tmp_path)
    _python([script, "--directory", "fresh", "--epochs", "4", *short], tmp_path)
    rerun = _python([analyse, "--directory", "rerun"], tmp_path)
    fresh = _python([analyse, "--directory", "fresh"], tmp_path)
    assert rerun.split("wrote")[0] == fresh.split("wrote")[0]
    assert (tmp_path / "rerun" / "tree.svg").read_text().count('<g id="node') == 97
    # every state but the root and the three Initialise ones has a new key
    assert len(dg.Experiment.restore(tmp_path / "rerun").graph.superseded) == 97 - 4


def test_a_truncated_state_in_the_example_store_is_computed_again_and_the_analysis_holds(
    tmp_path,
):
    script = str(ROOT / "examples" / "lottery_ticket.py")
    analyse = str(ROOT / "examples" / "analyse_lottery.py")
    small = ["--epochs", "1", "--finetune-epochs", "1", "--scheduler", "single-threaded"]
    _python([script, "--directory", "store", *small], tmp_path)
    expected = _python([analyse, "--directory", "store"], tmp_path).split("wrote")[0]
    trained = next(
        node
        for node in dg.Experiment.restore(tmp_path / "store").graph.nodes
        if node.recipe is not None and node.recipe.class_name == "Train"
    )
    record = tmp_path / "store" / "states" / f"{trained.sha()}.json"
    record.write_bytes(record.read_bytes()[:50])
    rerun = subprocess.run(
        [sys.executable, script, "--directory", "store", *small],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "CorruptStateWarning" in rerun.stderr and trained.sha()[:12] in rerun.stderr
    assert "1 states computed, 96 cached" in rerun.stdout
    assert _python([analyse, "--directory", "store"], tmp_path).split("wrote")[0] == expected


def test_runs_named_apart_keep_their_branches_and_a_rerun_of_one_name_replaces_its_own(
    experiment_dir,
):
    def run(definition: str, nb_epochs: int, lr: float) -> str:
        exp = dg.Experiment(experiment_dir, State, definition=definition)
        trained = Train(nb_epochs, lr)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        exp.run()
        return trained.key

    first, second = run("lr=0.1", 1, 0.1), run("lr=0.01", 1, 0.01)
    assert set(dg.Experiment.restore(experiment_dir).graph.node_map) > {first, second}
    longer = run("lr=0.1", 2, 0.1)
    tree = dg.Experiment.restore(experiment_dir).graph
    assert {first, second, longer} & set(tree.node_map) == {second, longer}
    assert tree.superseded == {first}


def test_a_store_without_definitions_counts_the_latest_computed_version_as_current(
    edited_tour,
):
    """Stores written before definitions existed: every state is defined, and of two
    code versions of one step the one computed last is current."""
    directory, _, edited, _ = edited_tour
    shutil.rmtree(directory / "definitions")
    assert set(dg.Experiment.restore(directory).graph.node_map) == edited


def test_gc_superseded_removes_nothing_if_a_run_redefined_the_tree_since_it_looked(
    experiment_dir,
):
    def run(nb_epochs: int) -> None:
        exp = dg.Experiment(experiment_dir, State, definition="tree")
        Train(nb_epochs, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        exp.run()

    run(1)
    run(2)
    garbage = find_garbage(ExperimentStore(experiment_dir), superseded=True)
    assert len(garbage.states) == 1
    run(1)  # the state gc found superseded is current again
    files = {path for path in experiment_dir.rglob("*") if path.is_file()}
    with pytest.raises(dg.TreeRedefinedError):
        remove_garbage(garbage)
    assert {path for path in experiment_dir.rglob("*") if path.is_file()} == files


def test_steps_extending_a_restored_tree_add_to_the_current_tree(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    trained = Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    restored = dg.Experiment.restore(experiment_dir)
    extra = Train(2, 0.5)(restored.graph.node(trained.key).to_promise())
    restored.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    assert {trained.key, extra.key} <= set(tree.node_map) and tree.superseded == set()
