"""Smoke test of benchmarks/remote_fetch.py: runs under mpiexec -n 2 --quick, in both
patterns, and prints its table."""

from __future__ import annotations

from mpi_jobs import mpirun, require_engine, result_line


def test_remote_fetch_benchmark_runs_and_prints_ratios():
    require_engine("mpi")
    proc = mpirun(2, "benchmarks/remote_fetch.py", "--quick", "--json")
    rows = result_line(proc, prefix="JSON ")
    header = next(ln for ln in proc.stdout.splitlines() if "bw_ratio" in ln)
    for column in (
        "draw_us",
        "raw_us",
        "bw_ratio",
        "rem_ratio",
        "lat_ratio",
        "cold_ratio",
        "eng_ratio",
        "remote",
        "rtt_us",
    ):
        assert column in header
    assert {row["sample"] for row in rows} == {"12KB", "602KB"}
    for row in rows:
        assert row["bw_ratio"] > 0 and row["lat_ratio"] > 0
        assert 0 < row["remote"] <= 1


def test_remote_fetch_benchmark_one_requester_draws_only_remote_rows():
    require_engine("mpi")
    proc = mpirun(2, "benchmarks/remote_fetch.py", "--quick", "--json", "--pattern", "one")
    rows = result_line(proc, prefix="JSON ")
    assert "pattern=one" in proc.stdout
    assert {row["sample"] for row in rows} == {"12KB", "602KB"}
    for row in rows:
        assert row["remote"] == 1.0  # rank 0's buffer is empty
        assert row["lat_ratio"] > 0 and row["cold_ratio"] > 0
