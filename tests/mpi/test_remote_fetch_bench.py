"""Smoke test of benchmarks/remote_fetch.py: runs under mpiexec -n 2 --quick, in both
patterns, and prints its table; launches itself over both paths (--launch, --path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mpi_jobs import REPO, mpirun, require_engine, result_line
from mpi_launch import find_mpiexec, launcher_is_open_mpi


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
        "slow",
        "sleeps",
        "local_us",
        "ans_us",
        "rows_us",
    ):
        assert column in header
    assert {row["sample"] for row in rows} == {"12KB", "602KB"}
    for row in rows:
        assert row["bw_ratio"] > 0 and row["lat_ratio"] > 0
        assert 0 < row["remote"] <= 1
        # One median per round (2 with --quick); slow counts those over twice the fastest.
        fastest = min(row["round_us"])
        assert len(row["round_us"]) == 2 and fastest > 0, row
        assert row["slow_rounds"] == sum(t > 2 * fastest for t in row["round_us"]), row
        # The drawing thread's voluntary context switches per draw, per round (Linux /proc).
        assert len(row["round_sleeps"]) == 2 and min(row["round_sleeps"]) >= 0, row
        assert abs(row["sleeps"] - sum(row["round_sleeps"]) / 2) < 0.01, row
        # The engine's share split: its local copy, then waiting for answers and for rows
        # (medians per draw, each at most the engine's share, which is at most the draw).
        assert row["local_us"] > 0 and row["ans_us"] >= 0 and row["rows_us"] > 0, row
        for part in ("local_us", "ans_us", "rows_us"):
            assert row[part] <= row["eng_us"] <= row["draw_us"], row


def test_remote_fetch_benchmark_one_requester_draws_only_remote_rows():
    require_engine("mpi")
    proc = mpirun(2, "benchmarks/remote_fetch.py", "--quick", "--json", "--pattern", "one")
    rows = result_line(proc, prefix="JSON ")
    assert "pattern=one" in proc.stdout
    assert {row["sample"] for row in rows} == {"12KB", "602KB"}
    for row in rows:
        assert row["remote"] == 1.0  # rank 0's buffer is empty
        assert row["lat_ratio"] > 0 and row["cold_ratio"] > 0


def launch(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """remote_fetch.py --launch 2 with `args`, quick, 7 x 12 KB: the run and its JSON rows."""
    quick = ["--launch", "2", *args, "--quick", "--sizes", "12KB", "--r", "7", "--json"]
    proc = subprocess.run(
        [sys.executable, "benchmarks/remote_fetch.py", *quick],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return proc, result_line(proc, prefix="JSON ")


def test_remote_fetch_benchmark_launches_itself_over_both_paths():
    # --launch starts the benchmark under mpiexec per path; every row names its ranks, path
    # and MPI, and the launcher checked the engine settled the path asked for.
    require_engine("mpi")
    proc, rows = launch("--path", "shm", "net")
    assert [(row["ranks"], row["path"], row["engine_path"]) for row in rows] == [
        (2, "shm", "shm"),
        (2, "net", "net"),
    ]
    for row in rows:
        assert row["mpi"].split()[0] in ("MPICH", "Open") and row["bw_ratio"] > 0
    table = [ln.split() for ln in proc.stdout.splitlines() if ln.strip().startswith("2 ")]
    assert [ln[1] for ln in table] == ["shm", "net"], proc.stdout
    # The floor program (plain MPI moving the same rows from random slots) ran under the
    # same launch, and each row carries its best way and the draw's ratio to it.
    for row in rows:
        ways = {way: us for way, us in row["floor_ways"].items() if us is not None}
        assert set(ways) == {"rows", "packed", "gathered", "split"}, row  # 12 KB: three 4 KiB pieces
        assert row["floor_how"] in ways and row["floor_us"] == min(ways.values()) > 0, row
        assert row["vs_floor"] == row["draw_us"] / row["floor_us"], row
        assert row["c_raw_us"] > 0, row
    assert "floor_us" in proc.stdout and "floor not measured" not in proc.stdout


@pytest.mark.parametrize("row_bytes, splits", [(4096, False), (12288, True), (16384, True), (20480, False)])
def test_floor_program_splits_rows_of_two_to_four_pieces(row_bytes: int, splits: bool):
    # The floor's split way sends each row in 4 KiB pieces, as the engine does over UCX, only
    # where the engine would (2 to 4 pieces a row); elsewhere it reports null.
    require_engine("mpi")
    import reverie

    floor = Path(reverie.__file__).parent / "_bench" / "mpi_rows"
    cmd = [find_mpiexec(), "-n", "2", str(floor), str(row_bytes), "64", "0.05", "all", "7"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("{")))
    assert got["r"] == 7 and min(got[f"{w}_us"] for w in ("contig", "rows", "packed", "gathered")) > 0, got
    assert (got["split_us"] is not None and got["split_us"] > 0) if splits else got["split_us"] is None, got


@pytest.mark.first_mpi_only
def test_remote_fetch_launch_names_the_tuning_variables_it_ran_under():
    # A user's tuning variable (here the engine's reply way) reaches the job and is named
    # under the table and in each row; a path variable the launcher strips for the path
    # asked for (NOLOCAL, on shm) is not.
    require_engine("mpi")
    env = {**os.environ, "REVERIE_MPI_REPLY": "rows", "MPIR_CVAR_NOLOCAL": "1"}
    proc, rows = launch("--path", "shm", "--no-floor", env=env)
    assert [(row["path"], row["engine_path"]) for row in rows] == [("shm", "shm")], proc.stdout
    assert rows[0]["settings"] == {"REVERIE_MPI_REPLY": "rows"}, rows
    assert "# shm: tuning variables from the environment: REVERIE_MPI_REPLY=rows" in proc.stdout


@pytest.mark.first_mpi_only
def test_remote_fetch_launch_repeats_jobs_and_reports_the_median_job():
    # --repeat 3: three jobs of the case; the row is the job of median lat_ratio (its other
    # columns from that same job) and the table names the range over the three.
    require_engine("mpi")
    proc, rows = launch("--path", "shm", "--no-floor", "--repeat", "3")
    assert proc.stdout.count("# shm: ") == 3 + 1, proc.stdout  # three launches, one settings line
    assert len(rows) == 1 and rows[0]["jobs"] == 3, rows
    row = rows[0]
    assert len(row["lat_ratios"]) == 3 and row["lat_ratio"] == sorted(row["lat_ratios"])[1], row
    assert row["lat_ratio"] == pytest.approx(row["draw_us"] / row["raw_us"]), row
    table = [ln.split() for ln in proc.stdout.splitlines() if ln.strip().startswith("2 ")]
    low, high = (float(v) for v in table[0][-1].split("-"))
    assert low == round(min(row["lat_ratios"]), 2) and high == round(max(row["lat_ratios"]), 2), proc.stdout


@pytest.mark.first_mpi_only
def test_remote_fetch_launch_refuses_a_repeat_below_one():
    proc = subprocess.run(
        [sys.executable, "benchmarks/remote_fetch.py", "--launch", "2", "--repeat", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--repeat: expected a whole number of jobs >= 1, got 0" in proc.stderr


def test_remote_fetch_launches_mpichs_ofi_module():
    # --path ofi: MPICH's OFI network module (MPIR_CVAR_CH4_NETMOD=ofi beside NOLOCAL); the
    # engine settles the network path and reads OFI's eager limit, so 12 KB rows go packed.
    require_engine("mpi")
    if launcher_is_open_mpi():
        pytest.skip("--path ofi is MPICH's")
    proc, rows = launch("--path", "ofi")
    assert [(row["path"], row["engine_path"]) for row in rows] == [("ofi", "net")], proc.stdout
    assert rows[0]["draw_us"] > 0 and rows[0]["floor_us"] > 0, rows


@pytest.mark.first_mpi_only
def test_remote_fetch_launch_puts_both_engines_and_both_baselines_in_one_table():
    # --engine mpi thallium: each path runs both engines, Thallium on the protocol that
    # matches the path (na+sm on shm, ofi+tcp on net), and the Thallium rows carry our bare
    # Thallium program's time for the same rows beside the raw MPI exchange's.
    require_engine("mpi")
    require_engine("thallium")
    proc, rows = launch("--engine", "mpi", "thallium", "--path", "shm", "net", "--no-floor")
    assert [(row["path"], row["engine"]) for row in rows] == [
        ("shm", "mpi"),
        ("shm", "thallium/na+sm"),
        ("net", "mpi"),
        ("net", "thallium/ofi+tcp"),
    ], proc.stdout
    for row in rows:
        assert row["raw_us"] > 0 and row["draw_us"] > 0, row
        if row["engine"] == "mpi":
            assert "bare_us" not in row, row
            assert row["ans_us"] >= 0 and row["rows_us"] >= 0, row
        else:
            assert row["bare_us"] > 0 and row["vs_bare"] == row["draw_us"] / row["bare_us"], row
            assert row["ans_us"] is None and row["rows_us"] is None, row  # one-step replies
    assert "bare_us" in proc.stdout and "drawing from each other" in proc.stdout
