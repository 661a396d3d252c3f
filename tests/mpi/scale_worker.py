"""The owner-only draw protocol on 8 ranks (mpiexec -n 8; oversubscribed on a small box).

Scenarios (both run in one job; rank 0 prints ``RESULT {json}``):
- ``settled``: fills that no longer change (full, partly filled, one empty), 150 draws of
  r = 2 per rank; counts messages per draw and which (owner, slot) each draw took.
- ``filling``: ranks add at unequal rates into unequal capacities, in lockstep (add, flush,
  barrier, draw, as a DDP step); each draw's expected share per owner comes from the true
  sizes of that step (allgather), to compare with what was drawn.
- ``in_turn``: full buffers; the ranks take turns (a barrier between turns), each drawing
  r = 32 a few times, so every owner is asked by all 7 others, one at a time; reports each
  rank's reply staging memory after the first turn and at the end.
"""

from __future__ import annotations

import argparse
import sys

import mpi4py

mpi4py.rc.thread_level = "multiple"
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402
from scenario_runner import run_scenarios  # noqa: E402

from reverie.distributed import DistributedRehearsalBuffer  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
TIMEOUT = 30.0
SETTLED_CAPACITY = 64
SETTLED_FILLS = [64, 40, 64, 0, 64, 12, 64, 30]  # full, partial, full, empty, full, tiny, full, partial
FILL_CAPACITY = [48, 96, 64, 400, 80, 40, 112, 72]  # ranks 3 and 6 never fill in 60 steps
FILL_RATE = [2, 3, 4, 5, 6, 7, 1, 3]  # rows added per step


def new_buffer(engine: str, capacity: int, r: int) -> DistributedRehearsalBuffer:
    return DistributedRehearsalBuffer(
        capacity,
        {"id": ((2,), torch.int64)},
        num_classes=None,
        seed=11,
        comm=COMM,
        engine=engine,
        timeout=TIMEOUT,
        max_representatives=r,
    )


def rows(first: int, n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    ids = torch.arange(first, first + n, dtype=torch.int64)
    return {"id": torch.stack([torch.full((n,), RANK), ids], 1)}, torch.zeros(n, dtype=torch.int64)


def scenario_settled(engine: str, draws: int, r: int) -> dict:
    fill = SETTLED_FILLS[RANK % len(SETTLED_FILLS)]
    with new_buffer(engine, SETTLED_CAPACITY, r) as dbuf:
        if fill:
            dbuf.add(*rows(0, fill))
        dbuf.flush()
        COMM.Barrier()
        sizes = COMM.allgather(len(dbuf))
        per_slot = [[0] * s for s in sizes]
        short = 0
        for _ in range(draws):
            batch = dbuf.get_remote_samples(r).wait(timeout=TIMEOUT)
            short += int(len(batch) != r)
            for owner, slot in batch["id"].tolist():
                per_slot[owner][slot] += 1
        stats = dbuf.engine_stats()
        COMM.Barrier()
    return {
        "sizes": sizes,
        "per_slot": per_slot,
        "short": short,
        "draws": stats["draws"],
        "requests_sent": stats["requests_sent"],
        "size_messages": stats["size_messages"],
        "failed_requests": stats["failed_requests"],
    }


def scenario_filling(engine: str, steps: int, r: int) -> dict:
    capacity, rate = FILL_CAPACITY[RANK % 8], FILL_RATE[RANK % 8]
    drawn = [0] * SIZE
    expected = [0.0] * SIZE
    fills = []
    with new_buffer(engine, capacity, r) as dbuf:
        for step in range(steps):
            dbuf.add(*rows(step * rate, rate))
            dbuf.flush()
            COMM.Barrier()
            sizes = COMM.allgather(len(dbuf))
            batch = dbuf.get_remote_samples(r).wait(timeout=TIMEOUT)
            total = sum(sizes)
            for owner in range(SIZE):
                expected[owner] += len(batch) * sizes[owner] / total
            for owner, _ in batch["id"].tolist():
                drawn[owner] += 1
            fills.append(sizes)
        stats = dbuf.engine_stats()
        COMM.Barrier()
    return {
        "drawn": drawn,
        "expected": expected,
        "final_sizes": fills[-1],
        "draws": stats["draws"],
        "requests_sent": stats["requests_sent"],
        "size_messages": stats["size_messages"],
        "failed_requests": stats["failed_requests"],
    }


def scenario_in_turn(engine: str, rounds: int, r: int) -> dict:
    with new_buffer(engine, SETTLED_CAPACITY, r) as dbuf:
        dbuf.add(*rows(0, SETTLED_CAPACITY))
        dbuf.flush()
        COMM.Barrier()
        first_turn = 0
        for turn in range(rounds * SIZE):
            if turn % SIZE == RANK:
                for _ in range(3):
                    dbuf.get_remote_samples(r).wait(timeout=TIMEOUT)
            COMM.Barrier()
            if turn == 0:
                first_turn = dbuf.engine_stats()["reply_staging_bytes"]
        stats = dbuf.engine_stats()
        COMM.Barrier()
    return {
        "first_turn_staging": first_turn,
        "staging": stats["reply_staging_bytes"],
        "draws": stats["draws"],
        "failed_requests": stats["failed_requests"],
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", default="mpi")
    p.add_argument("--draws", type=int, default=150)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    runners = {
        "settled": lambda: scenario_settled(args.engine, args.draws, 2),
        "filling": lambda: scenario_filling(args.engine, args.steps, 8),
        "in_turn": lambda: scenario_in_turn(args.engine, 2, 32),
    }
    return run_scenarios(COMM, args.engine, runners, runners)


if __name__ == "__main__":
    sys.exit(main())
