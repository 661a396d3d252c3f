"""Smoke test of benchmarks/scaling.py --quick: it launches itself under mpiexec at 2 and 4
ranks, prints the table, fits the model and writes the plot. Counts are checked, never times."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from mpi_jobs import REPO, require_engine

pytestmark = pytest.mark.first_mpi_only


def test_scaling_benchmark_quick_run_counts_messages_and_models_them(tmp_path):
    require_engine("mpi")
    out, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
    plotting = importlib.util.find_spec("matplotlib") is not None  # absent in the second MPI's venv
    cmd = [sys.executable, str(REPO / "benchmarks/scaling.py"), "--quick", "--json", str(out)]
    cmd += ["--plot", str(png)] if plotting else []
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "predicted_us" in proc.stdout and "research setup: 128 ranks" in proc.stdout
    assert not plotting or png.stat().st_size > 10_000
    result = json.loads(out.read_text())
    rows = {(r["P"], r["r"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {
        (p, r, m) for p in (2, 4) for r in (1, 7) for m in ("reverie", "raw_all", "raw_owner")
    }
    for (p, r, method), row in rows.items():
        if method == "raw_all":
            assert row["messages"] == p - 1
        else:  # owner-only: at most one message per owner the draw takes rows from
            assert 0 < row["messages"] <= min(r, p - 1) + 0.05, row
        assert row["p50_us"] > 0 and row["p99_us"] >= row["p50_us"]
    assert rows[(4, 1, "reverie")]["messages"] < 1.0  # r = 1: a quarter of the draws are local
    assert set(result["models"]) == {"reverie", "raw_all", "raw_owner"}
    big = [x for x in result["predictions"] if x["P"] == 1024 and x["r"] == 7 and x["profile"] == "hpc"]
    assert {x["method"] for x in big} == {"reverie", "raw_all", "raw_owner"}
