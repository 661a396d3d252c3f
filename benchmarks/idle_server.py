"""What an idle owner costs and how fast it answers.

    mpiexec -n 2 python benchmarks/idle_server.py --engine mpi
    REVERIE_IDLE_SLEEP_US=500 mpiexec -n 2 python benchmarks/idle_server.py --engine mpi
    mpiexec -n 2 python benchmarks/idle_server.py --engine thallium

1. CPU: every rank fills a buffer, then idles (no draws) for --seconds while its server
   keeps looking for requests. Per rank: process CPU time over the idle period as a share
   of one core (the main thread sleeps, so this is the server and worker threads), beside
   a process that only sleeps (measured first in the same run).
2. Latency: rank 0 (empty buffer) draws r rows of 12 KB every --gap-ms from owners whose
   main threads sleep, as a GPU job's CPU side idles between steps: p50 and p99 of the
   draw, beside the raw MPI exchange of the same rows with the same gap (rank 1 answers
   in a blocking MPI_Recv loop) in the same run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from mpi4py import MPI

from reverie import DistributedRehearsalBuffer


def idle_share(seconds: float) -> float:
    """CPU seconds of this process per wall second while its main thread sleeps."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="mpi", choices=["mpi", "thallium"])
    p.add_argument("--seconds", type=float, default=5.0, help="idle time measured")
    p.add_argument("--gap-ms", type=float, default=20.0, help="time between rank 0's draws")
    p.add_argument("--draws", type=int, default=100, help="draws timed (and raw exchanges)")
    p.add_argument("--r", type=int, default=7, help="rows per draw")
    ns = p.parse_args()
    comm = MPI.COMM_WORLD
    baseline = idle_share(min(ns.seconds, 2.0))
    buf = DistributedRehearsalBuffer(
        256, {"x": ((3, 32, 32), torch.float32)}, num_classes=10, candidates=16, comm=comm, engine=ns.engine
    )
    for _ in range(32):
        buf.add({"x": torch.randn(16, 3, 32, 32)}, torch.randint(0, 10, (16,)))
    buf.flush()
    buf.get_remote_samples(7).wait()  # the server has served once, then goes idle
    comm.Barrier()
    time.sleep(0.5)  # past every hot window
    share = idle_share(ns.seconds)
    rows = comm.gather({"rank": comm.Get_rank(), "idle_core_share": share, "baseline": baseline}, root=0)
    if comm.Get_rank() == 0:
        print(f"idle_server: {comm.Get_size()} ranks, engine={ns.engine}, {ns.seconds:g} s idle")
        print(" rank  core_%  sleep-only_%")
        for r in rows:
            print(f" {r['rank']:4d}  {100 * r['idle_core_share']:6.2f}  {100 * r['baseline']:12.2f}")
    lat = spaced_draws(comm, ns)
    raw = spaced_raw(comm, ns)
    if comm.Get_rank() == 0:
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        r50, r99 = np.percentile(raw, 50), np.percentile(raw, 99)
        print(f"idle owner, {ns.r} x 12 KB every {ns.gap_ms:g} ms ({ns.draws} draws):")
        print("          p50_us   p99_us  p99/p50")
        print(f" reverie {p50:8.1f} {p99:8.1f} {p99 / p50:8.2f}")
        print(f" raw MPI {r50:8.1f} {r99:8.1f} {r99 / r50:8.2f}")
        print(f" reverie/raw p50: {p50 / r50:.2f}")
        print(
            "JSON "
            + json.dumps({"cpu": rows, "p50_us": p50, "p99_us": p99, "raw_p50_us": r50, "raw_p99_us": r99})
        )
    buf.close()


SHAPE = (3, 32, 32)


def spaced_draws(comm: MPI.Comm, ns: argparse.Namespace) -> list[float]:
    """Rank 0 draws ns.r rows every ns.gap_ms from a separate buffer whose rows are all remote."""
    rank = comm.Get_rank()
    buf = DistributedRehearsalBuffer(
        256, {"x": (SHAPE, torch.float32)}, num_classes=10, candidates=16, comm=comm, engine=ns.engine, seed=1
    )
    if rank > 0:
        for _ in range(32):
            buf.add({"x": torch.randn(16, *SHAPE)}, torch.randint(0, 10, (16,)))
    buf.flush()
    comm.Barrier()
    times: list[float] = []
    if rank == 0:
        buf.get_remote_samples(ns.r).wait()  # learns the owners' sizes
        for _ in range(ns.draws):
            time.sleep(ns.gap_ms / 1000)
            t0 = time.perf_counter()
            buf.get_remote_samples(ns.r).wait()
            times.append((time.perf_counter() - t0) * 1e6)
    comm.Barrier()
    buf.close()
    return times


def spaced_raw(comm: MPI.Comm, ns: argparse.Namespace) -> list[float]:
    """The same exchange in raw MPI: a small request to rank 1, its rows back."""
    rank = comm.Get_rank()
    rows = np.zeros((ns.r, *SHAPE), dtype=np.float32)
    request = np.zeros(ns.r, dtype=np.int64)
    times: list[float] = []
    if rank == 0:
        for i in range(ns.draws + 1):
            if i > 0:
                time.sleep(ns.gap_ms / 1000)
            t0 = time.perf_counter()
            comm.Send(request, dest=1, tag=7)
            comm.Recv(rows, source=1, tag=8)
            if i > 0:
                times.append((time.perf_counter() - t0) * 1e6)
    elif rank == 1:
        for _ in range(ns.draws + 1):
            comm.Recv(request, source=0, tag=7)
            comm.Send(rows, dest=0, tag=8)
    comm.Barrier()
    return times


if __name__ == "__main__":
    main()
