"""Runs under ``mpiexec -n 3``: ``late_push_worker.py ENGINE``. Rank 0 draws while rank 1
is stopped (SIGSTOP, sent by rank 0) past the timeout, keeps drawing from itself and rank 2,
then resumes rank 1, whose server now answers the stale request (for Thallium: a bulk push
into the memory that request named). Every draw rank 0 returned must stay intact. One JSON
line per rank."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from fault_worker import intact  # noqa: E402  (same directory: the rows fault_worker checks)
from mpi4py import MPI  # noqa: E402
from proc_state import wait_for_state  # noqa: E402

from reverie.distributed import DistributedRehearsalBuffer  # noqa: E402

COMM = MPI.COMM_WORLD
RANK = COMM.rank
TIMEOUT = 1.5
VICTIM = 1


def fill(dbuf: DistributedRehearsalBuffer) -> None:
    y = torch.arange(40) % 5
    x = torch.stack(
        [torch.full((40,), float(RANK)), y.float(), torch.arange(40).float(), torch.full((40,), 7.0)], 1
    )
    dbuf.add(x, y)
    dbuf.flush()


def requester(dbuf: DistributedRehearsalBuffer, victim_pid: int) -> dict:
    os.kill(victim_pid, signal.SIGSTOP)  # delivered asynchronously: draw only once it took effect
    wait_for_state(victim_pid, ("T",), timeout=20, poll=0.001)
    draws, from_victim = [], 0
    for _ in range(4):  # the first times out on the victim; the others reuse both blocks
        draws.append(dbuf.get_remote_samples(24).wait(timeout=4 * TIMEOUT))
        from_victim += int((draws[-1].ranks == VICTIM).sum())
    latest = [(s, s["x"].clone(), s.labels.clone()) for s in draws[-2:]]  # one per receive block
    os.kill(victim_pid, signal.SIGCONT)
    COMM.send("resumed", dest=VICTIM, tag=5)
    late = COMM.recv(source=VICTIM, tag=6)  # the victim's server has answered the stale request
    # The two latest draws are still the current contents of the two receive blocks: a late
    # write into either would show here.
    unchanged = [bool(torch.equal(s["x"], x) and torch.equal(s.labels, y)) for s, x, y in latest]
    intact_draws = [intact(s) for s in draws]
    for _ in range(4):
        s = dbuf.get_remote_samples(24).wait(timeout=4 * TIMEOUT)
        from_victim += int((s.ranks == VICTIM).sum())
        intact_draws.append(intact(s))
    return {
        "excluded": dbuf.excluded_peers(),
        "late_answers": late,
        "intact": intact_draws,
        "unchanged": unchanged,
        "from_victim_after_stop": from_victim,
    }


def victim(dbuf: DistributedRehearsalBuffer, served_before: int) -> dict:
    assert COMM.recv(source=0, tag=5) == "resumed"
    deadline = time.monotonic() + 20
    while dbuf._transport.requests_served <= served_before and time.monotonic() < deadline:
        time.sleep(0.01)
    answered = dbuf._transport.requests_served - served_before
    COMM.send(answered, dest=0, tag=6)
    return {"answered_after_resume": answered}


def main() -> None:
    engine = sys.argv[1]
    dbuf = DistributedRehearsalBuffer(
        100, {"x": ((4,), torch.float32)}, comm=COMM, engine=engine, timeout=TIMEOUT
    )
    fill(dbuf)
    COMM.Barrier()
    dbuf.get_remote_samples(8).wait()  # every rank learns every size
    COMM.Barrier()
    pids = COMM.allgather(os.getpid())
    served_before = dbuf._transport.requests_served
    COMM.Barrier()
    if RANK == 0:
        out = requester(dbuf, pids[VICTIM])
    elif RANK == VICTIM:
        out = victim(dbuf, served_before)
    else:
        out = {}
    COMM.Barrier()
    sys.stdout.write(json.dumps({"rank": RANK, **out}) + "\n")
    sys.stdout.flush()
    dbuf.close()
    os._exit(0)  # rank 0 excluded rank 1: skip MPI_Finalize's wait on a peer it gave up on


if __name__ == "__main__":
    main()
