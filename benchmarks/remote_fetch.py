"""Remote fetch: latency and bandwidth of ``get_remote_samples(r)`` against raw MPI.

Run under MPI (any number of ranks >= 2); rank 0 prints the table::

    mpiexec -n 2 python benchmarks/remote_fetch.py
    mpiexec -n 4 python benchmarks/remote_fetch.py --quick

or let it launch itself (``--launch``) at several rank counts and over either path between
ranks (``--path``), with the MPI it was installed against (mpiexec beside this Python, else
on PATH), and print one table with the ranks, path and MPI on every row::

    python benchmarks/remote_fetch.py --launch 2 4 --path shm net --sizes 12KB 602KB --r 7 28

With ``--engine mpi thallium`` (``--launch`` only) every path runs both engines into the same
table. The Thallium engine takes the protocol that matches the path (``--address``
overrides): ``na+sm`` on shm, ``ofi+tcp://127.0.0.1`` (libfabric's tcp provider on loopback,
the plugin HPC fabrics share code with) on net and tcp; MPI then carries only the raw
baseline. Its rows also carry the bare Thallium baseline: ``benchmarks/thallium_bare.cc``
(built with the engine, installed as ``reverie/_bench/thallium_bare``; ``--no-bare`` skips
it), run on the same protocol right after the jobs of that path with the engine's thread
layout, as two processes drawing from each other (pattern all: half of each draw from the
peer, half copied locally) or one drawing from an idle server (pattern one):
    bare_us        its time for a draw of the same r rows (2 ranks only)
    vs_bare        draw_us / bare_us: what the engine adds over bare Thallium

Paths (``--path``; under a plain mpiexec the environment decides and the table reports it):
    shm   the MPI library's shared-memory channel between ranks of one node (the default)
    net   its network module, as between nodes, forced on one node: MPICH with
          MPIR_CVAR_NOLOCAL=1 (its netmod; the PyPI wheel's is UCX, which picks its own
          transports), Open MPI with ``--mca pml ob1 --mca btl self,tcp``
    tcp   sockets only: MPICH as net plus UCX_TLS=tcp,self; Open MPI as net
    ofi   MPICH's other network module, OFI (libfabric; what MPICH builds for Slingshot,
          Omni-Path or EFA use): as net plus MPIR_CVAR_CH4_NETMOD=ofi; MPICH only
Tuning variables set in the environment (UCX_*, FI_*, MPIR_CVAR_*, OMPI_MCA_*, REVERIE_*;
e.g. UCX_RNDV_THRESH, docs/hpc.md) reach every job; --launch names them under the table.

``--repeat N`` (with ``--launch``) runs every job N times, taking the jobs in turn, and each
row is then its case's median job (by lat_ratio; every column from that one job), with
``lat_range`` the lowest and highest lat_ratio over the N jobs: on a shared box a whole job
sometimes lands in a slow mode, so one job per case can mislead either way.

Two patterns (``--pattern``):
    all   every rank fills its buffer to capacity, then all ranks draw at the same time, so
          each draw is served by the peers' servers while their own draws run (as in
          training). A draw of r takes r * (1 - 1/n) rows from peers on average; the rest is
          a local copy.
    one   rank 0 keeps an empty buffer and draws; the other ranks fill theirs and only serve
          (their main threads sleep), so every drawn row is remote: a latency test, like
          benchmarks/thallium_fetch.py.

The raw baseline is plain MPI doing the same exchange as a draw: the requester sends every
owner a tiny request for its share of the r rows (an even split, as a draw of equally
filled buffers takes on average) and receives each share as one contiguous message
(mpi4py Isend/Irecv, the owner answers with Send/Isend); its own share, in the all
pattern, is a local copy. Two memory placements: ``raw`` sends from and receives into
buffers of exactly one draw, which stay in the caches; ``cold`` sends from rotating rows of
a buffer as large as the Reverie buffer and receives into two alternating draws' worth of
rows (as a draw lands in one of two receive blocks), so it reads memory the way draws of
random slots do. For 602 KB samples
(77 MB per buffer) that is what separates the two.

Columns (times are medians per rank, averaged over ranks; the machine may be shared, and
medians shrug off the scheduler's hiccups):
    draw_us        one ``get_remote_samples(r)`` + ``wait()`` (issue to samples usable),
                   then ``release()`` (untimed) as ``RehearsalLoader`` does on CPU, so the next
                   draw lands in the same receive block; ``--hold`` keeps each draw until the
                   one after next instead (draws alternate between two blocks, as with CUDA)
    remote         fraction of the drawn rows that came from peers (the rest: local copy)
    rev_MB/s       r * sample_bytes / draw_us: bytes a draw delivers
    rem_MB/s       bytes that came from peers / draw_us: remote bytes only
    raw_us         the raw MPI exchange of the same rows (above), cache-resident
    raw_MB/s       r * sample_bytes / raw_us
    bw_ratio       rev_MB/s / raw_MB/s (target >= 0.70 for 602 KB samples)
    rem_ratio      rem_MB/s / raw_MB/s (stricter: the local share counts as lost time)
    lat_ratio      draw_us / raw_us: a draw against a raw round trip moving the same bytes
                   (target <= 2 for small draws)
    cold_us        the raw exchange from and into buffer-sized memory
    cold_ratio     rev_MB/s / (r * sample_bytes / cold_us)
    eng_us         the engine's share of a draw (plan, local copy, fetch from peers, on its
                   worker thread), without the Python call and the thread hand-offs
    eng_ratio      eng_us / raw_us
    local_us       of eng_us: copying the draw's local rows (like eng_us, a median per draw)
    ans_us         of eng_us: waiting, after that copy, for every owner's answer (the
                   request's trip, the owner noticing it and posting its reply, the answer's
                   trip; ``engine_stats()["answer_wait_s"]``); "-" for engines whose replies
                   do not come in two steps (Thallium)
    rows_us        of eng_us: then waiting for the rows that follow the answers (the data
                   moving; ``rows_wait_s``). ans_us against rows_us says whether a draw waits
                   on the owners (scheduling, message count) or on the bytes
    rtt_us         raw tiny-message (8 bytes) round trip between rank pairs
    slow           rounds (of 5, 2 with --quick) whose median draw took over twice the
                   fastest round's: on a busy box draws sometimes settle into a slow phase for
                   a whole round, which moves draw_us (``round_us`` in --json has them all)
    sleeps         times the drawing thread blocked in the kernel per draw (its voluntary
                   context switches, Linux; ``round_sleeps`` in --json per round): ~0 when
                   draws are fast, 1-2 while it waits for the MPI library's lock held by
                   this rank's server thread, one kind of slow phase (docs/benchmarks.md)

The floor (``--launch`` only; ``--no-floor`` skips it): ``benchmarks/mpi_rows.cc``, built
with the MPI engine and installed as ``reverie/_bench/mpi_rows``, run under the same
mpiexec and path right after each job. In C, with no Python and no engine, it moves the
same shares as the raw exchange but from random slots of a buffer of ``--capacity`` rows,
as a draw must: a message per row, the rows packed into one message, one message whose
datatype names the slots (read in place where the library can), or each row in 4 KiB pieces
(rows of 2 to 4 pieces; as the engine sends them over UCX). Its best is what plain MPI can
do for scattered rows on that path, so a draw's time splits into the library's cost of
scattered rows (floor against raw) and the engine's (draw against floor):
    floor_us       the fastest way (floor_how names it: rows, packed, gathered, split)
    vs_floor       draw_us / floor_us
    c_raw_us       the same program sending each share contiguously (the raw exchange in C)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mpi4py

mpi4py.rc.thread_level = "multiple"
mpi4py.rc.initialize = False  # MPI starts in main(): a --launch run only starts mpiexec
mpi4py.rc.finalize = True
import bare_thallium  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

import reverie  # noqa: E402
from reverie.distributed import DistributedRehearsalBuffer  # noqa: E402

SHAPES = {"3KB": (1, 28, 28), "12KB": (3, 32, 32), "602KB": (3, 224, 224)}  # MNIST, CIFAR, ImageNet (float32)
FLOOR_BENCH = Path(reverie.__file__).parent / "_bench" / "mpi_rows"  # benchmarks/mpi_rows.cc, installed
FLOOR_WAYS = ("rows", "packed", "gathered", "split")  # split: null where rows are not split
PATHS = ("shm", "net", "tcp", "ofi")
NETWORK_PATHS = ("net", "tcp", "ofi")  # the engine settles "net" on each
NETMOD_VARIABLES = ("MPIR_CVAR_CH4_NETMOD", "MPICH_CH4_NETMOD", "MPIR_PARAM_CH4_NETMOD")  # MPICH's spellings
REQUEST_TAG, DATA_TAG = 11, 12
# Variables through which a user tunes the MPI library, its transports or the engine: they
# change what a path measures (UCX_RNDV_THRESH, docs/hpc.md), so --launch names the ones set.
SETTING_PREFIXES = ("UCX_", "FI_", "MPIR_CVAR_", "MPIR_PARAM_", "MPICH_", "OMPI_MCA_", "REVERIE_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, small buffers")
    p.add_argument(
        "--engine",
        nargs="+",
        default=["mpi"],
        choices=["mpi", "thallium", "auto"],
        help="the engine to measure (several with --launch: one table)",
    )
    p.add_argument(
        "--address",
        help="Thallium protocol (default na+sm; with --launch: na+sm on shm, ofi+tcp://127.0.0.1 on net and tcp)",
    )
    p.add_argument("--r", type=int, nargs="+", default=[7, 28, 64], help="representatives per draw")
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["12KB", "602KB"],
        choices=list(SHAPES),
        help="sample sizes: 3KB (an MNIST image), 12KB (CIFAR), 602KB (ImageNet), all float32",
    )
    p.add_argument("--seconds", type=float, default=1.0, help="measuring time per case and method")
    p.add_argument("--pattern", default="all", choices=["all", "one"], help="all ranks draw, or rank 0 alone")
    p.add_argument(
        "--capacity", type=int, default=128, help="buffer capacity per rank (samples; 128 x 602 KB = 77 MB)"
    )
    p.add_argument("--json", action="store_true", help="also print the rows as one JSON line on rank 0")
    p.add_argument(
        "--hold",
        action="store_true",
        help="keep each draw's samples (no release): draws alternate receive blocks",
    )
    p.add_argument(
        "--launch",
        type=int,
        nargs="+",
        metavar="RANKS",
        help="start this benchmark under mpiexec at each of these rank counts (and each --path); one table",
    )
    p.add_argument(
        "--path",
        nargs="+",
        default=["shm"],
        choices=list(PATHS),
        help="with --launch: the paths between ranks to measure (default: shm)",
    )
    p.add_argument(
        "--mpiexec", help="with --launch: the launcher (default: beside this Python, else on PATH)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --launch: run every job this many times, in turn; each row is the case's median job "
        "(by lat_ratio) and names the range over the jobs (lat_range)",
    )
    p.add_argument("--no-floor", action="store_true", help="with --launch: skip the plain-MPI floor")
    p.add_argument(
        "--no-bare", action="store_true", help="with --launch and thallium: skip the bare Thallium baseline"
    )
    p.add_argument(
        "--bare-bench",
        default=str(bare_thallium.BARE_BENCH),
        help="the bare Thallium program (default: reverie/_bench/thallium_bare of this install)",
    )
    p.add_argument(
        "--floor-bench",
        default=str(FLOOR_BENCH),
        help="the floor program (default: reverie/_bench/mpi_rows of this install)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat: expected a whole number of jobs >= 1, got {args.repeat}")
    return args


def buffer_capacity(args: argparse.Namespace) -> int:
    return max(2 * max(args.r), 16) if args.quick else args.capacity


def agreed_iterations(comm: MPI.Comm, step, seconds: float, min_iters: int, max_iters: int) -> int:
    """Warms `step` up and picks how many iterations fill `seconds`; the same on every rank
    (pairs of ranks must run matching iterations)."""
    for _ in range(3):
        step()
    comm.Barrier()
    t0 = time.perf_counter()
    step()
    one = time.perf_counter() - t0
    return comm.allreduce(int(min(max_iters, max(min_iters, seconds / max(one, 1e-6)))), op=MPI.MIN)


def timed_loop(comm: MPI.Comm, step, iters: int) -> list[float]:
    comm.Barrier()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


class Rows:
    """A pool of `total` rows of `row_bytes`; take(n) gives n contiguous rows, from a start
    that moves on by n each call (always row 0 when the pool holds exactly one draw)."""

    def __init__(self, row_bytes: int, total: int, fill: int) -> None:
        self.row_bytes, self.total = row_bytes, total
        self.buf = np.full(total * row_bytes, fill, dtype=np.uint8)
        self.start = 0

    def take(self, n: int) -> np.ndarray:
        if self.start + n > self.total:
            self.start = 0
        view = self.buf[self.start * self.row_bytes : (self.start + n) * self.row_bytes]
        self.start = (self.start + n) % self.total
        return view


def shares(r: int, owners: list[int], shift: int) -> dict[int, int]:
    """r rows split as evenly as the owners allow, the remainder rotating with `shift`:
    what a draw of r takes from equally filled buffers, on average."""
    n = len(owners)
    return {o: r // n + (1 if (i - shift) % n < r % n else 0) for i, o in enumerate(owners)}


def ask_owners(comm: MPI.Comm, block: np.ndarray, row_bytes: int, want: dict[int, int], asks: dict):
    """Posts, for each owner in `want` (in its order), the receive of its share into the next
    rows of `block` and a tiny request for it (from `asks`, a buffer per owner). Returns the
    requests and the rows left for this rank's own share (empty when it owns none)."""
    rank = comm.Get_rank()
    reqs, offset, local = [], 0, block[:0]
    for p, n in want.items():
        rows = block[offset * row_bytes : (offset + n) * row_bytes]
        offset += n
        if p == rank:
            local = rows
            continue
        asks[p][0] = n
        reqs.append(comm.Irecv(rows, source=p, tag=DATA_TAG))
        reqs.append(comm.Isend(asks[p], dest=p, tag=REQUEST_TAG))
    return reqs, local


