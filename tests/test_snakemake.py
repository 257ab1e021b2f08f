"""The emitted Snakemake workflow, run for real with the local profile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TESTS_DIR, payload_bytes, run_snakemake
from trees import (
    Explode,
    Prune,
    RecordCollectorThresholds,
    Sleep,
    State,
    Train,
    build_lottery_tree,
)

import dagger_wf as dg
from dagger_wf.runners.grouping import assign_groups

pytestmark = pytest.mark.slow


def _emit(exp: dg.Experiment, directory, **options):
    return exp.emit_snakefile(directory / "Snakefile", **options)


def test_local_profile_computes_the_same_bytes_as_the_dask_runner(tmp_path):
    build_lottery_tree(tmp_path / "dask")[0].run()
    exp, promises = build_lottery_tree(tmp_path / "store")
    run_snakemake(_emit(exp, tmp_path), "local")
    assert payload_bytes(tmp_path / "store") == payload_bytes(tmp_path / "dask")
    tree = dg.Experiment.restore(tmp_path / "store").graph
    assert {node.dagger.record.runner for node in tree.nodes} == {"snakemake"}
    assert set(tree.node_map) == {promise.key for promise in promises.values()}


def test_states_computed_by_dask_are_up_to_date_for_snakemake(tmp_path):
    exp, _ = build_lottery_tree(tmp_path / "store")
    exp.run()
    dry_run = run_snakemake(_emit(exp, tmp_path), "local", "--dry-run")
    assert "rule state:" not in dry_run.stdout
    assert "functions" in dry_run.stdout


def test_states_computed_by_snakemake_are_cached_for_dask(tmp_path):
    exp, _ = build_lottery_tree(tmp_path / "store")
    run_snakemake(_emit(exp, tmp_path), "local")
    again, promises = build_lottery_tree(tmp_path / "store")
    assert again.run().cached == {promise.key for promise in promises.values()}


def test_the_workflow_goes_where_snakemake_looks_and_a_cached_rerun_says_little(tmp_path):
    exp = dg.Experiment(tmp_path / "runs" / "exp", State)
    trained = Train(1, 0.1)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    for fraction in (0.2, 0.5, 0.8):
        Prune("magnitude", fraction)(trained)
    assert exp.emit_snakefile() == tmp_path / "workflow" / "Snakefile"
    assert {path.name for path in tmp_path.iterdir()} == {"runs", "workflow"}

    def snakemake():  # in the project root, as the README says: no --snakefile
        profile = str(ROOT / "profiles" / "local")
        command = [sys.executable, "-m", "snakemake", "--profile", profile]
        environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    snakemake()
    assert len(dg.Experiment.restore(tmp_path / "runs" / "exp").graph) == 5
    cached = snakemake()
    assert "Nothing to be done" in cached and len(cached) < 2000


NASTY = 'it\'s "quoted"\n{braces} $(touch PWNED) `touch PWNED` ; rm -rf / ünïcödé ☃'


def test_property_values_never_reach_the_snakefile_or_a_shell(tmp_path):
    exp = dg.Experiment(tmp_path / "store", State)
    root = exp.spawn_new_tree(dataset_name=NASTY, model_name="{wildcards}")
    nasty = Prune(NASTY, 0.5)(root)
    snakefile = _emit(exp, tmp_path)
    text = snakefile.read_text()
    assert "PWNED" not in text and "ünï" not in text and "{wildcards}" not in text
    assert text.isascii()
    run_snakemake(snakefile, "local")
    assert not list(tmp_path.rglob("PWNED"))
    node = dg.Experiment.restore(tmp_path / "store").graph.node(nasty.key)
    assert node.recipe.technique == NASTY and node.dataset_name == NASTY


def _failing_tree(directory, fixed: bool):
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    trained = Train(1, 0.1)(root)
    broken = Prune("random", 0.2)(trained) if fixed else Explode("recipe bug")(trained)
    below = Train(2, 0.1)(broken)
    healthy = Prune("magnitude", 0.5)(Train(1, 0.2)(root))
    return exp, broken, below, healthy


def test_a_failing_recipe_fails_its_state_others_finish_and_a_fixed_rerun_computes_the_rest(
    tmp_path,
):
    exp, broken, below, healthy = _failing_tree(tmp_path / "store", fixed=False)
    result = run_snakemake(_emit(exp, tmp_path), "local", check=False)
    assert result.returncode != 0
    states = tmp_path / "store" / "states"
    assert (states / f"{healthy.key}.json").exists() and not (states / f"{below.key}.json").exists()
    failed = dg.Experiment.restore(tmp_path / "store").graph.node(broken.key)
    assert failed.dagger.status == "failed" and "ValueError: recipe bug" in failed.dagger.error
    done_before = {path.name: path.stat().st_mtime_ns for path in states.glob("*.json")}

    fixed, _, below_fixed, _ = _failing_tree(tmp_path / "store", fixed=True)
    run_snakemake(_emit(fixed, tmp_path), "local")
    after = {path.name: path.stat().st_mtime_ns for path in states.glob("*.json")}
    assert {name: after[name] for name in done_before} == done_before
    assert f"{below_fixed.key}.json" in after and len(after) == len(done_before) + 2


def test_a_killed_workflow_leaves_no_half_state_and_reruns(tmp_path):
    exp = dg.Experiment(tmp_path / "store", State)
    promise = exp.spawn_new_tree(dataset_name="d", model_name="m")
    chain = []
    for step in range(12):
        promise = Sleep(0.3 + step / 1000)(promise)
        chain.append(promise.key)
    snakefile = _emit(exp, tmp_path)
    command = [sys.executable, "-m", "snakemake", "--profile", str(ROOT / "profiles" / "local")]
    process = subprocess.Popen(
        [*command, "--snakefile", str(snakefile)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    states = tmp_path / "store" / "states"
    deadline = time.monotonic() + 120
    while len(list(states.glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {path.stem for path in states.glob("*.json")}
    assert 4 <= len(done_before) < 13
    run_snakemake(snakefile, "local", "--unlock")  # what Snakemake asks after a kill
    run_snakemake(snakefile, "local")
    tree = dg.Experiment.restore(tmp_path / "store").graph
    assert len(tree) == 13 and all(node.dagger.status == "done" for node in tree.nodes)


class Heavy(dg.Recipe):
    RESOURCES = {"runtime": 30, "mem_mb": 4000, "cpus_per_task": 4}

    def run(self, state):
        return state


def test_resources_become_a_rule_of_their_own_with_its_own_job(tmp_path):
    exp = dg.Experiment(tmp_path / "store", State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    heavy = Heavy()(Train(1, 0.1)(root))
    light = Train(2, 0.1)(heavy)
    text = _emit(exp, tmp_path).read_text()
    assert "rule state_0:" in text and heavy.key in text and "threads: 4" in text
    assert "mem_mb=4000" in text and "ruleorder: state_0 > state" in text
    dry_run = run_snakemake(tmp_path / "Snakefile", "local", "--dry-run")
    assert "state_0" in dry_run.stdout
    groups = assign_groups(exp.plan)
    assert groups[heavy.key] != groups[root.key] and groups[light.key] != groups[heavy.key]


def test_unknown_resource_is_named_when_the_recipe_is_defined():
    with pytest.raises(dg.UnknownResourceError, match="gpus"):

        class Typo(dg.Recipe):
            RESOURCES = {"gpus": 1}


def test_short_recipes_are_fused_into_groups_of_bounded_size(tmp_path):
    exp = dg.Experiment(tmp_path / "store", State)
    promise = exp.spawn_new_tree(dataset_name="d", model_name="m")
    for step in range(9):
        promise = Train(step, 0.1)(promise)
    assert len(set(assign_groups(exp.plan).values())) == 1
    assert len(set(assign_groups(exp.plan, max_group_size=4).values())) == 3
    assert len(set(assign_groups(exp.plan, max_group_size=1).values())) == 10


def test_cli_emits_a_plain_scripts_workflow_which_snakemake_then_computes(tmp_path):
    script = tmp_path / "experiment.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "from trees import build_lottery_tree\n"
        "if __name__ == '__main__':\n"
        "    print(build_lottery_tree(sys.argv[1])[0].run().summary())\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "snakefile", str(script), str(tmp_path / "s")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    snakefile = tmp_path / "workflow" / "Snakefile"  # where snakemake looks by default
    assert f"nothing computed here: wrote the workflow {snakefile}" in result.stdout
    manifest = json.loads((tmp_path / "s" / "workflow" / "manifest.json").read_text())
    assert len(manifest["states"]) == 5
    assert not list((tmp_path / "s").glob("states/*"))
    run_snakemake(snakefile, "local")
    dask_run, _ = build_lottery_tree(tmp_path / "dask")
    dask_run.run()
    assert payload_bytes(tmp_path / "s") == payload_bytes(tmp_path / "dask")


def test_new_tags_on_stored_states_do_not_make_snakemake_recompute_anything(tmp_path):
    exp, _ = build_lottery_tree(tmp_path / "store")
    exp.run()
    retagged, promises = build_lottery_tree(tmp_path / "store")
    with retagged.tag("favourite"):
        Train(3, 0.1)(promises["root"])
    retagged.run()
    dry_run = run_snakemake(_emit(retagged, tmp_path), "local", "--dry-run")
    assert "rule state:" not in dry_run.stdout


def test_a_recipe_edited_after_emission_fails_instead_of_storing_under_the_old_key(tmp_path):
    module = tmp_path / "editable_recipe.py"
    module.write_text(
        "import dagger_wf as dg\n\n"
        "class Bump(dg.Recipe):\n"
        "    def run(self, state):\n"
        "        state.weights = [1.0]\n"
        "        return state\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import editable_recipe

        exp = dg.Experiment(tmp_path / "store", State)
        bumped = editable_recipe.Bump()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        snakefile = _emit(exp, tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
    module.write_text(module.read_text().replace("[1.0]", "[999.0]"))
    result = run_snakemake(snakefile, "local", check=False)
    assert result.returncode != 0 and "WorkflowOutdatedError" in result.stderr
    assert not (tmp_path / "store" / "states" / f"{bumped.key}.json").exists()


@pytest.mark.parametrize("lost", ["pruned 0.1", "trained 0.1"])  # a leaf, an inner state
def test_a_deleted_payload_is_computed_again_by_snakemake(tmp_path, lost):
    exp, promises = build_lottery_tree(tmp_path / "store")
    snakefile = _emit(exp, tmp_path)
    run_snakemake(snakefile, "local")
    before = payload_bytes(tmp_path / "store")
    (tmp_path / "store" / "payloads" / f"{promises[lost].key}.payload").unlink()
    run_snakemake(snakefile, "local")
    assert payload_bytes(tmp_path / "store") == before


@pytest.mark.parametrize("hooks", [[], ["--no-hooks"]])  # cluster jobs run without hooks
def test_recipes_run_under_pythons_usual_garbage_collection(tmp_path, hooks):
    """The Snakefile collects garbage rarely while Snakemake builds its DAG (a large share
    of a big dry run), and gives recipes the usual collector back."""
    exp = dg.Experiment(tmp_path / "store", State)
    recorded = RecordCollectorThresholds()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    run_snakemake(_emit(exp, tmp_path), "local", *hooks)
    usual = subprocess.run(
        [sys.executable, "-c", "import gc; print(list(gc.get_threshold()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    state = dg.Experiment.restore(tmp_path / "store").graph.node(recorded.key)
    state.restore()
    assert state.weights == json.loads(usual)
