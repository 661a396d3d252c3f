"""Runs under mpiexec; one JSON line per rank. Modes (argv: MODE ENGINE [DIR]):
schema        the last rank declares field x with another shape: every rank must refuse
dtype         the last rank declares field x with another dtype: every rank must refuse
token         the last rank's job token changes after bootstrap: both sides must see it
broken-load   a checkpoint whose rank-1 file is truncated: every rank must raise, none hang
late-rank     rank 1 never joins the constructor: rank 0 must get TimeoutError in time
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from reverie.distributed import DistributedRehearsalBuffer  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.rank, COMM.size
LAST = SIZE - 1
TIMEOUT = 3.0


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps({"rank": RANK, **obj}) + "\n")
    sys.stdout.flush()


def make(engine: str, fields: dict | None = None, **kw) -> DistributedRehearsalBuffer:
    fields = fields or {"x": ((4,), torch.float32)}
    return DistributedRehearsalBuffer(100, fields, comm=COMM, engine=engine, timeout=TIMEOUT, **kw)


def fill(dbuf: DistributedRehearsalBuffer) -> None:
    y = torch.arange(20) % 5
    x = torch.stack([torch.full((20,), float(RANK)), y.float(), torch.zeros(20), torch.full((20,), 7.0)], 1)
    dbuf.add(x, y)
    dbuf.flush()


def refused(engine: str, fields: dict) -> dict:
    t = time.perf_counter()
    try:
        make(engine, fields).close()
    except ValueError as exc:
        return {"error": str(exc), "seconds": time.perf_counter() - t}
    return {"error": None}


def schema(engine: str) -> dict:
    shape = (8,) if RANK == LAST else (4,)
    return refused(engine, {"x": (shape, torch.float32)})


def dtype(engine: str) -> dict:
    kind = torch.int32 if RANK == LAST else torch.float32
    return refused(engine, {"x": ((4,), kind)})


def token(engine: str) -> None:
    if RANK == LAST:  # a rank whose token changed after the agreement at construction
        original = DistributedRehearsalBuffer._make_transport

        def foreign(self, engine, address, tok):
            return original(self, engine, address, tok ^ 0x5A5A)

        DistributedRehearsalBuffer._make_transport = foreign
    with make(engine) as dbuf:
        fill(dbuf)
        COMM.Barrier()
        intact, from_ranks = True, set()
        for _ in range(5):
            s = dbuf.get_remote_samples(16).wait()
            intact &= bool(torch.equal(s["x"][:, 0].int(), s.ranks) and torch.all(s["x"][:, 3] == 7.0))
            from_ranks |= set(s.ranks.tolist())
        COMM.Barrier()  # every rank has drawn (and so been rejected) before anyone reports
        stats = dbuf.engine_stats()
        # Reported before the close: a close that waited for the other job's rank until the
        # timeout (as Thallium's did) left without MPI_Finalize, and the first rank out ended
        # the job before a later rank could report.
        emit(
            {
                "excluded": dbuf.excluded_peers(),
                "bad_token_replies": int(stats["bad_token_replies"]),
                "bad_token_requests": int(stats["bad_token_requests"]),
                "from_ranks": sorted(from_ranks),
                "intact": intact,
            }
        )
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dbuf.close()
        emit({"close_s": time.perf_counter() - t, "close_warnings": [str(w.message) for w in caught]})


def broken_load(engine: str, directory: str) -> dict:
    with make(engine) as dbuf:
        fill(dbuf)
        dbuf.save(directory)
    COMM.Barrier()
    if RANK == 1:
        file = os.path.join(directory, "rank-1.pt")
        with open(file, "r+b") as f:
            f.truncate(200)
    COMM.Barrier()
    t = time.perf_counter()
    try:
        DistributedRehearsalBuffer.load(directory, comm=COMM, engine=engine, timeout=TIMEOUT).close()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t}
    return {"error": None}


def late_rank(engine: str) -> dict:
    if RANK == 0:
        t = time.perf_counter()
        try:
            make(engine).close()
            out = {"error": None}
        except TimeoutError as exc:
            out = {"error": str(exc), "seconds": time.perf_counter() - t}
        for peer in range(1, SIZE):
            COMM.send("done", dest=peer, tag=77)
    else:
        out = {"error": None, "released_by": COMM.recv(source=0, tag=77)}
    emit(out)
    os._exit(0)  # rank 0 holds a collective that never completes: MPI_Finalize would wait


def main() -> None:
    mode, engine = sys.argv[1], sys.argv[2]
    try:
        if mode == "broken-load":
            result = broken_load(engine, sys.argv[3])
        else:
            result = {"schema": schema, "dtype": dtype, "token": token, "late-rank": late_rank}[mode](engine)
    except Exception:
        emit({"crash": traceback.format_exc()})
        COMM.Abort(1)
    if result is not None:  # token reports itself, before and after it closes
        emit(result)


if __name__ == "__main__":
    main()
