"""Bad input gets a named error that says what to do; nothing computed is lost."""

from __future__ import annotations

import json

import pytest
from trees import ReturnNothing, State, Train, build_lottery_tree

import dagger_wf as dg


def test_missing_root_property_is_a_key_error_naming_it(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    with pytest.raises(KeyError) as caught:
        exp.spawn_new_tree(dataset_name="digits")
    assert isinstance(caught.value, dg.MissingPropertyError)
    assert "spawn_new_tree(model_name=...)" in str(caught.value)


def test_unknown_keyword_is_a_warning_that_lists_the_declared_properties(experiment_dir):
    # Issue 12: the original passes every keyword on to initialize_state, so a keyword
    # nothing declares is likely a typo (a warning), no longer an UnknownPropertyError.
    exp = dg.Experiment(experiment_dir, State)
    with pytest.warns(dg.UnknownArgumentWarning, match=r"'lr_typo'.*dataset_name"):
        exp.spawn_new_tree(dataset_name="d", model_name="m", lr_typo=3)


def test_spawning_twice_is_refused(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    exp.spawn_new_tree(dataset_name="d", model_name="m")
    with pytest.raises(dg.TreeAlreadySpawnedError):
        exp.spawn_new_tree(dataset_name="d", model_name="m")


def test_running_before_spawning_is_refused(experiment_dir):
    with pytest.raises(dg.TreeNotSpawnedError, match="spawn_new_tree"):
        dg.Experiment(experiment_dir, State).run()


def test_recipe_applied_to_a_non_promise_is_refused(experiment_dir):
    with pytest.raises(dg.ForeignPromiseError, match="promise"):
        Train(1, 0.1)(State())


def test_recipe_missing_a_declared_property_attribute_is_named(experiment_dir):
    class Forgetful(dg.Recipe):
        PROPERTIES = ["lr"]

    exp = dg.Experiment(experiment_dir, State)
    with pytest.raises(dg.RecipeDefinitionError, match=r"self\.lr"):
        Forgetful()(exp.spawn_new_tree(dataset_name="d", model_name="m"))


def test_recipe_returning_none_fails_with_a_runtime_error(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    ReturnNothing()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(RuntimeError) as caught:
        exp.run()
    assert isinstance(caught.value, dg.RecipeReturnError)
    assert "return state" in str(caught.value)


class Other(dg.ExperimentState):
    PROPERTIES = ["name"]


def test_directory_of_another_state_class_is_refused(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    with pytest.raises(dg.StateClassMismatchError, match="state_class=State"):
        dg.Experiment.restore(experiment_dir, state_class=Other)
    with pytest.raises(dg.StateClassMismatchError):
        dg.Experiment(experiment_dir, Other)


def test_directory_that_is_not_an_experiment_is_named(tmp_path):
    with pytest.raises(dg.NotAnExperimentError, match="not a dagger_wf experiment"):
        dg.Experiment.restore(tmp_path)
    with pytest.raises(FileNotFoundError):
        dg.Experiment.restore(tmp_path / "missing")


def test_corrupt_state_file_is_named_and_the_rest_of_the_tree_loads(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    broken = experiment_dir / "states" / f"{promises['pruned 0.1'].key}.json"
    broken.write_text(broken.read_text()[:40])
    with pytest.warns(dg.CorruptStateWarning, match=promises["pruned 0.1"].key):
        tree = dg.Experiment.restore(experiment_dir).graph
    assert len(tree) == 4
    assert isinstance(tree.corrupt[0], dg.CorruptStateError)


def test_truncated_payload_is_a_corrupt_state_error(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    payload = experiment_dir / "payloads" / f"{promises['trained 0.1'].key}.payload"
    payload.write_bytes(payload.read_bytes()[:-10])
    node = dg.Experiment.restore(experiment_dir).graph.node(promises["trained 0.1"].key)
    with pytest.raises(dg.CorruptStateError, match="recompute"):
        node.restore()


def test_record_with_a_missing_field_is_a_corrupt_state(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    path = experiment_dir / "states" / f"{promises['root'].key}.json"
    document = json.loads(path.read_text())
    del document["recipe"]
    path.write_text(json.dumps(document))
    with pytest.warns(dg.CorruptStateWarning):
        tree = dg.Experiment.restore(experiment_dir).graph
    assert promises["root"].key not in tree.node_map


def test_unknown_scheduler_lists_the_known_ones(experiment_dir):
    exp, _ = build_lottery_tree(experiment_dir)
    with pytest.raises(dg.UnknownRunnerError, match="threads"):
        exp.run(scheduler="gpu-magic")


def test_unknown_node_key_is_a_key_error(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    tree = dg.Experiment.restore(experiment_dir).graph
    with pytest.raises(KeyError):
        tree.node("ffff")


def test_same_class_name_from_another_module_is_refused(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    impostor = type("State", (dg.ExperimentState,), {"PROPERTIES": ["dataset_name", "model_name"]})
    with pytest.raises(dg.StateClassMismatchError, match="state_module"):
        dg.Experiment(experiment_dir, impostor)


def test_a_deleted_payload_makes_its_state_computed_again_with_a_warning(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    exp.run()
    (experiment_dir / "payloads" / f"{promises['pruned 0.1'].key}.payload").unlink()
    rerun, _ = build_lottery_tree(experiment_dir)
    with pytest.warns(dg.CorruptStateWarning, match=f"{promises['pruned 0.1'].key}.*missing"):
        assert rerun.run().ran == {promises["pruned 0.1"].key}


def test_ambiguous_key_prefix_is_a_key_error(experiment_dir):
    build_lottery_tree(experiment_dir)[0].run()
    with pytest.raises(dg.StateNotFoundError, match="keys start with it"):
        dg.Experiment.restore(experiment_dir).graph.node("")


def test_lazy_load_of_a_state_never_computed_is_named(experiment_dir):
    exp, promises = build_lottery_tree(experiment_dir)
    with (
        pytest.raises(dg.StateNotComputedError),
        exp.defined_state(promises["pruned 0.1"].key).lazy_load(),
    ):
        pass


# ---------------------------------------------------------------- declarations


def test_properties_given_as_a_string_are_refused_not_read_as_letters():
    with pytest.raises(TypeError) as caught:

        class Letters(dg.ExperimentState):
            PROPERTIES = "lr"

    assert isinstance(caught.value, dg.DeclarationTypeError)
    assert "Letters.PROPERTIES" in str(caught.value) and "its letters" in str(caught.value)


def test_recipe_properties_given_as_a_set_are_refused():
    with pytest.raises(dg.DeclarationTypeError, match="a list of attribute names"):

        class Unordered(dg.Recipe):
            PROPERTIES = {"lr"}


def test_dunder_property_names_are_refused():
    with pytest.raises(dg.ReservedPropertyNameError, match=r"'__dict__'.*belong to Python"):

        class Dunder(dg.ExperimentState):
            NONHASHED_ATTRIBUTES = ["__dict__"]


# ---------------------------------------------------------------- what run() returns


class ReturnsAnotherClass(dg.Recipe):
    def run(self, state):
        return Unrelated()


class Unrelated(dg.ExperimentState):
    PROPERTIES = ["dataset_name"]


def test_run_returning_a_state_of_another_class_fails_that_state_naming_both(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    made = ReturnsAnotherClass()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(dg.RecipeReturnError, match="a Unrelated, but the tree holds State"):
        exp.run()
    assert exp.last_run.failed == {made.key}


def test_run_returning_another_live_state_is_refused_and_keeps_that_states_key(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")

    class ReturnsTheRoot(dg.Recipe):
        def run(self, state):
            return exp.root

    ReturnsTheRoot()(root)
    with pytest.raises(dg.RecipeReturnError, match="another state of the tree"):
        exp.run()
    assert exp.root.sha() == root.key


# ---------------------------------------------------------------- experiment directory


def test_an_experiment_on_a_regular_file_is_a_not_a_directory_error(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n")
    with pytest.raises(NotADirectoryError) as caught:
        dg.Experiment(path, State)
    assert isinstance(caught.value, dg.ExperimentPathError)
    assert str(path) in str(caught.value)
    assert path.read_text() == "a,b\n"


def test_an_experiment_file_that_is_not_an_object_is_named_as_corrupt(experiment_dir):
    experiment_dir.mkdir()
    (experiment_dir / "experiment.json").write_text("[1, 2]")
    with pytest.raises(dg.CorruptStateError, match="holds a JSON list, not an object"):
        dg.Experiment(experiment_dir, State)


def test_an_experiment_in_a_directory_with_braces_cannot_be_emitted(tmp_path):
    exp = dg.Experiment(tmp_path / "lr{0.1}", State)
    Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(dg.UnsupportedPathError, match="brace"):
        exp.emit_snakefile(tmp_path / "Snakefile")
    assert not (tmp_path / "Snakefile").exists()
    assert exp.run().ran  # it still runs here


# ---------------------------------------------------------------- tags and promises


def test_a_tag_starting_with_an_exclamation_mark_is_refused(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    with pytest.raises(ValueError) as caught, exp.tag("!baseline"):
        pass
    assert isinstance(caught.value, dg.ReservedTagError)
    assert "'baseline'" in str(caught.value)


def test_a_function_on_a_promise_its_experiment_does_not_define_is_refused(tmp_path):
    exp = dg.Experiment(tmp_path / "a", State)
    other = dg.Experiment(tmp_path / "b", State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    stray = dg.ExperimentStatePromise(other, root.key)
    with pytest.raises(dg.ForeignPromiseError, match="does not define"):
        dg.Function(print)(stray)
    with pytest.raises(dg.ForeignPromiseError, match="does not define"):
        Train(1, 0.1)(stray)


# ---------------------------------------------------------------- payloads


class StoresALock(dg.Recipe):
    def run(self, state):
        import threading

        state.weights = [1.0]
        state.guard = threading.Lock()
        return state


class StoresDeepNesting(dg.Recipe):
    def run(self, state):
        nested: list = []
        for _ in range(100_000):
            nested = [nested]
        state.data = nested
        return state


@pytest.mark.parametrize(
    ("recipe", "attribute", "says"),
    [(StoresALock(), "guard", "cannot be pickled"), (StoresDeepNesting(), "data", "too deeply")],
)
def test_a_payload_attribute_that_cannot_be_stored_is_named(
    experiment_dir, recipe, attribute, says
):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    made = recipe(root)
    with pytest.raises(TypeError) as caught:
        exp.run()
    assert isinstance(caught.value, dg.UnpicklablePayloadError)
    assert f"Attribute {attribute!r} of state {made.key[:12]}" in str(caught.value)
    assert says in str(caught.value)
    assert exp.last_run.ran == {root.key}
