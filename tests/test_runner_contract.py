"""The contract every runner keeps, checked on each of them.

Single-threaded, threads and processes Dask schedulers, a ``dask.distributed``
LocalCluster, and the emitted Snakemake workflow under ``profiles/local`` must agree:
a state computed once is never computed again, a failure stops only its own subtree,
Functions run on every run, and the stored bytes are those of a single-threaded run.
What each runner did is read back from the store, as a user would, not from its events.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TESTS_DIR, payload_bytes, run_snakemake
from trees import DrawsRandom, Explode, Prune, Scale, State, record_visit

import dagger_wf as dg

RUNNERS = ["single-threaded", "threads", "processes", "local-cluster", "snakemake"]

Run = Callable[..., None]  # run(exp, seed=None): compute the tree of exp, keep going


@pytest.fixture(scope="module")
def visits_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where ``record_visit`` logs each Function call, in every worker: set before any
    worker process starts, since workers read the variable from their own environment."""
    path = tmp_path_factory.mktemp("visits") / "visits.txt"
    saved = os.environ.get("DAGGER_TEST_VISITS")
    os.environ["DAGGER_TEST_VISITS"] = str(path)
    yield path
    if saved is None:
        del os.environ["DAGGER_TEST_VISITS"]
    else:
        os.environ["DAGGER_TEST_VISITS"] = saved


@pytest.fixture(scope="module")
def local_cluster_client(visits_file: Path) -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    saved = os.environ.get("PYTHONPATH")
    # Worker processes import the test recipes by module name.
    os.environ["PYTHONPATH"] = TESTS_DIR.as_posix() + os.pathsep + (saved or "")
    try:
        with (
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(params=RUNNERS)
def run(request: pytest.FixtureRequest, visits_file: Path, tmp_path: Path) -> Run:
    """``run(exp, seed=None)`` computes the tree of ``exp`` as that runner does; a failing
    recipe does not stop it (exp.run() raises the first failure once all is done)."""
    name = request.param
    visits_file.write_text("")
    if name == "snakemake":

        def run_workflow(exp: dg.Experiment, seed: int | None = None) -> None:
            snakefile = exp.emit_snakefile(tmp_path / "Snakefile", seed=seed)
            run_snakemake(snakefile, "local", check=False)

        return run_workflow
    options: dict[str, object] = {"scheduler": name}
    if name == "local-cluster":
        options = {"client": request.getfixturevalue("local_cluster_client")}

    def run_dask(exp: dg.Experiment, seed: int | None = None) -> None:
        # Explode's failure is raised once every other branch has finished.
        with contextlib.suppress(ValueError):
            exp.run(seed=seed, **options)

    return run_dask


def _deterministic_tree(directory: Path) -> tuple[dg.Experiment, dict[str, str]]:
    exp = dg.Experiment(directory, State)
    root = exp.spawn_new_tree(dataset_name="digits", model_name="mlp")
    keys = {"root": root.key}
    for factor in (2, 3):
        scaled = Scale(factor)(root)
        dg.Function(record_visit)(scaled)
        keys[f"scaled {factor}"] = scaled.key
        keys[f"pruned {factor}"] = Prune("magnitude", 0.5)(scaled).key
    return exp, keys


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("reference")
    _deterministic_tree(directory)[0].run(scheduler="single-threaded")
    return payload_bytes(directory)


def _stored(directory: Path) -> dict[str, dg.ExperimentState]:
    return dg.Experiment.restore(directory).graph.node_map


def test_every_state_is_stored_with_the_bytes_of_a_single_threaded_run(
    run: Run, tmp_path: Path, reference: dict[str, bytes]
) -> None:
    exp, keys = _deterministic_tree(tmp_path / "store")
    run(exp)
    assert set(_stored(tmp_path / "store")) == set(keys.values())
    assert payload_bytes(tmp_path / "store") == reference


def test_a_second_run_computes_nothing_but_runs_every_function_again(
    run: Run, tmp_path: Path, visits_file: Path
) -> None:
    exp, keys = _deterministic_tree(tmp_path / "store")
    run(exp)
    first = {
        key: state.dagger.record.finished for key, state in _stored(tmp_path / "store").items()
    }
    again, _ = _deterministic_tree(tmp_path / "store")
    run(again)
    second = {
        key: state.dagger.record.finished for key, state in _stored(tmp_path / "store").items()
    }
    assert second == first
    evaluated = [keys["scaled 2"], keys["scaled 3"]]
    assert sorted(visits_file.read_text().split()) == sorted(evaluated * 2)


def test_a_failure_fails_its_state_skips_its_subtree_and_every_other_branch_finishes(
    run: Run, tmp_path: Path
) -> None:
    exp = dg.Experiment(tmp_path / "store", State)
    root = exp.spawn_new_tree(dataset_name="d", model_name="m")
    doomed = Explode("recipe bug")(Scale(1)(root))
    below = Scale(2)(doomed)
    healthy = Prune("magnitude", 0.5)(Scale(3)(root))
    run(exp)
    stored = _stored(tmp_path / "store")
    assert stored[doomed.key].dagger.status is dg.Status.FAILED
    assert "ValueError: recipe bug" in (stored[doomed.key].dagger.error or "")
    assert below.key not in stored
    assert stored[healthy.key].dagger.status is dg.Status.DONE


def test_a_seeded_stochastic_recipe_stores_what_a_single_threaded_run_stores(
    run: Run, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if request.node.callspec.params["run"] == "threads":
        pytest.skip("threads share Python's global generator: only state.dagger.seed is safe there")

    def drawn(directory: Path, runner: Run) -> tuple[list[float], int | None]:
        exp = dg.Experiment(directory, State)
        state = DrawsRandom()(exp.spawn_new_tree(dataset_name="d", model_name="m"))
        runner(exp, seed=7)
        with _stored(directory)[state.key].lazy_load() as loaded:
            return loaded.weights, loaded.dagger.record.seed

    def single_threaded(exp: dg.Experiment, seed: int | None = None) -> None:
        exp.run(scheduler="single-threaded", seed=seed)

    assert drawn(tmp_path / "store", run) == drawn(tmp_path / "reference", single_threaded)
