"""Fixtures for the multi-rank tests.

Every scenario of tests/mpi/worker.py runs in one job per (ranks, engine) (starting ranks
costs seconds: torch and MPI load in every one); the tests share its results.
"""

from __future__ import annotations

from typing import Any

import pytest
from mpi_jobs import ENGINES, RANKS, mpirun, require_engine, result_line

_jobs: dict[tuple[int, str], dict[str, Any]] = {}


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
    require_engine(engine)
    key = (ranks, engine)
    if key not in _jobs:
        proc = mpirun(ranks, "tests/mpi/worker.py", "--engine", engine)
        try:
            _jobs[key] = result_line(proc)
        except AssertionError as e:
            _jobs[key] = {"error": str(e)}
    result = _jobs[key]
    if "error" in result:
        pytest.fail(result["error"])
    assert result["size"] == ranks
    return result["scenarios"]
