"""The Dask runner's own behaviour: reports, progress, lost workers, seeds (what every runner
shares is pinned in test_runner_contract.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS_DIR
from trees import DrawsRandom, Explode, Prune, Sleep, State, Train

import dagger_wf as dg


def _tree_with_failing_branch(directory):
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    with exp.tag("doomed"):
        doomed = Explode("first failure")(Train(1, 0.1)(root))
        below_failure = Train(2, 0.1)(doomed)
    healthy = Prune("magnitude", 0.5)(Train(1, 0.2)(root))
    return exp, doomed, below_failure, healthy


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_failure_skips_its_subtree_and_every_other_branch_finishes(tmp_path, scheduler):
    exp, doomed, below_failure, healthy = _tree_with_failing_branch(tmp_path)
    with pytest.raises(ValueError, match="first failure") as caught:
        exp.run(scheduler=scheduler)
    assert "1 failure(s)" in "\n".join(caught.value.__notes__)
    assert exp.last_run.failed == {doomed.key}
    assert exp.last_run.skipped == {below_failure.key}
    assert (tmp_path / "states" / f"{healthy.key}.json").exists()
    summary = "4 states computed, 0 cached, 1 failed, 1 skipped below a failure"
    assert exp.last_run.summary() == summary


def test_a_failed_state_records_its_traceback_visible_after_restore(tmp_path):
    exp, doomed, _, _ = _tree_with_failing_branch(tmp_path)
    with pytest.raises(ValueError):
        exp.run()
    node = dg.Experiment.restore(tmp_path).graph.node(doomed.key)
    assert node.dagger.status == "failed"
    assert "ValueError: first failure" in node.dagger.error
    assert node.dagger.record.finished is not None


def test_every_failure_is_listed_and_the_first_in_tree_order_is_raised(tmp_path):
    exp = dg.Experiment(tmp_path, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    Explode("one")(root)
    Explode("two")(root)
    with pytest.raises(ValueError, match="one") as caught:
        exp.run(scheduler="threads")
    note = "\n".join(caught.value.__notes__)
    assert "2 failure(s)" in note and "two" in note


def test_rerun_after_fixing_computes_only_what_is_missing(tmp_path):
    exp, _doomed, _, _healthy = _tree_with_failing_branch(tmp_path)
    with pytest.raises(ValueError):
        exp.run()
    fixed = dg.Experiment(tmp_path, State)
    root = fixed.spawn_new_tree(dataset_name="d", model_name="m")
    trained = Train(1, 0.1)(root)
    repaired = Train(2, 0.1)(Prune("random", 0.1)(trained))
    Prune("magnitude", 0.5)(Train(1, 0.2)(root))
    report = fixed.run()
    assert report.ran == {repaired.key, fixed.plan.states[repaired.key].parent_key}


def test_progress_bar_counts_done_cached_and_failed_states(tmp_path, capsys):
    exp, *_ = _tree_with_failing_branch(tmp_path)
    with pytest.raises(ValueError):
        exp.run(progress=True)
    first = capsys.readouterr().err
    rerun, *_ = _tree_with_failing_branch(tmp_path)
    with pytest.raises(ValueError):
        rerun.run(progress=True)
    second = capsys.readouterr().err
    assert "cached=0, done=4, failed=1" in first
    assert "cached=4, done=0, failed=1" in second


def test_without_a_terminal_a_long_run_draws_no_progress_bar(tmp_path, capsys):
    # The bar would appear after two seconds; pytest's stderr is not a terminal.
    exp = dg.Experiment(tmp_path, State)
    Sleep(2.5)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    assert "task" not in capsys.readouterr().err


def test_an_exception_that_cannot_be_pickled_comes_back_as_recipe_failed_error(tmp_path):
    from trees import RaiseUnpicklable

    exp = dg.Experiment(tmp_path, State)
    RaiseUnpicklable()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(dg.RecipeFailedError, match="UnpicklableError: holds an open file"):
        exp.run(scheduler="processes")


def test_a_worker_killed_mid_recipe_fails_that_state_and_the_rest_finishes(tmp_path):
    from trees import DieHard

    exp = dg.Experiment(tmp_path, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    killed = DieHard()(Train(1, 0.1)(root))
    below_killed = Train(2, 0.1)(killed)
    healthy = Prune("magnitude", 0.5)(Train(1, 0.2)(root))
    with pytest.raises(dg.RecipeFailedError, match="out of memory"):
        exp.run(scheduler="processes")
    assert exp.last_run.failed == {killed.key}
    assert exp.last_run.skipped == {below_killed.key}
    # The run tried again after losing the worker: what it computed before still counts
    # as computed by this run, once.
    assert exp.last_run.cached == set()
    assert len(exp.last_run.ran) == 4 and len(exp.last_run.events) == 6
    assert exp.last_run.summary() == (
        "4 states computed, 0 cached, 1 failed, 1 skipped below a failure"
    )
    assert (tmp_path / "states" / f"{healthy.key}.json").exists()
    node = dg.Experiment.restore(tmp_path).graph.node(killed.key)
    assert node.dagger.status == "failed" and "ended before it finished" in node.dagger.error
    assert not list(tmp_path.glob("running/*"))


def _drawn(directory, seed):
    exp = dg.Experiment(directory, State)
    drawn = DrawsRandom()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run(seed=seed)
    with dg.Experiment.restore(directory).graph.node(drawn.key).lazy_load() as state:
        return state.weights, state.dagger.record.seed


def test_the_same_seed_gives_the_same_draws_and_another_seed_other_draws(tmp_path):
    first, first_seed = _drawn(tmp_path / "a", 1)
    again, _ = _drawn(tmp_path / "b", 1)
    other, other_seed = _drawn(tmp_path / "c", 2)
    assert first == again and first != other
    assert first_seed != other_seed


def test_a_cached_state_computed_with_another_seed_warns(tmp_path):
    _drawn(tmp_path, 1)
    with pytest.warns(dg.SeedMismatchWarning, match="another seed"):
        _drawn(tmp_path, 2)


def test_emitting_a_workflow_over_states_of_another_seed_warns(tmp_path):
    _drawn(tmp_path, 1)
    exp = dg.Experiment(tmp_path, State)
    DrawsRandom()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.warns(dg.SeedMismatchWarning, match="another seed"):
        exp.emit_snakefile(tmp_path / "Snakefile", seed=2)


PROCESSES_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import dagger_wf as dg
from trees import Prune, State, Train

def define():
    exp = dg.Experiment("store", State)
    Prune("magnitude", 0.5)(Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m")))
    return exp

{main}
"""


def _processes_script(tmp_path, main: str) -> Path:
    script = tmp_path / "experiment.py"
    script.write_text(PROCESSES_SCRIPT.format(tests=str(TESTS_DIR), main=main))
    return script


@pytest.mark.parametrize("through_the_cli", [False, True])
def test_an_unguarded_script_under_processes_gets_one_error_naming_the_guard(
    tmp_path, through_the_cli
):
    unguarded = 'print(define().run(scheduler="processes").summary())'
    script = _processes_script(tmp_path, unguarded)
    line = script.read_text().splitlines().index(unguarded) + 1
    command = ["-m", "dagger_wf.cli", "run", str(script)] if through_the_cli else [str(script)]
    result = subprocess.run(
        [sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "UnguardedScriptError" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
    assert f"line {line} of experiment.py runs the experiment" in result.stderr
    assert "BrokenProcessPool" not in result.stderr and len(result.stderr) < 3000
    assert not list((tmp_path / "store").glob("states/*"))


def test_a_guarded_script_runs_under_processes(tmp_path):
    script = _processes_script(
        tmp_path,
        'if __name__ == "__main__":\n    print(define().run(scheduler="processes").summary())',
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 states computed, 0 cached"
