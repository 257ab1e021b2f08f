"""The dagger-wf command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import TESTS_DIR
from trees import Impure, State, Train

import dagger_wf as dg
from dagger_wf.tracking.seeding import seed_from_key

SCRIPT = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS_DIR)!r})
    import dagger_wf as dg
    from trees import Explode, Prune, State, Train

    params = dg.parameters(epochs=3, lr=0.1, fractions=[0.5], explode=False)
    exp = dg.Experiment("store", State)
    trained = Train(params.epochs, params.lr)(exp.spawn_new_tree(dataset_name="d", model_name="m"))
    for fraction in params.fractions:
        with exp.tag(f"fraction:{{fraction}}"):
            Prune("magnitude", fraction)(trained)
    if params.explode:
        Explode("on purpose")(trained)
    print("ran", len(exp.run().ran))
    """
)


def _cli(tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    (tmp_path / "experiment.py").write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_passes_typed_overrides_and_the_seed(tmp_path):
    result = _cli(
        tmp_path,
        "run",
        "experiment.py",
        "epochs=2",
        "lr=1e-3",
        "fractions=[0.5,0.9]",
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stderr
    assert "ran 4" in result.stdout
    history = dg.Experiment.restore(tmp_path / "store").history()
    trained = history[history["recipe"] == "Train"].iloc[0]
    assert trained["recipe.nb_epochs"] == 2 and trained["recipe.lr"] == 0.001
    assert trained["seed"] == seed_from_key(trained["key"], 7)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epoch=2", "Unknown parameter 'epoch'; this script's parameters are ['epochs'"),
        ("epochs=two", "does not fit epochs, a int"),
        ("fractions=[0.5,high]", "does not fit fractions[1], a float"),
        ("epochs", "is not key=value"),
    ],
)
def test_bad_overrides_exit_2_and_say_what_is_known(tmp_path, override, message):
    result = _cli(tmp_path, "run", "experiment.py", override)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "store" / "states").exists()


def test_overrides_parse_as_users_expect(tmp_path):
    from dagger_wf.parameters import parse_value

    assert parse_value("n", "010", 3) == 10
    assert parse_value("lr", "1e-3", 0.1) == 0.001
    assert parse_value("flag", "False", True) is False
    assert parse_value("lrs", "[1, 0.5]", [0.1]) == [1.0, 0.5]
    assert parse_value("name", "12:30", "x") == "12:30"


def test_overrides_a_script_never_asks_for_stop_it_before_it_runs(tmp_path):
    plain = SCRIPT.replace("dg.parameters(", "__import__('types').SimpleNamespace(")
    (tmp_path / "plain.py").write_text(plain)
    result = _cli(tmp_path, "run", "plain.py", "epochs=2")
    assert result.returncode == 2 and "UnusedOverridesError" in result.stderr
    assert not (tmp_path / "store" / "states").exists()


def test_a_failing_experiment_exits_1_with_its_traceback(tmp_path):
    result = _cli(tmp_path, "run", "experiment.py", "explode=true")
    assert result.returncode == 1
    assert "ValueError: on purpose" in result.stderr