def raw_exchange(comm: MPI.Comm, row_bytes: int, r: int, send_rows: int, recv_rows: int):
    """The raw MPI version of a draw of r in the "all" pattern, on every rank at once: a
    tiny request (mpi4py Isend) to every peer for its share of the rows, answered by one
    contiguous message (Isend/Irecv); this rank's own share is a local copy."""
    rank, size = comm.Get_rank(), comm.Get_size()
    send, recv = Rows(row_bytes, send_rows, rank), Rows(row_bytes, recv_rows, 0)
    ranks = list(range(size))
    asks = {p: np.zeros(1, dtype=np.int64) for p in ranks}
    incoming = {p: np.zeros(1, dtype=np.int64) for p in ranks}
    calls = [0]

    def fetch():
        calls[0] += 1
        want = shares(r, ranks, calls[0] + rank)
        reqs, local = ask_owners(comm, recv.take(r), row_bytes, want, asks)
        np.copyto(local, send.take(want[rank]))
        for p in ranks:
            if p != rank:
                comm.Recv(incoming[p], source=p, tag=REQUEST_TAG)
                reqs.append(comm.Isend(send.take(int(incoming[p][0])), dest=p, tag=DATA_TAG))
        MPI.Request.Waitall(reqs)

    return fetch


def raw_pull(
    comm: MPI.Comm, row_bytes: int, r: int, iters: int, send_rows: int, recv_rows: int
) -> list[float]:
    """The raw MPI version of a draw of r in the "one" pattern: rank 0 asks every peer for
    its share at once (tiny Isend) and receives each share as one contiguous message; the
    peers answer from a loop until rank 0 says stop. Returns rank 0's times (others: [])."""
    rank, size = comm.Get_rank(), comm.Get_size()
    send, recv = Rows(row_bytes, send_rows, rank), Rows(row_bytes, recv_rows, 0)
    peers = list(range(1, size))
    asks = {p: np.zeros(1, dtype=np.int64) for p in peers}
    times: list[float] = []
    comm.Barrier()
    if rank == 0:
        for i in range(iters):
            want = shares(r, peers, i)
            t0 = time.perf_counter()
            reqs, _ = ask_owners(comm, recv.take(r), row_bytes, want, asks)
            MPI.Request.Waitall(reqs)
            times.append(time.perf_counter() - t0)
        for p in peers:
            comm.Send(np.full(1, -1, dtype=np.int64), dest=p, tag=REQUEST_TAG)
    else:
        ask = np.zeros(1, dtype=np.int64)
        while True:
            comm.Recv(ask, source=0, tag=REQUEST_TAG)
            if ask[0] < 0:
                break
            comm.Send(send.take(int(ask[0])), dest=0, tag=DATA_TAG)
    return times


