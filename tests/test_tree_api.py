"""The seed ("dagger") tree API: lazy definition, run, caching, tags, Functions."""

from __future__ import annotations

import pytest
from trees import Prune, State, Train, build_lottery_tree, evaluate

import dagger_wf as dg


def test_defining_a_tree_computes_nothing(experiment_dir):
    build_lottery_tree(experiment_dir)
    assert not list(experiment_dir.glob("states/*"))


def test_run_computes_every_state_and_stores_it(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    report = exp.run()
    assert report.ran == {p.key for p in promises.values()}
    assert len(list(experiment_dir.glob("states/*.json"))) == 5


def test_rerun_does_not_call_recipe_again_but_runs_functions(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    exp, promises = build_lottery_tree(experiment_dir)
    report = exp.run()
    assert report.ran == set()
    assert report.cached == {p.key for p in promises.values()}
    function_runs = report.keys(dg.EventKind.FUNCTION_RAN)
    assert function_runs == {promises["trained 0.01"].key, promises["trained 0.1"].key}


def test_extending_an_existing_tree_computes_only_the_new_states(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    exp, promises = build_lottery_tree(experiment_dir)
    extra = Train(1, 0.5)(promises["pruned 0.1"])
    report = exp.run()
    assert report.ran == {extra.key}


def test_same_recipe_applied_twice_to_one_parent_is_one_state(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    first, second = Train(1, 0.1)(root), Train(1, 0.1)(root)
    report = exp.run()
    assert first.key == second.key
    assert report.ran == {root.key, first.key}


def test_tags_are_labels_not_part_of_the_key(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    with exp.tag("a"):
        tagged_a = Train(1, 0.1)(root)
    with exp.tag(["b", "c"]):
        tagged_bc = Train(1, 0.1)(root)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    assert tagged_a.key == tagged_bc.key
    assert tree.node(tagged_a.key).tags == ["a", "b", "c"]


def test_a_cached_state_defined_under_a_new_tag_gains_the_tag(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    exp, promises = build_lottery_tree(experiment_dir)
    with exp.tag("favourite"):
        Prune("magnitude", 0.5)(promises["trained 0.1"])
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["pruned 0.1"].key)
    assert "favourite" in node.tags and "pruned" in node.tags


def test_tag_context_restores_tags_after_the_block(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    with exp.tag("outer"):
        with exp.tag("inner"):
            assert exp.tags == ["outer", "inner"]
        assert exp.tags == ["outer"]
    assert exp.tags == []


class SetsAccuracy(dg.Recipe):
    def run(self, state):
        state.model_name = "renamed by the recipe"
        return state


def test_properties_changed_in_run_are_stored_but_do_not_change_the_key(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    child = SetsAccuracy()(root)
    exp.run()
    second = dg.Experiment(experiment_dir, State)
    SetsAccuracy()(second.spawn_new_tree(dataset_name="d", model_name="m"))
    report = second.run()
    stored = dg.Experiment.restore(experiment_dir).graph.node(child.key)
    assert stored.model_name == "renamed by the recipe"
    assert report.ran == set()


def test_promise_get_computes_and_returns_the_state_with_its_payload(experiment_dir):
    _exp, promises = build_lottery_tree(experiment_dir)
    trained = promises["trained 0.1"].get()
    assert trained.sha() == promises["trained 0.1"].key
    assert len(trained.weights) == 4
    assert not (experiment_dir / "states" / f"{promises['pruned 0.1'].key}.json").exists()


def test_root_promise_get_returns_exp_root(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    assert promises["root"].get() is exp.root
    assert exp.root.data == list(range(8))


def test_leaves_are_the_pending_dask_delayeds(experiment_dir):
    exp, _promises = build_lottery_tree(experiment_dir)
    leaves = exp.leaves
    assert len(leaves) == 4  # two pruned states and two Function calls
    results = [delayed.compute(scheduler="sync") for delayed in leaves.values()]
    assert {event.kind for event in results} == {
        dg.EventKind.RAN,
        dg.EventKind.FUNCTION_RAN,
    }


def _fails(state):
    raise LookupError("evaluation broke")


def test_failing_function_raises_its_own_exception_from_run_not_at_definition(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    dg.Function(_fails)(root)
    with pytest.raises(LookupError, match="evaluation broke"):
        exp.run()
    assert exp.last_run.ran == {root.key}


def test_functions_see_the_full_state(experiment_dir):
    seen = []
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    dg.Function(lambda state: seen.append(evaluate(state)))(Train(1, 1.0)(root))
    exp.run()
    assert len(seen) == 1 and seen[0] > 4


def test_running_twice_in_one_process_reuses_the_first_run(experiment_dir):
    exp, _promises = build_lottery_tree(experiment_dir)
    exp.run()
    assert exp.run().ran == set()


def test_changing_a_recipe_after_applying_it_does_not_change_the_state_defined(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    recipe = Train(1, 0.1)
    first = recipe(root)
    recipe.lr = 5.0
    second = recipe(root)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    assert tree.node(first.key).recipe.lr == 0.1
    assert tree.node(second.key).recipe.lr == 5.0
    with tree.node(first.key).lazy_load() as state:
        assert state.weights[0] < 2  # computed with lr=0.1, not 5.0


def test_leaves_make_the_directory_an_experiment(experiment_dir):
    exp, _ = build_lottery_tree(experiment_dir)
    for delayed in exp.leaves.values():
        delayed.compute(scheduler="sync")
    assert len(dg.Experiment.restore(experiment_dir).graph) == 5


def test_tags_must_be_strings(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    with pytest.raises(dg.InvalidTagError, match="lr:"), exp.tag(0.1):
        pass


def test_computing_an_undefined_key_is_a_key_error(experiment_dir):
    exp, _ = build_lottery_tree(experiment_dir)
    with pytest.raises(dg.StateNotFoundError):
        exp.compute("0" * 64)
