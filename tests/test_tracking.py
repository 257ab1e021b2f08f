"""Tracking: metrics, every attempt kept, the history DataFrame."""

from __future__ import annotations

import pytest
from trees import Explode, FailsUntil, Fit, State, Train

import dagger_wf as dg


def evaluate(state):
    """A Function whose dict of numbers is recorded as metrics."""
    return {"accuracy": 0.5 + state.recipe.lr}


def _fitted_tree(directory, failing=False):
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    fitted = {}
    for lr in [0.1, 0.2]:
        with exp.tag(f"lr:{lr}"):
            fitted[lr] = Fit(lr)(root)
            dg.Function(evaluate)(fitted[lr])
    if failing:
        Explode("first attempt")(root)
    return exp, fitted


def test_metrics_logged_in_a_recipe_are_stored_in_order_with_steps(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(fitted[0.2].key)
    assert node.dagger.load_metric("loss") == [(0, 0.2), (1, 0.1), (2, pytest.approx(0.2 / 3))]


def test_a_function_returning_a_dict_of_numbers_records_them_as_metrics(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(fitted[0.1].key)
    assert node.dagger.load_metric("accuracy") == [(0, 0.6)]


def test_unknown_metric_lists_the_known_ones(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(fitted[0.1].key)
    with pytest.raises(dg.UnknownMetricError, match="loss"):
        node.dagger.load_metric("los")


def test_log_metric_outside_a_recipe_is_refused(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    node = dg.Experiment.restore(experiment_dir).graph.node(fitted[0.1].key)
    with pytest.raises(dg.MetricOutsideRunError, match="inside"):
        node.dagger.log_metric("loss", 1.0)


class BadMetric(dg.Recipe):
    PROPERTIES = ["name", "value"]

    def __init__(self, name, value):
        self.name, self.value = name, value

    def run(self, state):
        state.dagger.log_metric(self.name, self.value)
        return state


@pytest.mark.parametrize(("name", "value"), [("loss", "high"), ("", 1.0), ("loss", True)])
def test_metrics_that_are_not_named_numbers_fail_the_recipe_with_a_named_error(
    experiment_dir, name, value
):
    exp = dg.Experiment(experiment_dir, State)
    BadMetric(name, value)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    with pytest.raises(dg.InvalidMetricError):
        exp.run()


def test_failed_attempts_stay_in_the_history_after_a_later_success(experiment_dir, tmp_path):
    switch = tmp_path / "fixed"
    exp = dg.Experiment(experiment_dir, State)
    flaky = FailsUntil(switch)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    for _ in range(2):
        with pytest.raises(ValueError, match="not fixed yet"):
            exp.run()
    switch.touch()
    assert exp.run().ran == {flaky.key}
    history = dg.Experiment.restore(experiment_dir).history()
    attempts = history[history["key"] == flaky.key]
    assert list(attempts["status"]) == ["failed", "failed", "done"]
    assert list(attempts["error_type"])[:2] == ["ValueError", "ValueError"]


def test_history_has_a_row_per_attempt_with_properties_tags_seed_and_final_metrics(
    experiment_dir,
):
    exp, fitted = _fitted_tree(experiment_dir, failing=True)
    with pytest.raises(ValueError):
        exp.run()
    history = dg.Experiment.restore(experiment_dir).history()
    assert len(history) == 4  # root, two fits, one failed attempt
    row = history[history["key"] == fitted[0.2].key].iloc[0]
    assert row["status"] == "done" and row["recipe"] == "Fit"
    assert row["recipe.lr"] == 0.2 and row["property.dataset_name"] == "d"
    assert row["tags"] == "lr:0.2" and row["seed"] == int(fitted[0.2].key[:8], 16)
    assert row["metric.loss"] == pytest.approx(0.2 / 3) and row["metric.accuracy"] == 0.7
    assert row["duration_s"] >= 0 and row["host"]


def test_history_filters_compose_with_node_filters(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    history = tree.history(tree.nodes.filter("lr:*") & tree.nodes.filter("!lr:0.2"))
    assert list(history["key"]) == [fitted[0.1].key]


def test_metric_history_and_plot(experiment_dir, tmp_path):
    exp, _ = _fitted_tree(experiment_dir)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    frame = tree.metric_history("loss", tree.nodes.filter("lr:*"))
    assert list(frame.columns) == ["key", "step", "value"] and len(frame) == 6
    axes = tree.plot_metric("loss", tree.nodes.filter("lr:*"))
    axes.figure.savefig(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 5000
    assert len(axes.lines) == 2


def test_a_metric_plot_labels_its_lines_in_the_words_a_label_function_gives(experiment_dir):
    exp, _ = _fitted_tree(experiment_dir)
    exp.run()
    tree = dg.Experiment.restore(experiment_dir).graph
    lr_tags = tree.nodes.filter("lr:*")
    axes = tree.plot_metric("loss", lr_tags, label=lambda state: f"learning rate {state.recipe.lr}")
    assert sorted(axes.get_legend_handles_labels()[1]) == ["learning rate 0.1", "learning rate 0.2"]


def test_a_corrupt_evaluation_record_is_named_and_the_rest_loads(experiment_dir):
    exp, fitted = _fitted_tree(experiment_dir)
    exp.run()
    record = next((experiment_dir / "evaluations" / fitted[0.1].key).glob("*.json"))
    record.write_text("{ not json")
    with pytest.warns(dg.CorruptStateWarning, match="corrupt"):
        history = dg.Experiment.restore(experiment_dir).history()
    assert len(history) == 3


def test_a_stored_train_state_records_its_seed_and_runner(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    trained = Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    exp.run()
    record = dg.Experiment.restore(experiment_dir).graph.node(trained.key).dagger.record
    assert record.seed == int(trained.key[:8], 16) and record.runner == "dask"


def test_a_state_being_computed_shows_as_pending(experiment_dir):
    from dagger_wf.runners.transition import worker_description
    from dagger_wf.store import ExperimentStore

    exp, _ = _fitted_tree(experiment_dir)
    exp.run()
    with ExperimentStore(experiment_dir).claim("f" * 64, worker_description("dask")):
        history = dg.Experiment.restore(experiment_dir).history()
    pending = history[history["status"] == "pending"]
    assert list(pending["key"]) == ["f" * 64] and list(pending["runner"]) == ["dask"]