def idle_barrier(comm: MPI.Comm) -> None:
    """A barrier that sleeps instead of spinning, so a rank that only serves leaves the
    cores to the one measured (MPI's blocking barrier busy-polls)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.002)


def fill(dbuf: DistributedRehearsalBuffer, shape: tuple[int, ...], capacity: int, value: float) -> None:
    x = torch.full((16, *shape), value)
    y = torch.zeros(16, dtype=torch.int64)
    while len(dbuf) < capacity:
        dbuf.add({"x": x}, y)
        dbuf.flush()


def new_buffer(comm: MPI.Comm, args: argparse.Namespace, shape: tuple[int, ...], capacity: int):
    return DistributedRehearsalBuffer(
        capacity,
        {"x": (shape, torch.float32)},
        candidates=16,
        seed=1,
        comm=comm,
        engine=args.engine[0],
        address=args.address,
        max_representatives=max(args.r),
        queue_depth=2,
    )


def engine_path(dbuf: DistributedRehearsalBuffer) -> str | None:
    """The path the MPI engine settled with this rank's peers: "shm", "net", "mixed" (some
    peers each way), or None for another engine."""
    paths = getattr(dbuf._transport, "peer_paths", None)
    if not paths:
        return None
    rank = dbuf._transport.rank
    seen = {p["path"] for i, p in enumerate(paths) if i != rank}
    return seen.pop() if len(seen) == 1 else "mixed"


def draw(dbuf: DistributedRehearsalBuffer, r: int, hold: bool) -> None:
    """One draw of r, waited for, then released unless ``hold``."""
    handle = dbuf.get_remote_samples(r)
    handle.wait()
    if not hold:
        handle.release()


# The engine's share of a draw and its parts: engine_stats() keys by the name of their times.
ENGINE_PARTS = {"engine": "fetch_s", "local": "local_s", "answer": "answer_wait_s", "rows": "rows_wait_s"}


def traced_draw(
    dbuf: DistributedRehearsalBuffer, r: int, hold: bool, engine_times: dict[str, list[float]]
) -> float:
    """One draw of r, waited for (then released unless ``hold``, untimed); appends the
    engine's share and its parts (ENGINE_PARTS) to engine_times."""
    before = dbuf.engine_stats()
    t0 = time.perf_counter()
    handle = dbuf.get_remote_samples(r)
    handle.wait()
    t1 = time.perf_counter()
    if not hold:
        handle.release()
    after = dbuf.engine_stats()
    for name, key in ENGINE_PARTS.items():
        engine_times.setdefault(name, []).append(after[key] - before[key])
    return t1 - t0


