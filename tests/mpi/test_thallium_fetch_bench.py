"""Smoke test of benchmarks/thallium_fetch.py: the engine and the bare Thallium program
(benchmarks/thallium_bare.cc, built with the engine) run side by side in one invocation."""

from __future__ import annotations

import math

from mpi_jobs import mpirun, require_engine, result_line


def test_thallium_benchmark_measures_the_bare_baseline_in_the_same_run() -> None:
    require_engine("thallium")
    proc = mpirun(2, "benchmarks/thallium_fetch.py", "--quick", "--json", "--r", "7")
    rows = result_line(proc, prefix="JSON ")
    assert "bare: measured now" in proc.stdout, proc.stdout + proc.stderr
    assert {row["sample"] for row in rows} == {"12KB", "602KB"}
    for row in rows:
        assert row["bare_us"] > 0 and not math.isnan(row["bw_ratio"]) and row["bw_ratio"] > 0, row