def test_history_show_and_diff(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py", "fractions=[0.5,0.9]").returncode == 0
    history = _cli(tmp_path, "history", "store", "--csv")
    assert history.returncode == 0 and history.stdout.startswith("key,parent,recipe,status")
    assert len(history.stdout.strip().splitlines()) == 5
    keys = {node.sha(): node for node in dg.Experiment.restore(tmp_path / "store").graph.nodes}
    pruned = sorted(key for key, node in keys.items() if node.tags)
    shown = _cli(tmp_path, "show", "store", pruned[0][:10])
    assert shown.returncode == 0 and "recipe fraction" in shown.stdout
    assert "class Prune(dg.Recipe):" in shown.stdout and "environment:" in shown.stdout
    diff = _cli(tmp_path, "diff", "store", pruned[0][:10], pruned[1][:10])
    assert diff.returncode == 0
    assert any(
        line.startswith("recipe fraction") and "*" in line for line in diff.stdout.splitlines()
    )


def test_version_is_the_package_version(tmp_path):
    result = _cli(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dagger-wf {dg.__version__}"


def test_show_in_a_git_repository_without_a_commit_says_so(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert _cli(tmp_path, "run", "experiment.py").returncode == 0
    root = dg.Experiment.restore(tmp_path / "store").root.sha()
    shown = _cli(tmp_path, "show", "store", root[:10])
    assert shown.returncode == 0, shown.stderr
    assert "git commit none (clean)" in shown.stdout  # untracked files do not count


def test_show_of_an_unknown_key_exits_2(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py").returncode == 0
    result = _cli(tmp_path, "show", "store", "zzzz")
    assert result.returncode == 2 and "No state of" in result.stderr and "'zzzz'" in result.stderr


def test_gc_removes_states_no_root_reaches_and_unused_blobs(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py").returncode == 0
    store = tmp_path / "store"
    trained = next(
        node
        for node in dg.Experiment.restore(store).graph.nodes
        if node.recipe is not None and node.recipe.class_name == "Train"
    )
    (store / "states" / f"{trained.sha()}.json").unlink()  # its child is now unreachable
    (store / "payloads" / f"{trained.sha()}.payload").unlink()
    dry = _cli(tmp_path, "gc", "store", "--dry-run")
    assert dry.returncode == 0 and "would remove 1 unreachable state(s)" in dry.stdout
    assert len(list(store.glob("states/*.json"))) == 2
    assert _cli(tmp_path, "gc", "store").returncode == 0
    assert len(list(store.glob("states/*.json"))) == 1  # the root


def test_check_purity_passes_a_pure_recipe_and_names_an_impure_one(experiment_dir):
    exp = dg.Experiment(experiment_dir, State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    pure, impure = Train(1, 0.1)(root), Impure()(root)
    assert exp.check_purity(pure).pure
    with pytest.warns(dg.ImpurityWarning, match=r"\['weights'\]"):
        report = exp.check_purity(impure, n=3)
    assert report.differing == ("weights",) and report.runs == 3
    assert not (experiment_dir / "states" / f"{impure.key}.json").exists()


def test_run_check_purity_flag_warns_about_an_impure_recipe(tmp_path):
    script = SCRIPT.replace("from trees import Explode", "from trees import Impure, Explode")
    script = script.replace('print("ran"', 'Impure()(trained)\nprint("ran"')
    (tmp_path / "impure.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "-m", "dagger_wf.cli", "run", "impure.py", "--check-purity"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ImpurityWarning" in result.stderr and "Impure() is not pure" in result.stderr


def _python(tmp_path, script: str, *arguments: str) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGUMENTS`` in ``tmp_path``, as a user starts a script."""
    return subprocess.run(
        [sys.executable, script, *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _states(directory) -> list[tuple]:
    history = dg.Experiment.restore(directory / "store").history()
    columns = ["key", "seed", "recipe.nb_epochs", "recipe.lr", "recipe.fraction"]
    return sorted(map(tuple, history[columns].astype(str).itertuples(index=False)))


def test_python_script_applies_overrides_and_seed_as_dagger_wf_run_does(tmp_path):
    arguments = ["epochs=2", "lr=1e-3", "fractions=[0.5,0.9]", "--seed", "7"]
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "experiment.py").write_text(SCRIPT)
    started = _python(tmp_path / "python", "experiment.py", *arguments)
    (tmp_path / "cli").mkdir()
    through_cli = _cli(tmp_path / "cli", "run", "experiment.py", *arguments)
    assert started.returncode == 0, started.stderr
    assert started.stdout == through_cli.stdout == "ran 4\n"
    assert _states(tmp_path / "python") == _states(tmp_path / "cli")
    assert "0.001" in {row[3] for row in _states(tmp_path / "python")}


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (["epoch=2"], "UnknownParameterError: Unknown parameter 'epoch'"),
        (["lr=0.1", "lr=0.2"], "DuplicateOverrideError: Parameter lr is given twice"),
        (["epochs=two"], "InvalidOverrideError: Override epochs='two' does not fit"),
        (["--scheduler", "fast"], "CommandLineError: --scheduler 'fast' is not one of"),
    ],
)
def test_python_script_with_a_bad_override_stops_before_any_work(tmp_path, arguments, error):
    (tmp_path / "experiment.py").write_text(SCRIPT)
    result = _python(tmp_path, "experiment.py", *arguments)
    assert result.returncode != 0 and error in result.stderr
    assert not (tmp_path / "store").exists()


def test_dagger_wf_run_refuses_a_repeated_override(tmp_path):
    result = _cli(tmp_path, "run", "experiment.py", "lr=0.1", "lr=0.2")
    assert result.returncode == 2 and "DuplicateOverrideError" in result.stderr
    assert not (tmp_path / "store").exists()


OWN_ARGPARSE = SCRIPT.replace(
    "params = dg.parameters(",
    "import argparse\n"
    "parser = argparse.ArgumentParser()\n"
    "parser.add_argument('--directory')\n"
    "parser.add_argument('--scheduler')\n"
    "own, _ = parser.parse_known_args()\n"
    "params = dg.parameters(",
).replace('dg.Experiment("store"', "dg.Experiment(own.directory")


def test_a_script_with_its_own_argparse_keeps_its_arguments(tmp_path):
    (tmp_path / "own.py").write_text(OWN_ARGPARSE)
    result = _python(tmp_path, "own.py", "--directory", "store", "--scheduler", "threads")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ran 3\n"


def test_overrides_among_a_script_s_own_arguments_name_the_command_that_takes_them(tmp_path):
    (tmp_path / "own.py").write_text(OWN_ARGPARSE)
    result = _python(tmp_path, "own.py", "--directory", "store", "lr=0.5")
    assert result.returncode != 0 and "MixedArgumentsError" in result.stderr
    assert "dagger-wf run own.py lr=0.5" in result.stderr
    assert not (tmp_path / "store").exists()


PLAIN = SCRIPT.replace("dg.parameters(", "__import__('types').SimpleNamespace(")


@pytest.mark.parametrize("compute", ["exp.run()", "trained.get()"])
def test_overrides_a_script_never_declares_stop_it_before_any_state_computes(tmp_path, compute):
    plain = PLAIN.replace('print("ran", len(exp.run().ran))', f"{compute}\nprint('computed')")
    (tmp_path / "plain.py").write_text(plain)
    through_cli = _cli(tmp_path, "run", "plain.py", "epochs=2")
    started = _python(tmp_path, "plain.py", "epochs=2")
    assert through_cli.returncode == 2 and "UnusedOverridesError" in through_cli.stderr
    assert started.returncode != 0 and "UnusedOverridesError" in started.stderr
    assert "computed" not in through_cli.stdout + started.stdout
    assert not (tmp_path / "store" / "states").exists()


def test_dagger_wf_snakefile_passes_a_script_its_overrides(tmp_path):
    emitted = _cli(tmp_path, "snakefile", "experiment.py", "epochs=2", "fractions=[0.5,0.9]")
    assert emitted.returncode == 0, emitted.stderr
    assert "ran 0" in emitted.stdout  # emitted, not run
    manifest = json.loads((tmp_path / "store" / "workflow" / "manifest.json").read_text())
    assert len(manifest["states"]) == 4  # the root, Train, and Prune at both fractions
    unknown = _cli(tmp_path, "snakefile", "experiment.py", "epoch=2")
    assert unknown.returncode == 2 and "Unknown parameter 'epoch'" in unknown.stderr


def test_history_fits_a_100_column_terminal_and_wide_shows_every_column(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py", "fractions=[0.5,0.9]").returncode == 0
    narrow = _cli(tmp_path, "history", "store")
    assert narrow.returncode == 0
    lines = narrow.stdout.splitlines()
    assert len(lines) == 5 and max(map(len, lines)) <= 100
    assert lines[0].split() == ["key", "parent", "recipe", "status", "tags", "duration_s"]
    wide = _cli(tmp_path, "history", "store", "--wide")
    assert {"seed", "host", "recipe.lr", "property.dataset_name"} <= set(wide.stdout.split())


def test_history_refuses_a_column_it_does_not_have_and_names_the_known_ones(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py").returncode == 0
    result = _cli(tmp_path, "history", "store", "--columns", "key,bogus")
    assert result.returncode == 2
    assert "No column 'bogus'" in result.stderr and "recipe, status" in result.stderr


def test_every_table_and_drawing_shows_keys_by_the_same_prefix(tmp_path):
    assert _cli(tmp_path, "run", "experiment.py").returncode == 0
    tree = dg.Experiment.restore(tmp_path / "store").graph
    root = tree.root.sha()
    history = _cli(tmp_path, "history", "store").stdout
    assert root[:12] in history and root[:13] not in history
    shown = _cli(tmp_path, "show", "store", root[:6]).stdout
    assert root[:12] in shown
    drawing = tree.to_graphviz().source
    assert root[:12] in drawing and f"{root[:13]} " not in drawing