def case_result(times: dict[str, list[float]], before: dict, after: dict, sample_bytes: int) -> dict:
    """One case: the median of each list of times (s), keyed "<name>_s", and what share of
    the drawn rows came from peers, from the engine counters before and after."""
    rows = after["rows_drawn"] - before["rows_drawn"]
    remote_rows = after["rows_remote"] - before["rows_remote"]
    draws = after["draws"] - before["draws"]
    out = {f"{name}_s": statistics.median(values) for name, values in times.items()}
    out["remote"] = remote_rows / max(rows, 1)
    out["remote_bytes"] = remote_rows * sample_bytes / max(draws, 1)
    return out


def bench_size(comm: MPI.Comm, args: argparse.Namespace, shape: tuple[int, ...], capacity: int) -> dict:
    """Pattern "all", per r: Reverie draws and raw fetches (hot and cold) of the same bytes,
    in alternating blocks (so a shared machine's load drifts over all alike)."""
    rank = comm.Get_rank()
    out = {}
    rounds = 2 if args.quick else 5
    with new_buffer(comm, args, shape, capacity) as dbuf:
        fill(dbuf, shape, capacity, float(rank))
        comm.Barrier()
        dbuf.get_remote_samples(1).wait()  # learn the peers' sizes
        sample_bytes = dbuf.schema.sample_bytes
        for r in args.r:
            engine_times: dict[str, list[float]] = {}
            raw = raw_exchange(comm, sample_bytes, r, r, r)
            cold = raw_exchange(comm, sample_bytes, r, capacity, 2 * r)
            lo, hi = (3, 20) if args.quick else (10, 5000)
            n_draw = agreed_iterations(
                comm, lambda r=r: draw(dbuf, r, args.hold), args.seconds / rounds, lo, hi
            )
            n_raw = agreed_iterations(comm, raw, args.seconds / rounds, lo, hi)
            n_cold = agreed_iterations(comm, cold, args.seconds / rounds, lo, hi)
            before = dbuf.engine_stats()
            draw_times, raw_times, cold_times, round_s, round_sleeps = [], [], [], [], []
            for _ in range(rounds):
                comm.Barrier()
                switches = voluntary_switches()
                draw_times += [traced_draw(dbuf, r, args.hold, engine_times) for _ in range(n_draw)]
                round_sleeps.append(per_draw(switches, voluntary_switches(), n_draw))
                round_s.append(statistics.median(draw_times[-n_draw:]))
                raw_times += timed_loop(comm, raw, n_raw)
                cold_times += timed_loop(comm, cold, n_cold)
            times = {"draw": draw_times, **engine_times, "raw": raw_times, "cold": cold_times}
            out[r] = case_result(times, before, dbuf.engine_stats(), sample_bytes)
            out[r]["engine_path"] = engine_path(dbuf)
            out[r]["round_s"] = round_s
            out[r]["round_sleeps"] = round_sleeps
        comm.Barrier()
    return out


