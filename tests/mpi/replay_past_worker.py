"""Runs under mpiexec: a ``replay="past"`` buffer over two tasks, with draws interleaved
with adds as in training.

    mpiexec -n 2 python tests/mpi/replay_past_worker.py --engine mpi [--draws passes]
    mpiexec -n 2 python tests/mpi/replay_past_worker.py --save PATH    (then --reload PATH, any -n)

Each rank prints one JSON line ``{"rank": r, ...}`` with what its draws returned: rows drawn
before the first boundary, current-task rows drawn during task 1 (both must be 0), how often
each committed (owner, slot) was drawn, and the current-task rows drawn after the second
boundary.
"""

from __future__ import annotations

import argparse
import json
import sys

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from reverie import DistributedRehearsalBuffer  # noqa: E402

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()
FILLS = [60, 12]  # task-0 rows per rank: unequal, so owners' shares differ
CAPACITY, R, STEPS = 60, 16, 300


def rows(first: int, n: int, task: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Rows ``first .. first + n`` of this rank: id field (owner, index), labels 2*task + index % 2."""
    idx = torch.arange(first, first + n, dtype=torch.int64)
    return {"id": torch.stack([torch.full_like(idx, RANK), idx], 1)}, 2 * task + idx % 2


def save(path: str, engine: str) -> dict:
    """Task 0 committed, task 1 staged (rank r stages 10 + r rows of labels 2, 3), then save."""
    with DistributedRehearsalBuffer(
        CAPACITY, {"id": ((2,), torch.int64)}, seed=7, comm=COMM, engine=engine, replay="past"
    ) as dbuf:
        dbuf.add(*rows(0, 8, 0))
        dbuf.end_task()
        dbuf.add(*rows(1000, 10 + RANK, 1))
        dbuf.save(path)
        return {"rank": RANK, "size": len(dbuf), "staged": dbuf.staged}


def reload(path: str, engine: str) -> dict:
    """Loads, reports what is drawable and staged, then commits and reports again."""
    with DistributedRehearsalBuffer.load(path, comm=COMM, engine=engine) as dbuf:
        out = {"rank": RANK, "replay": dbuf.replay, "size": len(dbuf), "staged": dbuf.staged}
        labels = dbuf.get_remote_samples(R).wait().labels
        out["current_task_drawn"] = int((labels >= 2).sum())
        out["committed"] = dbuf.end_task()
        out["size_after"] = len(dbuf)
        COMM.Barrier()
        return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", default="mpi")
    p.add_argument("--save")
    p.add_argument("--reload")
    p.add_argument("--draws", default="independent")
    args = p.parse_args()
    if args.save or args.reload:
        result = save(args.save, args.engine) if args.save else reload(args.reload, args.engine)
        print(json.dumps(result), flush=True)
        return 0
    fill = FILLS[RANK % len(FILLS)]
    out: dict = {"rank": RANK}
    with DistributedRehearsalBuffer(
        CAPACITY, {"id": ((2,), torch.int64)}, seed=7, comm=COMM, engine=args.engine,
        max_representatives=R, timeout=20.0, replay="past", draws=args.draws,
    ) as dbuf:  # fmt: skip
        before = 0
        for i in range(0, fill, 4):  # task 0: staged, never drawn
            dbuf.add(*rows(i, min(4, fill - i), 0))
            before += len(dbuf.get_remote_samples(R).wait())
        out["drawn_before_boundary"] = before
        out["staged"] = dbuf.staged
        COMM.Barrier()
        out["committed"] = dbuf.end_task()
        COMM.Barrier()  # every rank committed before any rank plans with the new sizes
        dbuf.get_remote_samples(1).wait()  # sizes are at most one draw stale: learn them
        COMM.Barrier()
        sizes = COMM.allgather(len(dbuf))
        per_slot = [[0] * s for s in sizes]
        current, short, first_draws = 0, 0, []
        for step in range(STEPS):  # task 1: each step adds a current-task row, then draws
            dbuf.add(*rows(1000 + step, 1, 1))
            batch = dbuf.get_remote_samples(R).wait()
            short += int(len(batch) != R)
            current += int((batch.labels >= 2).sum())
            if step < 40:
                first_draws.append([owner * 1000 + idx for owner, idx in batch["id"].tolist()])
            for owner, idx in batch["id"].tolist():
                if idx < 1000:
                    per_slot[owner][idx] += 1
        out.update(sizes=sizes, per_slot=per_slot, current_task_drawn=current, short=short)
        out["first_draws"] = first_draws
        out["known_global"] = dbuf.global_size()
        COMM.Barrier()
        dbuf.end_task()
        COMM.Barrier()
        dbuf.get_remote_samples(1).wait()
        COMM.Barrier()
        after = 0
        for _ in range(20):
            after += int((dbuf.get_remote_samples(R).wait().labels >= 2).sum())
        out["current_task_drawn_after_boundary"] = after
        COMM.Barrier()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
