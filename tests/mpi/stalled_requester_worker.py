"""Runs under ``mpiexec -n 4``, MPI engine. Rank 3 asks rank 0 for 16 rows of 12 KB and
reads only the reply's header: the payload stays unread, as if rank 3 stalled mid-transfer.
Ranks 0-2 then draw back to back; rank 0 must keep answering them while its reply to rank
3 is open, then drop that reply at its deadline, and its inserts (which wait for the
reply's read lock) must go through then. Each rank prints one JSON line."""

from __future__ import annotations

import json
import sys
import time

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from reverie import DistributedRehearsalBuffer, _core  # noqa: E402

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()
OWNER, STALLED = 0, 3
TIMEOUT = 2.0
SHAPE = (3, 32, 32)  # 12 KB rows: past MPICH's eager limit, so a reply is a rendezvous


def rows(first: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((n, *SHAPE), float(RANK))
    x[:, 0, 0, 0] = torch.arange(first, first + n, dtype=torch.float32)
    return x, torch.zeros(n, dtype=torch.int64)


def idle_barrier() -> None:
    """A barrier that sleeps instead of spinning (MPI's blocking one busy-polls a core that
    the servers of 4 ranks on 2 cores need)."""
    req = COMM.Ibarrier()
    while not req.Test():
        time.sleep(0.002)


def main() -> int:
    dbuf = DistributedRehearsalBuffer(
        64, {"x": (SHAPE, torch.float32)}, candidates=None, seed=3, comm=COMM, engine="mpi", timeout=TIMEOUT
    )
    x, y = rows(0, 64)
    dbuf.add({"x": x}, y)
    dbuf.flush()
    COMM.Barrier()
    dbuf.get_remote_samples(4).wait()  # learn the peers' sizes
    COMM.Barrier()
    out: dict = {"rank": RANK}
    if RANK == STALLED:
        request = _core.wire_encode_request(dbuf._token, 1_000_000, list(range(16)))
        reply = dbuf._transport.send_raw_request(OWNER, request, TIMEOUT, read_payload=False)
        out["header"] = None if reply is None else reply["status"].name
    idle_barrier()  # rank 0's reply to rank 3 is open from here on
    if RANK != STALLED:
        slowest, from_owner, bad = 0.0, 0, 0
        for _ in range(30):
            t = time.perf_counter()
            batch = dbuf.get_remote_samples(16).wait()
            slowest = max(slowest, time.perf_counter() - t)
            from_owner += int((batch.ranks == OWNER).sum())
            bad += int((batch["x"][:, 1].flatten(1)[:, 0] != batch.ranks.float()).sum())
        out.update(slowest_draw_s=slowest, from_owner=from_owner, bad=bad, excluded=dbuf.excluded_peers())
        out["failed_requests"] = int(dbuf.engine_stats()["failed_requests"])
    if RANK == OWNER:
        t = time.perf_counter()
        x, y = rows(64, 16)
        dbuf.add({"x": x}, y)
        dbuf.flush(timeout=3 * TIMEOUT)
        out["flush_s"] = time.perf_counter() - t
    print(json.dumps(out), flush=True)
    idle_barrier()
    dbuf.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