def bench_size_one(comm: MPI.Comm, args: argparse.Namespace, shape: tuple[int, ...], capacity: int) -> dict:
    """Pattern "one", per r: rank 0 draws from an empty buffer (every row remote) while the
    others only serve, then pulls the same bytes raw, hot and cold, in alternating blocks.
    Results on rank 0 (the others report the same numbers, received from it)."""
    rank = comm.Get_rank()
    out = {}
    rounds = 2 if args.quick else 5
    iters = 20 if args.quick else 200
    with new_buffer(comm, args, shape, capacity) as dbuf:
        if rank != 0:
            fill(dbuf, shape, capacity, float(rank))
        idle_barrier(comm)
        sample_bytes = dbuf.schema.sample_bytes
        if rank == 0:
            dbuf.get_remote_samples(1).wait()  # learn the peers' sizes
        for r in args.r:
            engine_times: dict[str, list[float]] = {}
            draw_times, raw_times, cold_times, round_s, round_sleeps = [], [], [], [], []
            before = dbuf.engine_stats()
            for _ in range(rounds):
                if rank == 0:
                    for _ in range(3):
                        draw(dbuf, r, args.hold)
                    stop, first = time.perf_counter() + args.seconds / rounds, len(draw_times)
                    switches = voluntary_switches()
                    while time.perf_counter() < stop or len(draw_times) < first + 10:
                        draw_times.append(traced_draw(dbuf, r, args.hold, engine_times))
                    round_sleeps.append(per_draw(switches, voluntary_switches(), len(draw_times) - first))
                    round_s.append(statistics.median(draw_times[first:]))
                idle_barrier(comm)
                raw_times += raw_pull(comm, sample_bytes, r, iters, r, r)
                cold_times += raw_pull(comm, sample_bytes, r, iters, capacity, 2 * r)
            res = None
            if rank == 0:
                times = {"draw": draw_times, **engine_times, "raw": raw_times, "cold": cold_times}
                res = case_result(times, before, dbuf.engine_stats(), sample_bytes)
                res["engine_path"] = engine_path(dbuf)
                res["round_s"] = round_s
                res["round_sleeps"] = round_sleeps
            out[r] = comm.bcast(res, root=0)
        idle_barrier(comm)
    return out


def bench_rtt(comm: MPI.Comm, args: argparse.Namespace) -> float:
    """Tiny-message round trip (8 bytes there and back), every rank in a pair at once."""
    rank, size = comm.Get_rank(), comm.Get_size()
    ping, pong = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    partner = rank ^ 1
    if partner >= size:  # odd world size: the last rank sits out
        partner = rank

    def round_trip():
        if partner == rank:
            return
        if rank < partner:
            comm.Send(ping, dest=partner, tag=REQUEST_TAG)
            comm.Recv(pong, source=partner, tag=DATA_TAG)
        else:
            comm.Recv(pong, source=partner, tag=REQUEST_TAG)
            comm.Send(ping, dest=partner, tag=DATA_TAG)

    iters = agreed_iterations(comm, round_trip, args.seconds / 2, 20, 2000 if args.quick else 20000)
    return statistics.median(timed_loop(comm, round_trip, iters))


def wire_sample_bytes(name: str) -> int:
    """Bytes of one sample of size `name`: its float32 field, label (8) and weight (4)."""
    return int(np.prod(SHAPES[name])) * 4 + 12


