"""Soak: thousands of steps of add + draw on every rank, every sample checksummed.

    mpiexec -n 4 python tests/reliability/soak_worker.py --steps 20000   # by hand, minutes

Each rank writes one JSON line: corrupted samples, resident-memory growth after warm-up,
and threads / file descriptors left after close compared with before construction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer

WIDTH = 64
WEIGHTS = torch.arange(1, WIDTH + 1, dtype=torch.int64) * 2654435761 % 1_000_003


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def count(path: str) -> int:
    return len(os.listdir(path))


def checksum(x: torch.Tensor) -> torch.Tensor:
    return (x.long() * WEIGHTS).sum(dim=1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--engine", default="auto", choices=["auto", "mpi", "thallium"])
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    g = torch.Generator().manual_seed(comm.rank)
    threads0, fds0 = count("/proc/self/task"), count("/proc/self/fd")
    fields = {"x": ((WIDTH,), torch.int32), "sum": ((), torch.int64)}
    dbuf = DistributedRehearsalBuffer(
        500, fields, candidates=8, comm=comm, seed=1, engine=args.engine, timeout=30
    )
    bad = drawn = 0
    warm_rss = 0
    for step in range(args.steps):
        x = torch.randint(-(2**31), 2**31 - 1, (16, WIDTH), dtype=torch.int32, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        x[:, 0] = y.int()
        dbuf.add({"x": x, "sum": checksum(x)}, y)
        s = dbuf.get_remote_samples(16).wait()
        drawn += len(s)
        bad += int((checksum(s["x"]) != s["sum"]).sum() + (s["x"][:, 0].long() != s.labels).sum())
        if step == args.steps // 5:
            warm_rss = rss_kib()
    end_rss = rss_kib()
    during = count("/proc/self/task")
    dbuf.close()
    del dbuf
    sys.stdout.write(
        json.dumps(
            {
                "rank": comm.rank,
                "steps": args.steps,
                "drawn": drawn,
                "corrupted": bad,
                "rss_growth_kib": end_rss - warm_rss,
                "threads_during": during - threads0,
                "threads_left": count("/proc/self/task") - threads0,
                "fds_left": count("/proc/self/fd") - fds0,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
