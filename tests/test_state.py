"""ExperimentState: declarations, identity, slim and full forms, pickling."""

from __future__ import annotations

import pickle

import pytest
from trees import State, Train, build_lottery_tree

import dagger_wf as dg


def test_a_fresh_state_has_every_declared_name_set_to_none():
    state = State()
    assert [getattr(state, name) for name in State.PROPERTIES + State.NONHASHED_ATTRIBUTES] == [
        None
    ] * 4


def test_identical_states_have_equal_sha_in_different_experiments(tmp_path):
    first = dg.Experiment(tmp_path / "a", State).spawn_new_tree(dataset_name="d", model_name="m")
    second = dg.Experiment(tmp_path / "b", State).spawn_new_tree(dataset_name="d", model_name="m")
    state = State()
    state.dataset_name, state.model_name = "d", "m"
    assert first.key == second.key == state.sha()


def test_reserved_attribute_names_cannot_be_declared():
    with pytest.raises(dg.ReservedPropertyNameError, match="'parent'"):

        class Clashing(dg.ExperimentState):
            PROPERTIES = ["parent"]


class UsersNames(dg.ExperimentState):
    """Names dagger_wf once took for itself, declared by a user."""

    PROPERTIES = ["seed", "status"]
    NONHASHED_ATTRIBUTES = ["payload", "error", "metrics", "record", "log_metric", "key"]

    def initialize_state(self, **kwargs):
        self.payload, self.error, self.metrics = b"bytes", "no error", {"loss": 1.0}
        self.record, self.log_metric, self.key = "vinyl", [0.5], "C minor"


class UseTheUsersNames(dg.Recipe):
    def run(self, state):
        state.dagger.log_metric("seen", 1.0)
        state.record = f"{state.record}, played with seed {state.seed}"
        return state


def test_names_dagger_wf_added_itself_are_the_users_to_declare(experiment_dir):
    exp = dg.Experiment(experiment_dir, UsersNames)
    child = UseTheUsersNames()(exp.spawn_new_tree(seed=7, status="draft"))
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(child.key)
    assert (node.seed, node.status) == (7, "draft")
    assert node.dagger.status == "done" and node.dagger.seed != 7
    assert node.dagger.load_metric("seen") == [(0, 1.0)]
    with node.lazy_load():
        assert (node.payload, node.error, node.metrics) == (b"bytes", "no error", {"loss": 1.0})
        assert (node.record, node.log_metric, node.key) == (
            "vinyl, played with seed 7",
            [0.5],
            "C minor",
        )


# What the original dagger's ExperimentState itself uses (facebookresearch/dagger,
# dagger/experiment.py), and the one name dagger_wf adds.
ORIGINAL_NAMES = {
    *["PROPERTIES", "NONHASHED_ATTRIBUTES", "initialize_state", "parent", "parent_sha"],
    *["children", "root_state", "recipe", "experiment_object", "from_cache", "slim_loaded"],
    *["slim_sha", "tags", "save_pre_hooks", "save_post_hooks", "load_post_hooks", "root"],
    *["directory", "path", "sha", "new_state", "to_promise", "save", "restore", "deflate"],
    *["lazy_load"],
}


def test_a_state_has_no_names_beyond_the_originals_but_dagger():
    names = {name for name in dir(State()) if not name.startswith("__")}
    assert names - set(State.PROPERTIES + State.NONHASHED_ATTRIBUTES) <= ORIGINAL_NAMES | {"dagger"}


def test_the_one_name_dagger_wf_adds_cannot_be_declared():
    with pytest.raises(dg.ReservedPropertyNameError, match="'dagger'"):

        class Clashing(dg.ExperimentState):
            NONHASHED_ATTRIBUTES = ["dagger"]


def test_a_name_cannot_be_both_hashed_and_not_hashed():
    with pytest.raises(dg.OverlappingAttributesError, match="model"):

        class Overlapping(dg.ExperimentState):
            PROPERTIES = ["model"]
            NONHASHED_ATTRIBUTES = ["model"]


def test_recipe_property_names_cannot_shadow_recipe_methods():
    with pytest.raises(dg.ReservedPropertyNameError, match="'run'"):

        class Clashing(dg.Recipe):
            PROPERTIES = ["run"]


def test_reading_a_payload_attribute_of_a_slim_state_says_how_to_load_it(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    with pytest.raises(dg.SlimStateError, match="lazy_load"):
        _ = node.weights
    with pytest.raises(AttributeError):
        _ = node.weights


def test_lazy_load_is_full_inside_and_slim_after(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    with node.lazy_load():
        assert len(node.weights) == 4 and not node.slim_loaded
    assert node.slim_loaded
    assert "weights" not in node.__dict__


def test_restore_returns_false_for_a_state_never_computed(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    assert exp.defined_state(promises["pruned 0.1"].key).restore() is False


def test_pickling_drops_the_experiment_and_tree_links(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    node = tree.node(promises["trained 0.1"].key)
    copy = pickle.loads(pickle.dumps(node))
    assert copy.experiment_object is None and copy.parent is None and copy.children == set()
    assert copy.sha() == node.sha()


def test_new_state_inherits_properties_and_payload_and_knows_its_key(experiment_dir):
    _exp, promises = build_lottery_tree(experiment_dir)
    root = promises["root"].get()
    recipe = Train(3, 0.1)
    child = root.new_state(recipe)
    assert child.data is root.data
    assert child.parent_sha == root.sha()
    assert child.sha() == promises["trained 0.1"].key


def test_save_hooks_run_around_save(experiment_dir):
    calls = []
    _exp, promises = build_lottery_tree(experiment_dir)
    root = promises["root"].get()
    root.save_pre_hooks.append(lambda: calls.append("pre"))
    root.save_post_hooks.append(lambda: calls.append("post"))
    root.save()
    assert calls == ["pre", "post"]


def test_saving_a_slim_state_is_refused_and_destroys_nothing(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    with pytest.raises(dg.SlimStateError, match="restore"):
        node.save()
    assert node.restore() and len(node.weights) == 4


def test_saving_a_state_never_computed_is_refused(experiment_dir):
    exp, _ = build_lottery_tree(experiment_dir)
    with pytest.raises(dg.StateNotComputedError, match=r"exp\.run"):
        exp.root.save()


def test_saving_a_changed_restored_state_keeps_how_it_was_computed(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    node.restore()
    started = node.dagger.record.started
    node.weights = [42.0]
    node.save()
    again = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    assert again.dagger.record.started == started
    with again.lazy_load():
        assert again.weights == [42.0]


def test_a_failed_state_says_so_when_its_payload_is_read(experiment_dir):
    from trees import Explode

    exp = dg.Experiment(experiment_dir, State)
    failing = Explode("kaput")(Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m")))
    with pytest.raises(ValueError):
        exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(failing.key)
    assert node.dataset_name == "d"  # inherited properties are recorded with the failure
    with pytest.raises(dg.SlimStateError, match="kaput"):
        _ = node.weights


def test_recipe_identity_field_names_cannot_be_recipe_properties():
    with pytest.raises(dg.ReservedPropertyNameError, match="'module'"):

        class Clashing(dg.Recipe):
            PROPERTIES = ["module"]


def test_the_old_spellings_read_state_dagger_where_the_class_declares_no_such_name(
    experiment_dir,
):
    from trees import Train

    exp = dg.Experiment(experiment_dir, State)
    trained = Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(trained.key)
    assert node.status is node.dagger.status is dg.Status.DONE
    assert node.record is node.dagger.record and node.seed == node.dagger.seed
    assert node.metrics() == node.dagger.metrics()