def voluntary_switches() -> int | None:
    """How often the calling thread has blocked in the kernel (waited for a lock, slept):
    its voluntary context switches, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/thread-self/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def per_draw(before: int | None, after: int | None, draws: int) -> float:
    """Switches per draw between two readings of voluntary_switches (nan without them)."""
    return float("nan") if before is None or after is None or draws == 0 else (after - before) / draws


def slow_rounds(round_us) -> int:
    """Rounds whose median draw took over twice the fastest round's: on a busy box draws
    sometimes settle for a whole round into a slow phase (2 ranks on 2 cores: 12 KB draws at
    70-200 us instead of 15-45), which moves the overall median."""
    return sum(1 for t in round_us if t > 2 * min(round_us))


def engine_name(args: argparse.Namespace) -> str:
    """The engine measured, with the Thallium protocol: "mpi", "thallium/na+sm"."""
    engine = args.engine[0]
    if engine != "thallium":
        return engine
    return "thallium/" + (args.address or "na+sm").split("://")[0]


def thallium_address(path: str) -> str:
    """The Thallium protocol that matches an MPI path on one node: shared memory, or the
    network plugin HPC fabrics share code with, pinned to loopback."""
    return "na+sm" if path == "shm" else "ofi+tcp://127.0.0.1"


def mpi_name() -> str:
    """The MPI library in use, short: "MPICH 5.0.2", "Open MPI 5.0.11"."""
    first = MPI.Get_library_version().splitlines()[0]
    if first.startswith("Open MPI"):
        return "Open MPI " + first.split()[2].lstrip("v").rstrip(",")
    return first.replace("Version:", "").split()[0] + " " + first.split()[-1]


def current_path() -> str:
    """The path between this job's ranks, as the environment asks the library for it (the
    launcher's --mca options reach the ranks as OMPI_MCA_* variables)."""
    if MPI.Get_library_version().startswith("Open MPI"):
        btl = os.environ.get("OMPI_MCA_btl", "")
        uses_sm = (
            btl == ""
            or (btl.startswith("^") and "sm" not in btl)
            or (not btl.startswith("^") and "sm" in btl)
        )
        return "shm" if uses_sm else "net"  # Open MPI's net is tcp here
    if os.environ.get("MPIR_CVAR_NOLOCAL", "0").lower() in ("1", "true", "yes"):
        if any(os.environ.get(name, "").lower() == "ofi" for name in NETMOD_VARIABLES):
            return "ofi"
        tls = os.environ.get("UCX_TLS", "")
        return "tcp" if tls and "tcp" in tls and "sm" not in tls and "cma" not in tls else "net"
    return "shm"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.launch:
        return launch(args, argv if argv is not None else sys.argv[1:])
    if len(args.engine) > 1:
        raise SystemExit("remote_fetch: --engine takes several engines with --launch only")
    MPI.Init_thread(MPI.THREAD_MULTIPLE)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size < 2:
        print("remote_fetch: run with at least 2 ranks, e.g. mpiexec -n 2 python benchmarks/remote_fetch.py")
        return 2
    if args.quick:
        args.seconds = min(args.seconds, 0.1)
        args.r = sorted({min(r, 8) for r in args.r})
    path, mpi = current_path(), mpi_name()
    rtt = comm.allreduce(bench_rtt(comm, args), op=MPI.SUM) / size
    rows = []
    for name in args.sizes:
        shape = SHAPES[name]
        capacity = buffer_capacity(args)
        res = (bench_size if args.pattern == "all" else bench_size_one)(comm, args, shape, capacity)
        sample_bytes = wire_sample_bytes(name)
        for r in args.r:
            draw_s = comm.allreduce(res[r]["draw_s"], op=MPI.SUM) / size
            remote = comm.allreduce(res[r]["remote"], op=MPI.SUM) / size
            remote_bytes = comm.allreduce(res[r]["remote_bytes"], op=MPI.SUM) / size
            raw_s = comm.allreduce(res[r]["raw_s"], op=MPI.SUM) / size
            part_us = {p: comm.allreduce(res[r][f"{p}_s"], op=MPI.SUM) / size * 1e6 for p in ENGINE_PARTS}
            engine_s = part_us["engine"] * 1e-6
            waits = part_us["answer"] + part_us["rows"] > 0  # the engine reports its waits
            cold_s = comm.allreduce(res[r]["cold_s"], op=MPI.SUM) / size
            round_us = comm.allreduce(np.array(res[r]["round_s"]), op=MPI.SUM) / size * 1e6
            round_sleeps = comm.allreduce(np.array(res[r]["round_sleeps"]), op=MPI.SUM) / size
            rev_bw = r * sample_bytes / draw_s / 1e6
            rem_bw = remote_bytes / draw_s / 1e6
            raw_bw = r * sample_bytes / raw_s / 1e6
            rows.append(
                {
                    "sample": name,
                    "r": r,
                    "draw_us": draw_s * 1e6,
                    "remote": remote,
                    "rev_MBps": rev_bw,
                    "rem_MBps": rem_bw,
                    "raw_us": raw_s * 1e6,
                    "raw_MBps": raw_bw,
                    "bw_ratio": rev_bw / raw_bw,
                    "rem_ratio": rem_bw / raw_bw,
                    "lat_ratio": draw_s / raw_s,
                    "cold_us": cold_s * 1e6,
                    "cold_ratio": cold_s / draw_s,
                    "eng_us": engine_s * 1e6,
                    "eng_ratio": engine_s / raw_s,
                    "local_us": part_us["local"],
                    "ans_us": part_us["answer"] if waits else None,
                    "rows_us": part_us["rows"] if waits else None,
                    "rtt_us": rtt * 1e6,
                    "ranks": size,
                    "path": path,
                    "engine_path": res[r]["engine_path"],
                    "mpi": mpi,
                    "engine": engine_name(args),
                    "round_us": [round(float(t), 1) for t in round_us],
                    "slow_rounds": slow_rounds(round_us),
                    "sleeps": float(np.mean(round_sleeps)),
                    "round_sleeps": [round(float(v), 2) for v in round_sleeps],
                }
            )
    if rank == 0:
        print(
            f"remote_fetch: {size} ranks, pattern={args.pattern}, engine={engine_name(args)}, path={path} "
            f"(engine: {rows[0]['engine_path'] if rows else None}), "
            f"MPI: {MPI.Get_library_version().splitlines()[0]}, "
            f"draws {'held (alternating blocks)' if args.hold else 'released after each wait'}"
        )
        header = (
            f"{'sample':>7} {'r':>3} {'draw_us':>9} {'remote':>6} {'rev_MB/s':>9} {'rem_MB/s':>9} "
            f"{'raw_us':>9} {'raw_MB/s':>9} {'bw_ratio':>8} {'rem_ratio':>9} {'lat_ratio':>9} "
            f"{'cold_us':>9} {'cold_ratio':>10} {'eng_us':>8} {'eng_ratio':>9} {'local_us':>8} {'ans_us':>7} "
            f"{'rows_us':>8} {'rtt_us':>7} {'slow':>4} {'sleeps':>6}"
        )
        print(header)
        for row in rows:
            print(
                f"{row['sample']:>7} {row['r']:>3} {row['draw_us']:>9.1f} {row['remote']:>6.2f} "
                f"{row['rev_MBps']:>9.0f} {row['rem_MBps']:>9.0f} {row['raw_us']:>9.1f} {row['raw_MBps']:>9.0f} "
                f"{row['bw_ratio']:>8.2f} {row['rem_ratio']:>9.2f} {row['lat_ratio']:>9.2f} "
                f"{row['cold_us']:>9.1f} {row['cold_ratio']:>10.2f} {row['eng_us']:>8.1f} "
                f"{row['eng_ratio']:>9.2f} {row['local_us']:>8.1f} {us(row['ans_us']):>7} {us(row['rows_us']):>8} "
                f"{row['rtt_us']:>7.1f} {row['slow_rounds']:>4} {row['sleeps']:>6.2f}"
            )
        if args.json:
            print("JSON " + json.dumps(rows))
        sys.stdout.flush()
    return 0


def us(value: float | None) -> str:
    """A time in microseconds for a table cell; "-" where the engine has none."""
    return "-" if value is None else f"{value:.1f}"


def find_mpiexec(given: str | None) -> str:
    if given:
        return given
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("remote_fetch: no mpiexec beside this Python or on PATH (--mpiexec)")
    return found


