"""Smoke test of benchmarks/overhead.py: runs under mpiexec -n 2 --quick, prints the three loops."""

from __future__ import annotations

import pytest
from mpi_jobs import mpirun, require_engine

pytestmark = pytest.mark.first_mpi_only


def test_overhead_benchmark_runs_and_prints_the_ratio():
    require_engine("mpi")
    proc = mpirun(2, "benchmarks/overhead.py", "--quick", "--engine", "mpi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ranks=2 device=cpu (gloo) engine=mpi b=56 r=7 c=14" in out, out
    for loop in ("plain ", "reverie ", "sync "):
        assert any(line.startswith(loop) for line in out.splitlines()), out
    assert "exposed overhead (reverie / plain - 1):" in out
    assert "(add " in out and "wait " in out and "concat " in out
    # Per-thread CPU (Linux /proc): the Reverie loop's rows name the engine's threads.
    cpu = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "total" in line}
    assert set(cpu) == {"plain", "reverie", "sync"}, out
    assert "main " in cpu["plain"] and "reverie-worker" in cpu["reverie"], out
