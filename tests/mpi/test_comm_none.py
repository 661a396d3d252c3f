"""comm=None under a multi-rank launch is a buffer per process: each rank says so, once."""

from __future__ import annotations

import json

import pytest
from mpi_jobs import mpirun, require_engine


def _results(kind: str) -> list[dict]:
    proc = mpirun(2, "tests/mpi/comm_none_worker.py", kind, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT" in proc.stdout, (proc.stdout[-3000:], proc.stderr[-3000:])
    return [
        json.loads(line[len("RESULT ") :]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]


@pytest.mark.parametrize("kind", ["none", "world"])
def test_comm_none_under_mpiexec_warns_on_every_rank(kind: str) -> None:
    require_engine("mpi")
    results = _results(kind)
    assert sorted(r["rank"] for r in results) == [0, 1], results
    for r in results:
        launch = [w for w in r["warnings"] if "ranks launched together" in w]
        if kind == "none":
            assert r["size"] == 1
            assert len(launch) == 1 and "one of 2 ranks" in launch[0] and "comm=MPI.COMM_WORLD" in launch[0]
        else:
            assert r["size"] == 2 and launch == []
