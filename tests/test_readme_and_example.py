"""The README's code runs as written, and the example runs end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas
import pytest

ROOT = Path(__file__).parent.parent


def _python_blocks() -> str:
    readme = (ROOT / "README.md").read_text()
    return "\n".join(re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL))


def _run(arguments: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, *arguments], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readme_python_blocks_run_and_a_second_run_computes_nothing(tmp_path):
    script = tmp_path / "readme.py"
    script.write_text(_python_blocks())
    first = _run([str(script)], tmp_path)
    second = _run([str(script)], tmp_path)
    assert "5 states computed, 0 cached" in first.splitlines()
    assert "0 states computed, 5 cached" in second.splitlines()
    assert (tmp_path / "runs" / "tour" / "tree.svg").is_file()


@pytest.mark.slow
def test_lottery_example_runs_end_to_end_and_is_cached_the_second_time(tmp_path):
    directory = tmp_path / "lottery"
    arguments = ["--directory", str(directory), "--epochs", "1", "--finetune-epochs", "1"]
    first = _run([str(ROOT / "examples" / "lottery_ticket.py"), *arguments], tmp_path)
    second = _run(
        [str(ROOT / "examples" / "lottery_ticket.py"), *arguments, "--scheduler", "processes"],
        tmp_path,
    )
    analysis = _run(
        [str(ROOT / "examples" / "analyse_lottery.py"), "--directory", str(directory)], tmp_path
    )
    # a root, then per seed: Initialise, Train, and 6 prunings x (Prune, Rewind, Train, 2 FineTune)
    assert "97 states computed, 0 cached" in first
    assert "0 states computed, 97 cached" in second
    assert "dense accuracy" in analysis and "over 3 seeds" in analysis
    assert (directory / "accuracy_vs_sparsity.png").stat().st_size > 10_000
    assert (directory / "loss_curves.png").stat().st_size > 10_000
    assert (directory / "tree.svg").read_text().count('<g id="node') == 97


@pytest.mark.slow
def test_the_example_analysis_gives_every_configuration_over_three_seeds_in_words(tmp_path):
    directory = tmp_path / "lottery"
    small = ["--epochs", "1", "--finetune-epochs", "1", "--scheduler", "single-threaded"]
    _run(
        [str(ROOT / "examples" / "lottery_ticket.py"), "--directory", str(directory), *small],
        tmp_path,
    )
    analysis = _run(
        [str(ROOT / "examples" / "analyse_lottery.py"), "--directory", str(directory)], tmp_path
    )
    results = pandas.read_csv(directory / "results.csv")
    configurations = results.groupby(["technique", "schedule", "fraction pruned"])
    assert configurations.ngroups == 1 + 2 * 3 * 4  # dense, technique x fraction x schedule
    assert all(sorted(seeds) == [0, 1, 2] for _, seeds in configurations["seed"])
    assert set(results["technique"]) == {"not pruned", "magnitude pruning", "random pruning"}
    assert set(results["schedule"]) == {
        "dense training, not pruned",
        "pruned, not retrained",
        "rewound to init and retrained (ticket)",
        "fine-tuned at learning rate 0.1",
        "fine-tuned at learning rate 0.01",
    }
    assert all(0.0 < left <= 1.0 for left in results["weights left"])
    for words in ["magnitude pruning", "fine-tuned at learning rate 0.01", "sd", "seeds"]:
        assert words in analysis


@pytest.mark.slow
def test_readme_snakemake_commands_give_the_dask_numbers(tmp_path):
    """The README's workflow commands, with recipes defined in the script itself (shipped
    to jobs by value), against a Dask run of the same tree."""
    small = ["--epochs", "1", "--finetune-epochs", "1"]
    script = str(ROOT / "examples" / "lottery_ticket.py")
    _run([script, "--directory", "dask", "--scheduler", "single-threaded", *small], tmp_path)
    _run([script, "--directory", "workflow", "--emit-snakefile", *small], tmp_path)
    _run(["-m", "snakemake", "--profile", str(ROOT / "profiles" / "local")], tmp_path)
    analyse = str(ROOT / "examples" / "analyse_lottery.py")
    by_dask = _run([analyse, "--directory", "dask"], tmp_path)
    by_snakemake = _run([analyse, "--directory", "workflow"], tmp_path)
    assert by_dask.split("wrote")[0] == by_snakemake.split("wrote")[0]


def test_the_installed_package_declares_its_licence_as_an_spdx_expression():
    from importlib.metadata import metadata

    assert metadata("dagger_wf")["License-Expression"] == "MIT"