def path_launch(mpiexec: str, path: str) -> tuple[list[str], dict[str, str]]:
    """mpiexec options and environment that put a job on `path` (see the module's help)."""
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60).stdout
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MPIR_CVAR_NOLOCAL", "UCX_TLS", *NETMOD_VARIABLES) and "_MCA_" not in k
    }
    if "Open MPI" in version:
        if path == "ofi":
            raise SystemExit(
                "remote_fetch: --path ofi is MPICH's OFI network module; this mpiexec is Open MPI's"
            )
        # More ranks than cores, and as root (containers), need Open MPI's consent.
        env.update(PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        btl = "self,sm" if path == "shm" else "self,tcp"
        return ["--mca", "pml", "ob1", "--mca", "btl", btl], env
    if path in NETWORK_PATHS:
        env["MPIR_CVAR_NOLOCAL"] = "1"
    if path == "tcp":
        env["UCX_TLS"] = "tcp,self"
    if path == "ofi":
        env["MPIR_CVAR_CH4_NETMOD"] = "ofi"
    return [], env


def user_settings(env: dict[str, str]) -> dict[str, str]:
    """The tuning variables (SETTING_PREFIXES) in a job's environment `env` that this
    process's user set, not the launcher for the path."""
    return {k: v for k, v in sorted(env.items()) if k.startswith(SETTING_PREFIXES) and os.environ.get(k) == v}


def without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv less `options` and the values that follow each."""
    out, skipping = [], False
    for a in argv:
        if a.startswith("--"):
            skipping = a.split("=")[0] in options
        if not skipping:
            out.append(a)
    return out


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Runs this benchmark under mpiexec per (path, engine, ranks), --repeat times in turn
    (so the jobs of one case are spread over the run), and prints one table."""
    mpiexec = find_mpiexec(args.mpiexec)
    launch_only = (
        "--launch",
        "--path",
        "--mpiexec",
        "--repeat",
        "--no-floor",
        "--floor-bench",
        "--no-bare",
        "--bare-bench",
    )
    inner = [*without(argv, (*launch_only, "--engine", "--address", "--json")), "--json"]
    floor = None if args.no_floor or not Path(args.floor_bench).exists() else Path(args.floor_bench)
    launches = {path: path_launch(mpiexec, path) for path in args.path}
    settings = {path: user_settings(env) for path, (_, env) in launches.items()}
    jobs = [(path, engine, n) for path in args.path for engine in args.engine for n in args.launch]
    runs: dict[tuple[str, str, int], list[list[dict]]] = {job: [] for job in jobs}
    for _ in range(args.repeat):
        for job in jobs:
            opts, env = launches[job[0]]
            got = run_job(job, [mpiexec, *opts], env, inner, floor, args)
            if got is None:
                return 1
            runs[job].append(got)
    rows = []
    for path in args.path:
        for engine in args.engine:
            for n in args.launch:
                rows += median_jobs(runs[(path, engine, n)])
        if "thallium" in args.engine:
            add_bare(rows, path, args.address or thallium_address(path), args)
    print_launch_table(rows)
    for path, given in settings.items():
        named = " ".join(f"{k}={v}" for k, v in given.items()) or "none"
        print(f"# {path}: tuning variables from the environment: {named}")
    print(f"# draws {'held until the draw after next (--hold)' if args.hold else 'released after each wait'}")
    if args.repeat > 1:
        print(
            f"# {args.repeat} jobs per row: the row is the job of median lat_ratio (bw_ratio is its inverse "
            "against the same raw exchange); lat_range spans all of them"
        )
    if not floor:
        print(
            f"# floor not measured: {'--no-floor' if args.no_floor else f'no program at {args.floor_bench}'}"
        )
    if "thallium" in args.engine:
        print(f"# bare: {bare_note(args)}")
    if args.json:
        print("JSON " + json.dumps(rows))
    return 0


def run_job(
    job: tuple[str, str, int],
    launcher: list[str],
    env: dict[str, str],
    inner: list[str],
    floor: Path | None,
    args: argparse.Namespace,
) -> list[dict] | None:
    """One --launch job, (path, engine, ranks) under `launcher` (mpiexec and the path's
    options) and `env`: its rows, with the tuning variables it ran under and, for the MPI
    engine, the floor's columns; None (after printing its output) when it failed."""
    path, engine, n = job
    address = args.address or thallium_address(path)
    how = ["--engine", engine] + (["--address", address] if engine == "thallium" else [])
    cmd = [*launcher, "-n", str(n), sys.executable, __file__, *inner, *how]
    print(f"# {path}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON ")]
    if proc.returncode != 0 or not lines:
        print(proc.stdout[-3000:] + proc.stderr[-3000:])
        return None
    got = json.loads(lines[0][5:])
    check_path(got, path)
    for row in got:
        row["settings"] = user_settings(env)
    if floor and engine == "mpi":
        add_floor(got, floor, [*launcher, "-n", str(n)], env, args)
    return got


