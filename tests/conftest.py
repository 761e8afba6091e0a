"""Shared fixtures: where the real data lives, and small graphs used across tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# helpers shared by test modules (strategies.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))


def shared_data_dir() -> Path:
    """``$VESSELTREE_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("VESSELTREE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that use it are skipped with a reason where it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set VESSELTREE_SHARED_DATA)")
    return path


def pytest_collection_modifyitems(config, items):
    # tests that take the shared_data fixture are real-data tests
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
