"""A requester that stalls mid-transfer holds up nobody but itself: the owner answers its
other peers meanwhile, drops the stalled reply at its deadline, and then applies inserts
(the rows stay read-locked while a reply is open)."""

from __future__ import annotations

from mpi_jobs import mpirun, require_engine
from mpi_launch import json_objects

TIMEOUT = 2.0  # the worker's transport timeout, s


def test_owner_serves_others_while_a_requester_stalls():
    require_engine("mpi")
    proc = mpirun(4, "tests/mpi/stalled_requester_worker.py", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["rank"]: r for r in json_objects(proc.stdout) if "rank" in r}
    assert sorted(results) == [0, 1, 2, 3], proc.stdout + proc.stderr[-3000:]
    assert results[3]["header"] == "ok", results  # rank 0 answered; rank 3 never read the rows
    for rank in (0, 1, 2):
        r = results[rank]
        assert r["bad"] == 0 and r["failed_requests"] == 0 and r["excluded"] == [], r
        # Before, rank 0's server waited for rank 3 to read, so these draws timed out.
        assert r["slowest_draw_s"] < TIMEOUT / 2, r
        if rank != 0:
            assert r["from_owner"] > 0, r
    assert "reply to rank 3 timed out; dropping it" in proc.stderr, proc.stderr[-3000:]
    assert results[0]["flush_s"] < 2 * TIMEOUT, results[0]  # the insert waited for that deadline only