def median_jobs(runs: list[list[dict]]) -> list[dict]:
    """One row per case from several jobs' rows (each job the same cases in the same order):
    the row of the job with the median lat_ratio (the lower middle for an even count), so
    every column of a row comes from one job, with ``lat_ratios`` (all jobs', in run order)
    and ``jobs`` added. A job is the unit of noise on a shared box: a whole job may land in
    a slow phase (docs/benchmarks.md), so a median of jobs, not of draws, tames it."""
    out = []
    for same_case in zip(*runs, strict=True):
        ranked = sorted(same_case, key=lambda row: row["lat_ratio"])
        row = dict(ranked[(len(ranked) - 1) // 2])
        row.update(jobs=len(same_case), lat_ratios=[r["lat_ratio"] for r in same_case])
        out.append(row)
    return out


def bare_skipped(args: argparse.Namespace) -> str | None:
    """Why the bare Thallium baseline is not run, or None."""
    if args.no_bare:
        return "--no-bare"
    if not Path(args.bare_bench).exists():
        return f"no program at {args.bare_bench}"
    return None if 2 in args.launch else "its rows are 2-rank rows, and no 2-rank job ran"


def bare_note(args: argparse.Namespace) -> str:
    if why := bare_skipped(args):
        return f"not measured ({why})"
    who = "drawing from each other" if args.pattern == "all" else "one drawing from an idle server"
    return f"our bare Thallium program on the row's Thallium protocol, 2 processes {who}; vs_bare = draw_us / bare_us"


def check_path(rows: list[dict], path: str) -> None:
    """Stops unless the job ran on `path`, as both the environment and the engine say."""
    for row in rows:
        # Open MPI's net is tcp already; the engine tells shared memory from network only.
        said = {path, "net"} if path == "tcp" else {path}
        settled = "net" if path in NETWORK_PATHS else path
        engine = row["engine_path"] or settled
        if row["path"] not in said or engine != settled:
            raise SystemExit(
                f"remote_fetch: asked for path {path}; the environment says {row['path']}, "
                f"the engine settled {engine}"
            )


def print_launch_table(rows: list[dict]) -> None:
    def cell(row: dict, key: str, fmt: str) -> str:
        return format(row[key], fmt) if key in row else "-"

    print(
        f"{'ranks':>5} {'path':>4} {'MPI':<16} {'engine':<16} {'sample':>6} {'r':>3} {'draw_us':>9} {'raw_us':>9} "
        f"{'lat_ratio':>9} {'rev_MB/s':>8} {'raw_MB/s':>8} {'bw_ratio':>8} {'cold_ratio':>10} {'remote':>6} "
        f"{'floor_us':>9} {'floor_how':>9} {'vs_floor':>8} {'c_raw_us':>8} {'bare_us':>8} {'vs_bare':>7} {'slow':>4} {'sleeps':>6} "
        f"{'local_us':>8} {'ans_us':>7} {'rows_us':>8} {'lat_range':>11}"
    )
    for row in rows:
        print(
            f"{row['ranks']:>5} {row['path']:>4} {row['mpi']:<16} {row['engine']:<16} "
            f"{row['sample']:>6} {row['r']:>3} {row['draw_us']:>9.1f} {row['raw_us']:>9.1f} "
            f"{row['lat_ratio']:>9.2f} {row['rev_MBps']:>8.0f} {row['raw_MBps']:>8.0f} {row['bw_ratio']:>8.2f} "
            f"{row['cold_ratio']:>10.2f} {row['remote']:>6.2f} {cell(row, 'floor_us', '.1f'):>9} "
            f"{row.get('floor_how', '-'):>9} {cell(row, 'vs_floor', '.2f'):>8} {cell(row, 'c_raw_us', '.1f'):>8} "
            f"{cell(row, 'bare_us', '.1f'):>8} {cell(row, 'vs_bare', '.2f'):>7} {row['slow_rounds']:>4} "
            f"{row['sleeps']:>6.2f} {row['local_us']:>8.1f} {us(row.get('ans_us')):>7} {us(row.get('rows_us')):>8} "
            f"{lat_range(row):>11}"
        )


def lat_range(row: dict) -> str:
    """The lowest and highest lat_ratio over a row's jobs ("-" for one job)."""
    ratios = row.get("lat_ratios", [])
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "-"


def add_bare(rows: list[dict], path: str, address: str, args: argparse.Namespace) -> None:
    """Runs the bare Thallium program (2 processes, bare_thallium.py) on `address` for each
    sample size and adds its time to the 2-rank Thallium rows of `path`."""
    if bare_skipped(args):
        return
    exe = Path(args.bare_bench)
    seconds = 0.1 if args.quick else 0.3
    for name in args.sizes:
        row_bytes = wire_sample_bytes(name)  # as the raw exchange moves it
        if args.pattern == "all":
            bare = bare_thallium.pair(exe, address, seconds, row_bytes, args.r)
        else:
            by_kib = bare_thallium.client_server(exe, address, seconds, [(row_bytes, r) for r in args.r])
            bare = {r: us for (_, r), us in by_kib.items()}
        for row in rows:
            if row["path"] == path and row["ranks"] == 2 and row["sample"] == name and row["r"] in bare:
                if row["engine"].startswith("thallium"):
                    row.update(bare_us=bare[row["r"]], vs_bare=row["draw_us"] / bare[row["r"]])


def add_floor(rows: list[dict], exe: Path, launcher: list[str], env: dict, args: argparse.Namespace) -> None:
    """Runs the floor program (module help) under `launcher` for each sample size and adds its
    numbers to the job's `rows`."""
    for name in args.sizes:
        row_bytes = int(np.prod(SHAPES[name])) * 4
        seconds = 0.1 if args.quick else 0.3
        cmd = [*launcher, str(exe), str(row_bytes), str(buffer_capacity(args)), str(seconds), args.pattern]
        proc = subprocess.run([*cmd, *map(str, args.r)], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(
                f"remote_fetch: the floor program failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        by_r = {d["r"]: d for d in (json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{"))}
        for row in rows:
            got = by_r.get(row["r"]) if row["sample"] == name else None
            if got is None:
                continue
            how = min((w for w in FLOOR_WAYS if got.get(f"{w}_us") is not None), key=lambda w: got[f"{w}_us"])
            row.update(
                floor_us=got[f"{how}_us"],
                floor_how=how,
                vs_floor=row["draw_us"] / got[f"{how}_us"],
                c_raw_us=got["contig_us"],
                floor_ways={w: got.get(f"{w}_us") for w in FLOOR_WAYS},
            )


if __name__ == "__main__":
    sys.exit(main())
