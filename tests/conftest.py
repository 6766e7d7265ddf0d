"""Shared test fixtures.

Tests that need the reference shelf (``../shared``: real files, parity
fixtures, facts) use the ``shared`` fixture, which skips with a clear message
when the shelf is absent. Nothing from it is ever copied into this repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ECGCORE_SHARED", REPO.parent / "shared"))


def shared_path(*parts) -> Path:
    """Path inside ../shared, skipping the calling test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference shelf file {p} is absent (tests that need ../shared are skipped)")
    return p


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared reference shelf; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared reference shelf not found at {SHARED}; real-file tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared) -> Path:
    return shared / "data"


@pytest.fixture
def rng():
    """A seeded generator: tests never use unseeded randomness."""
    return np.random.default_rng(20261122)
