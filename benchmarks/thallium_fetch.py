"""Thallium engine: ``get_remote_samples(r)`` against a bare Thallium RPC + bulk push.

    source "$(bash ../shared/mochi/build.sh | tail -n 1)/env.sh"   # or your Mochi (Spack)
    mpiexec -n 2 python benchmarks/thallium_fetch.py
    mpiexec -n 2 python benchmarks/thallium_fetch.py --address ofi+tcp://127.0.0.1

Rank 0 keeps an empty buffer and draws; the other ranks fill theirs and only serve (their
main threads sleep), so every drawn row is remote: with 2 ranks a draw of r is exactly one
RPC answered by one bulk push of r rows, which is what the bare benchmark does with one
contiguous region of the same size. With more ranks a draw fans out to every peer at once
(the bare numbers stay one-to-one, so read the ratios on 2 ranks).

The bare numbers come from ``benchmarks/thallium_bare.cc``, built by CMake with the
Thallium engine and installed as ``reverie/_bench/thallium_bare`` (``--bare-bench`` names
another build). Rank 0 runs its server and client right after the draws, with the engine's
thread layout (one progress thread that runs the handlers, Margo's spindown as
``REVERIE_THALLIUM_SPINDOWN_MS`` sets it, 0 by default), in the same invocation
(``bare_thallium.py``).

Columns (rank 0):
    draw_us    mean of get_remote_samples(r) + wait(), issue to samples usable (p50 beside it)
    eng_us     the engine's share (plan + fetch on its worker thread), mean
    MB/s       r * field bytes / draw_us
    bare_us    bare RPC + push of the same rows (mean over its own loop)
    bare_MB/s  its bandwidth (its 602KB unit is 602 KiB, ours 588 KiB: compare MB/s)
    bw_ratio   MB/s / bare_MB/s (1.0: no cost over bare Thallium)
    lat_ratio  draw_us / bare_us, bytes-normalised (= 1 / bw_ratio)
    eng_ratio  eng_us against the bare time, bytes-normalised
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import bare_thallium
import numpy as np
import torch
from mpi4py import MPI

from reverie import _core
from reverie.distributed import DistributedRehearsalBuffer

SHAPES = {"12KB": (3, 32, 32), "602KB": (3, 224, 224)}
BARE_UNIT_KB = {"12KB": 12, "602KB": 602}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default="na+sm", help="Thallium protocol (default na+sm)")
    p.add_argument("--r", type=int, nargs="+", default=[7, 28, 64], help="representatives per draw")
    p.add_argument("--sizes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--seconds", type=float, default=1.0, help="measuring time per case")
    p.add_argument(
        "--bare-bench",
        default=os.environ.get("REVERIE_THALLIUM_BARE_BENCH", str(bare_thallium.BARE_BENCH)),
        help="the bare Thallium program (default: the one installed with Reverie)",
    )
    p.add_argument("--no-bare", action="store_true", help="skip the bare baseline")
    p.add_argument("--quick", action="store_true", help="smoke run: short timings")
    p.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    return p.parse_args(argv)


def idle_barrier(comm: MPI.Comm) -> None:
    """A barrier that sleeps instead of spinning, so an idle rank leaves the cores to the
    ranks being measured (MPI's blocking barrier busy-polls)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.002)


def bench_draws(comm: MPI.Comm, args: argparse.Namespace, name: str) -> dict:
    rank = comm.Get_rank()
    shape = SHAPES[name]
    capacity = max(args.r) * 2
    out = {}
    with DistributedRehearsalBuffer(
        capacity,
        {"x": (shape, torch.float32)},
        candidates=16,
        comm=comm,
        engine="thallium",
        address=args.address,
        max_representatives=max(args.r),
        queue_depth=2,
    ) as dbuf:
        if rank != 0:
            x = torch.full((16, *shape), float(rank))
            y = torch.zeros(16, dtype=torch.int64)
            while len(dbuf) < capacity:
                dbuf.add({"x": x}, y)
                dbuf.flush()
        idle_barrier(comm)
        if rank == 0:
            dbuf.get_remote_samples(1).wait()  # learn the peers' sizes
            for r in args.r:
                for _ in range(5):
                    dbuf.get_remote_samples(r).wait()
                times, engine = [], []
                before = dbuf.engine_stats()
                stop = time.perf_counter() + args.seconds
                while time.perf_counter() < stop or len(times) < 10:
                    fetch0 = dbuf.engine_stats()["fetch_s"]
                    t0 = time.perf_counter()
                    s = dbuf.get_remote_samples(r).wait()
                    times.append(time.perf_counter() - t0)
                    engine.append(dbuf.engine_stats()["fetch_s"] - fetch0)
                    assert len(s) == r and bool((s.ranks != 0).all()), "every row should be remote"
                after = dbuf.engine_stats()
                assert after["failed_requests"] == before["failed_requests"], "a request failed"
                out[r] = {
                    "draw_s": statistics.fmean(times),
                    "draw_p50_s": statistics.median(times),
                    "engine_s": statistics.fmean(engine),
                    "draws": len(times),
                }
        idle_barrier(comm)
    return out


def run_bare(args: argparse.Namespace) -> dict[tuple[str, int], float] | None:
    """Runs the bare benchmark's server and client; returns {(sample, r): rpc_us}."""
    exe = Path(args.bare_bench)
    if args.no_bare or not exe.is_file():
        return None
    by_kib = bare_thallium.client_server(exe, args.address, 0.3)
    results = {
        (name, r): us for (kib, r), us in by_kib.items() for name, k in BARE_UNIT_KB.items() if k == kib
    }
    return results or None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        print(
            "thallium_fetch: run with at least 2 ranks, e.g. mpiexec -n 2 python benchmarks/thallium_fetch.py"
        )
        return 2
    if not _core.HAVE_THALLIUM:
        if rank == 0:
            print("thallium_fetch: Reverie built without Thallium (see docs/hpc.md: install Mochi, rebuild)")
        return 2
    if args.quick:
        args.seconds = min(args.seconds, 0.2)
    draws = {name: bench_draws(comm, args, name) for name in args.sizes}
    bare = run_bare(args) if rank == 0 else None
    idle_barrier(comm)
    if rank != 0:
        return 0
    source = "measured now"
    if bare is None:
        bare, source = {}, f"not run (--no-bare, or no program at {args.bare_bench})"
    rows = []
    for name in args.sizes:
        field_bytes = int(np.prod(SHAPES[name])) * 4
        bare_unit = BARE_UNIT_KB[name] * 1024
        for r in args.r:
            d = draws[name][r]
            mbps = r * field_bytes / d["draw_s"] / 1e6
            bare_us = bare.get((name, r))
            bare_mbps = r * bare_unit / bare_us if bare_us else float("nan")
            eng_mbps = r * field_bytes / d["engine_s"] / 1e6
            rows.append({
                "sample": name, "r": r, "draw_us": d["draw_s"] * 1e6, "draw_p50_us": d["draw_p50_s"] * 1e6,
                "eng_us": d["engine_s"] * 1e6, "MBps": mbps, "bare_us": bare_us or float("nan"),
                "bare_MBps": bare_mbps, "bw_ratio": mbps / bare_mbps, "lat_ratio": bare_mbps / mbps,
                "eng_ratio": bare_mbps / eng_mbps, "draws": d["draws"],
            })  # fmt: skip
    print(f"thallium_fetch: {size} ranks, address={args.address}, rank 0 draws, bare: {source}")
    print(
        f"{'sample':>7} {'r':>3} {'draw_us':>9} {'p50_us':>9} {'eng_us':>9} {'MB/s':>7} "
        f"{'bare_us':>9} {'bare_MB/s':>9} {'bw_ratio':>8} {'lat_ratio':>9} {'eng_ratio':>9}"
    )
    for row in rows:
        print(
            f"{row['sample']:>7} {row['r']:>3} {row['draw_us']:>9.1f} {row['draw_p50_us']:>9.1f} "
            f"{row['eng_us']:>9.1f} {row['MBps']:>7.0f} {row['bare_us']:>9.1f} {row['bare_MBps']:>9.0f} "
            f"{row['bw_ratio']:>8.2f} {row['lat_ratio']:>9.2f} {row['eng_ratio']:>9.2f}"
        )
    if args.json:
        print("JSON " + json.dumps(rows))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
