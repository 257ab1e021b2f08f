from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))


def run_snakemake(
    snakefile: Path, profile: str, *arguments: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``snakemake --profile profiles/<profile>`` on an emitted Snakefile, as a user runs it."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(ROOT / "profiles" / profile),
        "--snakefile",
        str(snakefile),
        *arguments,
    ]
    environment = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    result = subprocess.run(
        command,
        cwd=snakefile.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result


def payload_bytes(directory: Path) -> dict[str, bytes]:
    """Every stored payload of an experiment, by key, with the blobs it refers to."""
    blobs = b"".join(path.read_bytes() for path in sorted(directory.glob("blobs/*/*")))
    payloads = {path.stem: path.read_bytes() for path in sorted(directory.glob("payloads/*"))}
    return {**payloads, "blobs": blobs}


def flip_byte(path: Path, offset: int) -> None:
    """Invert the bits of one byte of a file in place (``offset`` < 0 counts from the end),
    as a failing disk or a stray write would."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(autouse=True)
def outside_the_project_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory: the environment a state records includes the
    git work tree around the working directory, which must not be this project's."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    return tmp_path / "experiment"
