from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
sys.path.insert(0, str(TESTS_DIR))


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    return tmp_path / "experiment"
