"""Smoke test of benchmarks/idle_server.py: a short run under mpiexec -n 2 on each engine
prints the idle CPU share of every rank and the spaced-draw latencies beside raw MPI."""

from __future__ import annotations

import pytest
from mpi_jobs import ENGINES, mpirun, require_engine, result_line

pytestmark = pytest.mark.first_mpi_only


@pytest.mark.parametrize("engine", ENGINES)
def test_idle_server_benchmark_runs_and_prints_both_measures(engine: str) -> None:
    require_engine(engine)
    args = ("--engine", engine, "--seconds", "0.3", "--draws", "5", "--gap-ms", "2")
    proc = mpirun(2, "benchmarks/idle_server.py", *args, env={"REVERIE_IDLE_SLEEP_US": "500"})
    result = result_line(proc, prefix="JSON ")
    assert sorted(row["rank"] for row in result["cpu"]) == [0, 1]
    assert all(0 <= row["idle_core_share"] < 2 for row in result["cpu"])
    assert result["p50_us"] > 0 and result["p99_us"] >= result["p50_us"]
    assert result["raw_p50_us"] > 0 and "reverie/raw p50" in proc.stdout
