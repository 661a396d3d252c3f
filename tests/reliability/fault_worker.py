"""Runs under ``mpiexec -disable-auto-cleanup -n 4`` (MPICH; Open MPI: ``--enable-recovery``):
``fault_worker.py FAULT ENGINE OUT_DIR``. Rank 3 really dies mid-run (crash:
``os._exit`` with its threads running, no close, no MPI_Finalize — to its peers exactly what
a segfault or an OOM kill looks like; a literal SIGKILL cannot be used because Hydra then
tears down the whole job whatever the flags) or stops (a real SIGSTOP); the survivors must keep drawing correct samples, exclude it,
and close within the timeout. With FAULT ``stall-close`` rank 3 draws to the end like the
others and stops (SIGSTOP) instead of closing: the survivors never lost a draw to it, and
their close must give up after the timeout. Each rank writes its JSON result to OUT_DIR/rank<N>.json (Open
MPI's launcher, once a rank failed, may drop the survivors' output) and prints it, and its
stderr to OUT_DIR/rank<N>.err; survivors
then simply return:
Reverie must end them although MPI_Finalize would wait for the lost peer forever."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch
from mpi4py import MPI
from proc_state import DEAD, wait_for_state

from reverie import DistributedRehearsalBuffer

VICTIM = 3
TIMEOUT = 3.0


def emit(obj: dict, out_dir: Path) -> None:
    text = json.dumps(obj)
    part = out_dir / f"rank{obj['rank']}.json.part"
    part.write_text(text)
    part.rename(out_dir / f"rank{obj['rank']}.json")  # whole or absent for the reader
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = (torch.arange(16) + step) % 5
    x = torch.empty(16, 4)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3] = float(rank), y.float(), float(step), 7.0
    return x, y


def intact(s) -> bool:
    x = s["x"]
    return bool(
        torch.equal(x[:, 0].int(), s.ranks)
        and torch.equal(x[:, 1].long(), s.labels)
        and torch.all(x[:, 3] == 7.0)
    )


def stop_self(rank: int, out_dir: Path) -> None:
    """The victim writes its result (with its pid, for the test to kill it) and stops."""
    emit({"rank": rank, "pid": os.getpid(), "victim": True}, out_dir)
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(60)  # only reached if the signal were ignored; the test fails on it


def main() -> None:
    fault, engine, out_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    # Hydra (-disable-auto-cleanup) tells survivors of a failure with SIGUSR1, which would
    # terminate them by default; a job that wants to outlive a peer ignores it.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    comm = MPI.COMM_WORLD
    rank = comm.rank
    # This rank's stderr (Reverie's warnings, and the line it prints when it leaves without
    # MPI_Finalize) goes to OUT_DIR/rank<N>.err: Open MPI's launcher may drop it otherwise.
    with open(out_dir / f"rank{rank}.err", "w") as err:
        os.dup2(err.fileno(), 2)
    dbuf = DistributedRehearsalBuffer(
        200, {"x": ((4,), torch.float32)}, candidates=8, comm=comm, engine=engine, timeout=TIMEOUT
    )
    for step in range(10):
        dbuf.add(*batch(rank, step))
        assert intact(dbuf.get_remote_samples(16).wait())
    dbuf.flush()
    comm.Barrier()
    dbuf.get_remote_samples(16).wait()  # every rank now knows every peer's size
    if fault == "stall-close":
        stall_at_close(dbuf, comm, out_dir)
        return
    victim_pid = comm.bcast(os.getpid() if rank == VICTIM else None, root=VICTIM)
    comm.Barrier()
    if rank == VICTIM:
        if fault == "crash":
            emit({"rank": rank, "pid": os.getpid(), "victim": True}, out_dir)
            os._exit(137)
        stop_self(rank, out_dir)
        return
    # The survivors draw once the victim is gone: on a busy box a survivor could otherwise
    # do all its draws before the scheduler ran the victim's exit, and never see it die.
    wait_for_state(victim_pid, DEAD if fault == "crash" else ("T", "t"), timeout=30)
    ok, slowest, from_victim, checked = 0, 0.0, 0, 0
    for step in range(10, 40):
        dbuf.add(*batch(rank, step))
        # The victim may still serve a draw or two before it is gone (it dies when the
        # scheduler runs it); once this rank has excluded it, no draw may take its rows.
        was_excluded = VICTIM in dbuf.excluded_peers()
        t = time.perf_counter()
        s = dbuf.get_remote_samples(16).wait(timeout=4 * TIMEOUT)
        slowest = max(slowest, time.perf_counter() - t)
        ok += intact(s)
        if was_excluded:
            from_victim += int((s.ranks == VICTIM).sum())
            checked += 1
    excluded = dbuf.excluded_peers()
    t = time.perf_counter()
    dbuf.close()
    emit(
        {
            "rank": rank,
            "pid": os.getpid(),
            "intact_draws": ok,
            "excluded": excluded,
            "slowest_draw_s": slowest,
            "from_victim_after_exclusion": from_victim,
            "draws_after_exclusion": checked,
            "close_s": time.perf_counter() - t,
        },
        out_dir,
    )
    wait_for_survivors(comm, out_dir)


def wait_for_survivors(comm: MPI.Comm, out_dir: Path) -> None:
    """Open MPI's launcher ends the whole job once a rank leaves without MPI_Finalize (as the
    survivors do here, after the lost peer), killing survivors still at work: each waits,
    at most 30 s, until every survivor's result is written. MPI cannot be used for that
    (its collectives would wait for the lost rank)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
        (out_dir / f"rank{r}.json").exists() for r in range(comm.size) if r != VICTIM
    ):
        time.sleep(0.01)


def stall_at_close(dbuf: DistributedRehearsalBuffer, comm: MPI.Comm, out_dir: Path) -> None:
    """Every rank draws to the end; then rank 3 stops where it would close, and the others
    close without it."""
    rank = comm.rank
    ok = 0
    for step in range(10, 20):
        dbuf.add(*batch(rank, step))
        ok += intact(dbuf.get_remote_samples(16).wait(timeout=4 * TIMEOUT))
    comm.Barrier()  # nobody draws any more: the victim is never needed for a draw
    if rank == VICTIM:
        stop_self(rank, out_dir)
        return
    excluded = dbuf.excluded_peers()
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dbuf.close()
    emit(
        {
            "rank": rank,
            "pid": os.getpid(),
            "intact_draws": ok,
            "excluded": excluded,
            "close_s": time.perf_counter() - t,
            "close_warnings": [str(w.message) for w in caught],
        },
        out_dir,
    )
    wait_for_survivors(comm, out_dir)


if __name__ == "__main__":
    main()
