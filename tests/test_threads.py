"""Threads of one process sharing one Experiment: defining, tagging and running at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import TESTS_DIR
from trees import State, Visit

import dagger_wf as dg
from dagger_wf.store import ExperimentStore
from dagger_wf.tracking.seeding import seed_from_key


def _in_threads(count, target):
    """Run ``target(index)`` in ``count`` threads at once; what each returned or raised."""
    results: dict[int, object] = {}
    start = threading.Barrier(count)

    def work(index):
        start.wait()
        try:
            results[index] = target(index)
        except BaseException as error:  # the outcome under test
            results[index] = error

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[index] for index in range(count)]


@pytest.fixture
def visits(tmp_path, monkeypatch):
    """The file Visit writes a line to each time it computes a state."""
    path = tmp_path / "visits.txt"
    path.touch()
    monkeypatch.setenv("DAGGER_TEST_VISITS", str(path))
    return path


def test_200_threads_defining_and_running_on_one_experiment_compute_each_state_once(
    experiment_dir, visits
):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")

    def define_and_run(index):
        time.sleep(index % 20 * 0.005)  # some define while others run
        with exp.tag(f"thread:{index}"):
            branch = Visit(0, index)(root)
            leaf = Visit(0, "leaf")(branch)
        return (branch.key, leaf.key), exp.run()

    outcomes = _in_threads(200, define_and_run)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert errors == []
    own = {index: keys for index, (keys, _) in enumerate(outcomes)}
    every_key = [key for keys in own.values() for key in keys]
    assert sorted(visits.read_text().split()) == sorted(every_key)  # each computed once
    assert all(set(keys) <= report.ran | report.cached for keys, report in outcomes)
    store = ExperimentStore(experiment_dir)
    assert all(store.is_done(key) for key in [root.key, *every_key])
    tree = dg.Experiment.restore(experiment_dir).graph
    assert len(tree) == 401 and tree.node(root.key).tags == []
    assert all(tree.node(key).tags == [f"thread:{i}"] for i, keys in own.items() for key in keys)


def test_a_thread_defining_while_another_runs_gets_its_own_states_run_and_tagged(
    experiment_dir, visits
):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    with exp.tag("first"):
        first = [Visit(0.2, branch)(root) for branch in range(4)]
    first_run = {}
    running = threading.Thread(target=lambda: first_run.setdefault("report", exp.run()))
    running.start()
    deadline = time.monotonic() + 60
    while not visits.read_text() and time.monotonic() < deadline:  # the run is under way
        time.sleep(0.01)
    with exp.tag("second"):
        second = Visit(0, "second")(first[0])
    second_report = exp.run()
    running.join()
    assert second.key not in first_run["report"].ran
    assert second_report.ran == {second.key}
    computed = visits.read_text().split()
    assert sorted(computed) == sorted([*(promise.key for promise in first), second.key])
    tree = dg.Experiment.restore(experiment_dir).graph
    assert [tree.node(promise.key).tags for promise in first] == [["first"]] * 4
    assert tree.node(second.key).tags == ["second"]


def test_two_threads_spawning_a_root_on_one_experiment_get_one_root_and_a_named_error(
    experiment_dir,
):
    exp = dg.Experiment(experiment_dir, State)
    outcomes = _in_threads(
        2, lambda index: exp.spawn_new_tree(dataset_name=f"d{index}", model_name="m")
    )
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], dg.TreeAlreadySpawnedError)
    assert "one Experiment per root" in str(errors[0])
    (promise,) = [outcome for outcome in outcomes if outcome is not errors[0]]
    assert exp.root is not None and exp.root.sha() == promise.key
    assert list(exp.plan.states) == [promise.key]


def test_threads_with_an_experiment_each_on_one_directory_compute_shared_states_once(
    experiment_dir, visits
):
    def spawn_own_and_run(index):
        exp = dg.Experiment(experiment_dir, State)
        root = exp.spawn_new_tree(dataset_name=f"d{index % 10}", model_name="m")
        with exp.tag(f"thread:{index}"):
            return Visit(0, "shared")(root).key, exp.run()

    outcomes = _in_threads(50, spawn_own_and_run)
    assert [outcome for outcome in outcomes if isinstance(outcome, BaseException)] == []
    computed = visits.read_text().split()
    assert len(computed) == len(set(computed)) == 10
    tree = dg.Experiment.restore(experiment_dir).graph
    assert len(tree.root_keys) == 10 and len(tree) == 20
    expected: dict[str, set[str]] = {}
    for index, (key, _) in enumerate(outcomes):
        expected.setdefault(key, set()).add(f"thread:{index}")
    assert {key: set(tree.node(key).tags) for key in expected} == expected


RUNNING: dict[str, dg.Experiment] = {}


class RunsItsOwnExperiment(dg.Recipe):
    """Calls exp.run() from inside the run that computes it."""

    def run(self, state):
        RUNNING["exp"].run()
        return state


@pytest.mark.parametrize("scheduler", ["single-threaded", "threads"])
def test_exp_run_inside_a_recipe_raises_a_named_error_instead_of_waiting_forever(
    experiment_dir, scheduler
):
    exp = RUNNING["exp"] = dg.Experiment(experiment_dir, State)
    RunsItsOwnExperiment()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(dg.NestedRunError, match=r"exp\.run\(\) was called inside a recipe"):
        exp.run(scheduler=scheduler)


THREADED_SCRIPT = textwrap.dedent(
    f"""
    import sys, threading
    sys.path.insert(0, {str(TESTS_DIR)!r})
    import dagger_wf as dg
    from trees import State, Train

    def define_and_run():
        params = dg.parameters(epochs=3)
        exp = dg.Experiment("store", State)
        Train(params.epochs, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        exp.run()

    thread = threading.Thread(target=define_and_run)
    thread.start()
    thread.join()
    """
)


def test_threads_of_a_script_under_dagger_wf_run_get_its_overrides_and_seed(tmp_path):
    (tmp_path / "threaded.py").write_text(THREADED_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "run", "threaded.py", "epochs=2", "--seed", "7"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    history = dg.Experiment.restore(tmp_path / "store").history()
    trained = history[history["recipe"] == "Train"].iloc[0]
    assert trained["recipe.nb_epochs"] == 2
    assert trained["seed"] == seed_from_key(trained["key"], 7)
