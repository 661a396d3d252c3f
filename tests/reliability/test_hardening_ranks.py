"""Hardening on real ranks, for each engine built: ranks that disagree on the schema or the
job token, a checkpoint broken on one rank, a rank that never joins a collective."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mpi_launch
import pytest

WORKER = Path(__file__).with_name("hardening_worker.py")
ENGINES = ["mpi", "thallium"]


def run(n: int, *args: str, timeout: float = 120) -> tuple[dict[int, dict], str]:
    cmd = [mpi_launch.MPIEXEC, "-n", str(n), sys.executable, str(WORKER), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    results: dict[int, dict] = {}
    for r in mpi_launch.json_objects(proc.stdout):  # a rank may report in several lines
        if "rank" in r:
            results.setdefault(r["rank"], {}).update(r)
    crashed = [r["crash"] for r in results.values() if "crash" in r]
    assert not crashed and sorted(results) == list(range(n)), (proc.stdout, proc.stderr)
    return results, proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("mode", "what"), [("schema", r"\(8,\)"), ("dtype", "x \\(4,\\) int32")])
def test_ranks_with_different_schemas_all_refuse(engine: str, mode: str, what: str) -> None:
    mpi_launch.require_engine(engine)
    results, _ = run(2, mode, engine)
    for rank, r in results.items():
        assert r["error"] is not None, f"rank {rank} built a buffer with a mismatched schema"
        assert r["error"].startswith("fields: the ranks disagree"), r
        assert re.search(what, r["error"]), r


@pytest.mark.parametrize("engine", ENGINES)
def test_foreign_token_is_loud_on_both_sides(engine: str) -> None:
    mpi_launch.require_engine(engine)
    results, stderr = run(4, "token", engine)
    last = 3
    for rank, r in results.items():
        assert r["intact"], r
        # Each rank meets the other job's token as an owner (a request it rejected) or as a
        # requester (a reply rejecting its request), whichever comes first: a rank that
        # rejected the other side's request first excludes it before ever asking it.
        assert r["bad_token_requests"] + r["bad_token_replies"] >= 1, r
        if rank == last:
            assert r["excluded"] == [0, 1, 2] and r["from_ranks"] == [last], r
        else:
            assert r["excluded"] == [last] and last not in r["from_ranks"], r
    assert sum(r["bad_token_requests"] for r in results.values()) >= 1, results
    assert sum(r["bad_token_replies"] for r in results.values()) >= 1, results
    assert "another job's token" in stderr and "wrong job token; excluding it" in stderr
    # Nobody waits at close for the other job's rank (which never says it closes): Thallium's
    # close waited the whole timeout (3 s) for it, then warned a peer had not closed; now
    # ~0.2 s (Thallium) and ~0.01 s (MPI) on the 2-core dev box. Half the timeout tells them apart.
    for rank, r in results.items():
        assert "close_s" in r, (rank, r, stderr)
        assert r["close_s"] < 1.5 and r["close_warnings"] == [], (rank, r)


@pytest.mark.parametrize("engine", ENGINES)
def test_load_broken_on_one_rank_raises_on_every_rank(engine: str, tmp_path: Path) -> None:
    mpi_launch.require_engine(engine)
    results, _ = run(2, "broken-load", engine, str(tmp_path / "ckpt"))
    assert "rank-1.pt: refused or unreadable" in results[1]["error"], results
    assert results[0]["error"].startswith("CheckpointError: path: no usable checkpoint"), results
    assert "rank 1:" in results[0]["error"], results
    assert all(r["seconds"] < 10 for r in results.values()), results


def test_rank_missing_from_a_collective_times_out_instead_of_hanging() -> None:
    mpi_launch.require_engine("mpi")
    results, _ = run(2, "late-rank", "mpi")
    assert "setup: rank 0 waited 3 s for the other ranks" in results[0]["error"], results
    assert 3 <= results[0]["seconds"] < 8, results
    assert results[1]["released_by"] == "done"
