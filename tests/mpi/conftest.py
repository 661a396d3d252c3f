"""Fixtures for the multi-rank tests.

Every scenario of tests/mpi/worker.py runs in one job per (ranks, engine) (starting ranks
costs seconds: torch and MPI load in every one); the tests share its results.
"""

from __future__ import annotations

from typing import Any

import pytest
from mpi_jobs import ENGINES, RANKS, cached_job


@pytest.fixture(params=RANKS, ids=lambda n: f"n{n}")
def ranks(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def job(ranks: int, engine: str) -> dict[str, Any]:
    """Every scenario of worker.py on `ranks` ranks with `engine`: run once, then cached.
    Returns {scenario: [per-rank results]}."""
    return cached_job("tests/mpi/worker.py", ranks, engine)
