"""Scaling of a draw with the number of ranks: measured from 2 to 16 ranks, modelled to 1024.

One command launches itself under mpiexec at every rank count and then fits the model::

    python benchmarks/scaling.py                       # P = 2 4 8 16, r = 1 7 64, 12 KB samples
    python benchmarks/scaling.py --quick               # smoke run (CI): P = 2 4, short cases
    python benchmarks/scaling.py --ranks 2 4 8 --engine thallium --plot docs/scaling.png

At each P every rank fills its buffer to capacity (equal fills, so sizes settle: full buffers
never need a size query) and all ranks draw back to back, as in training. Side by side, in
the same job, two raw MPI exchanges of the same rows (mpi4py, one contiguous message per
owner's share; the plans of every rank are known to all, so each server knows what to
expect):
    all-peer     the requester messages every one of the P-1 peers (a peer with no rows in the
                 plan answers an empty message): Reverie's protocol before owner-only draws.
    owner-only   the requester messages only the owners its plan takes rows from.
Columns: p50/p99 of one draw (us, pooled over ranks), messages sent per draw and bytes moved
per draw (payload + protocol headers), and Reverie's p50 against each raw p50.

With more ranks than cores (8 and 16 ranks on a 2-core box) every rank is time-sliced: the
absolute numbers then measure the scheduler as much as the protocol; the growth of Reverie
against the raw exchanges in the same job is the meaningful part.

The model (printed after the table, plotted with --plot): a draw that sends m messages and
receives B bytes takes

    T = c0 + a*m + s*H(m) + B/W  +  w*m*o + q*(1 - (1 - o)^m)

c0 the fixed cost of a draw, a the cost per message (issue, serve, complete), B / W the
transfer, s * H(m) the wait for the slowest of m servers (the expected maximum of m
exponential delays of mean s; H(m) = 1 + 1/2 + ... + 1/m). The last two terms are what
oversubscription adds: o = max(0, 1 - cores/P) is the chance that a peer is off a core when
needed; each message may wait w for it, and a draw waits a time slice q when any of its m
peers is off one. o = 0 in the extrapolation (one rank per GPU, with its own cores).
Fitted (non-negative least squares, relative errors) on every P but the largest measured,
which is held out: predicted vs measured is printed for all. Reverie is fitted on its own
rows, the two raw exchanges together (one fabric, one set of costs; they differ only in m).
Messages per draw for P ranks with equal fills: all-peer P - 1; owner-only the expected
number of distinct peers among r uniform draws, (P - 1) * (1 - (1 - 1/P)^r).
Two fabric profiles extrapolate to 1024 ranks: "measured" (the fit as is) and "hpc" (a and
W of the raw exchange replaced by 2 us per message and 12 GB/s per link; Reverie keeps its
measured software cost on top of the raw exchange's). The exposed overhead per training step
is max(0, T_draw - T_step): the draw runs during the step's forward and backward pass.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPES = {"12KB": (3, 32, 32), "602KB": (3, 224, 224)}
REQUEST_TAG, DATA_TAG = 21, 22
METHODS = ("reverie", "raw_all", "raw_owner")
HPC = {"latency_s": 2e-6, "bandwidth_Bps": 12e9}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16], help="rank counts to launch")
    p.add_argument("--r", type=int, nargs="+", default=[1, 7, 64], help="representatives per draw")
    p.add_argument("--sample", default="12KB", choices=list(SHAPES))
    p.add_argument("--capacity", type=int, default=64, help="buffer capacity per rank (samples)")
    p.add_argument("--seconds", type=float, default=1.0, help="measuring time per case and method")
    p.add_argument("--engine", default="mpi", choices=["mpi", "thallium"])
    p.add_argument("--quick", action="store_true", help="smoke run: P = 2 4, r = 1 7, short cases")
    p.add_argument("--json", type=Path, help="write measurements and model to this file")
    p.add_argument("--plot", type=Path, help="write the model's plot (PNG) here")
    p.add_argument(
        "--load", type=Path, help="analyse the measurements of an earlier --json instead of running"
    )
    p.add_argument(
        "--cores", type=int, default=os.cpu_count() or 1, help="cores of the measuring box (for --load)"
    )
    p.add_argument("--step-ms", type=float, default=50.0, help="training step for the exposed overhead (ms)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per launched job")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.ranks = [p for p in args.ranks if p <= 4] or [2]
        args.r = [r for r in args.r if r <= 8] or [1]
        args.seconds = min(args.seconds, 0.15)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        p.error("--plot: needs matplotlib (pip install matplotlib)")
    if min(args.ranks) < 2 or min(args.r) < 1:
        p.error("--ranks: expected rank counts >= 2; --r: expected r >= 1")
    return args


# -- worker: one job of P ranks --------------------------------------------------------------
def owner_plan(rng: np.random.Generator, size: int, r: int) -> np.ndarray:
    """Rows taken from each rank by one uniform draw of r over equal fills."""
    return np.bincount(rng.integers(0, size, r), minlength=size)


def raw_exchange(comm, row_bytes: int, r: int, all_peers: bool, seed: int):
    """One raw MPI draw per call on every rank at once; returns (step, stats) where step
    runs one exchange and stats counts messages and bytes this rank sent per draw."""
    rank, size = comm.Get_rank(), comm.Get_size()
    send = np.full(r * row_bytes, rank % 251, dtype=np.uint8)
    recv = np.zeros(r * row_bytes, dtype=np.uint8)
    ask, incoming = np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    rng = np.random.default_rng(seed)
    sent = {"messages": 0, "bytes": 0, "draws": 0}

    def plans():
        return np.stack([owner_plan(rng, size, r) for _ in range(size)])  # row q: rank q's plan

    def step(plan: np.ndarray):
        from mpi4py import MPI

        mine, reqs, offset = plan[rank], [], 0
        for p in range(size):
            n = int(mine[p])
            if p == rank or (n == 0 and not all_peers):
                continue
            ask[p] = n
            reqs.append(
                comm.Irecv(recv[offset * row_bytes : (offset + n) * row_bytes], source=p, tag=DATA_TAG)
            )
            reqs.append(comm.Isend(ask[p : p + 1], dest=p, tag=REQUEST_TAG))
            offset += n
            sent["messages"] += 1
            sent["bytes"] += 8 + n * row_bytes
        recv[offset * row_bytes : (offset + int(mine[rank])) * row_bytes] = send[
            : int(mine[rank]) * row_bytes
        ]
        askers = [q for q in range(size) if q != rank and (all_peers or plan[q][rank] > 0)]
        asks = [comm.Irecv(incoming[q : q + 1], source=q, tag=REQUEST_TAG) for q in askers]
        # Answer in the order the requests arrive, and poll with a yield rather than MPI's
        # blocking waits: those spin, and with more ranks than cores a spinning rank holds
        # the core its peer needs for a whole time slice (milliseconds per exchange).
        answered = 0
        while answered < len(askers):
            i, flag = MPI.Request.Testany(asks)
            if flag and i != MPI.UNDEFINED:
                q = askers[i]
                reqs.append(comm.Isend(send[: int(incoming[q]) * row_bytes], dest=q, tag=DATA_TAG))
                answered += 1
            else:
                os.sched_yield()
        while not MPI.Request.Testall(reqs):
            os.sched_yield()
        sent["draws"] += 1

    return plans, step, sent


def timed_raw(comm, plans, step, iters: int) -> list[float]:
    all_plans = [plans() for _ in range(iters)]  # scaffolding, outside the timed part
    comm.Barrier()
    times = []
    for plan in all_plans:
        t0 = time.perf_counter()
        step(plan)
        times.append(time.perf_counter() - t0)
    return times


def timed_draws(dbuf, r: int, iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        dbuf.get_remote_samples(r).wait(timeout=60)
        times.append(time.perf_counter() - t0)
    return times


def run_worker(args: argparse.Namespace) -> None:
    import mpi4py

    mpi4py.rc.thread_level = "multiple"
    import torch
    from mpi4py import MPI
    from remote_fetch import fill  # beside this script: the same buffer fill as remote_fetch.py

    from reverie.distributed import DistributedRehearsalBuffer

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    shape = SHAPES[args.sample]
    capacity = max(args.capacity, max(args.r))
    rows = []
    with DistributedRehearsalBuffer(
        capacity,
        {"x": (shape, torch.float32)},
        candidates=16,
        seed=1,
        comm=comm,
        engine=args.engine,
        max_representatives=max(args.r),
        timeout=60,
    ) as dbuf:
        fill(dbuf, shape, capacity, float(rank))
        comm.Barrier()
        row_bytes = dbuf.schema.sample_bytes
        for r in args.r:
            for _ in range(3):  # first draw learns every size, the next ones confirm them
                dbuf.get_remote_samples(r).wait(timeout=60)
            comm.Barrier()
            t0 = time.perf_counter()
            dbuf.get_remote_samples(r).wait(timeout=60)
            iters = comm.allreduce(
                int(min(2000, max(10, args.seconds / max(time.perf_counter() - t0, 1e-6)))), op=MPI.MIN
            )
            if args.quick:
                iters = min(iters, 30)
            before = dbuf.engine_stats()
            times = {"reverie": [], "raw_all": [], "raw_owner": []}
            raws = {
                m: raw_exchange(comm, row_bytes, r, m == "raw_all", seed=r) for m in ("raw_all", "raw_owner")
            }
            for _ in range(3):  # alternating blocks: a shared machine's drift hits all alike
                comm.Barrier()
                times["reverie"] += timed_draws(dbuf, r, iters)
                for m, (plans, step, _) in raws.items():
                    times[m] += timed_raw(comm, plans, step, iters)
            after = dbuf.engine_stats()
            draws = after["draws"] - before["draws"]
            msgs = (after["requests_sent"] - before["requests_sent"]) + (
                after["size_messages"] - before["size_messages"]
            )
            remote_rows = after["rows_remote"] - before["rows_remote"]
            # payload + request headers (40 B + 4 B per slot) + reply headers (32 B + 12 B per row)
            rev_bytes = (after["bytes_remote"] - before["bytes_remote"]) + msgs * 72 + remote_rows * 16
            mine = {
                "reverie": {"messages": msgs / draws, "bytes": rev_bytes / draws},
                **{
                    m: {"messages": s["messages"] / s["draws"], "bytes": s["bytes"] / s["draws"]}
                    for m, (_, _, s) in raws.items()
                },
            }
            gathered = comm.gather({"times": times, "counts": mine}, root=0)
            if rank == 0:
                for m in METHODS:
                    pooled = [t for g in gathered for t in g["times"][m]]
                    rows.append(
                        {
                            "P": size,
                            "r": r,
                            "method": m,
                            "p50_us": 1e6 * statistics.median(pooled),
                            "p99_us": 1e6 * float(np.percentile(pooled, 99)),
                            "messages": statistics.mean(g["counts"][m]["messages"] for g in gathered),
                            "bytes": statistics.mean(g["counts"][m]["bytes"] for g in gathered),
                            "sample_bytes": row_bytes,
                        }
                    )
        comm.Barrier()
    if rank == 0:
        print("JSON " + json.dumps(rows), flush=True)


# -- driver: launch, tabulate, model --------------------------------------------------------
def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def launch(args: argparse.Namespace, size: int) -> list[dict]:
    cmd = [mpiexec(), "-n", str(size), sys.executable, __file__, "--worker", "--engine", args.engine]
    cmd += ["--sample", args.sample, "--capacity", str(args.capacity), "--seconds", str(args.seconds)]
    cmd += ["--r", *map(str, args.r)] + (["--quick"] if args.quick else [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"scaling: {size} ranks did not finish within {args.timeout} s (--timeout)"
        ) from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON ")]
    if proc.returncode != 0 or len(lines) != 1:
        raise SystemExit(
            f"scaling: {' '.join(cmd)} failed (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[0][5:])


def harmonic(m: float) -> float:
    """H(m) = 1 + 1/2 + ... + 1/m, continued to fractional m (messages per draw average)."""
    from scipy.special import digamma

    return float(digamma(m + 1) + np.euler_gamma)


COEFFICIENTS = ("c0_us", "a_us", "s_us", "us_per_byte", "wait_us", "slice_us")


def off_core(size: int, cores: int) -> float:
    """Chance that a given rank is not on a core when its peer needs it (0 when each rank
    has a core: the extrapolation)."""
    return max(0.0, 1.0 - cores / size)


def features(messages: float, nbytes: float, idle: float = 0.0) -> list[float]:
    # c0, a*m, s*H(m), B/W; then what oversubscription adds: each message may find its peer
    # off a core (wait*m*o), and a draw waits a time slice when any of its m peers is off one.
    return [1.0, messages, harmonic(messages), nbytes, messages * idle, 1.0 - (1.0 - idle) ** messages]


def fit(rows: list[dict], cores: int) -> dict[str, float]:
    """Non-negative least squares of p50 on the features, relative errors weighted alike."""
    from scipy.optimize import nnls

    x = [features(r["messages"], r["bytes"], off_core(r["P"], cores)) for r in rows]
    a = np.array(x) / np.array([[r["p50_us"]] for r in rows])
    coef, _ = nnls(a, np.ones(len(rows)))
    return dict(zip(COEFFICIENTS, map(float, coef), strict=True))


def predict(model: dict[str, float], messages: float, nbytes: float, idle: float = 0.0) -> float:
    return float(np.dot([model[c] for c in COEFFICIENTS], features(messages, nbytes, idle)))


def messages_per_draw(method: str, size: int, r: int) -> float:
    if method == "raw_all":
        return float(size - 1)
    return (size - 1) * (1 - (1 - 1 / size) ** r)


def bytes_per_draw(method: str, size: int, r: int, sample_bytes: int) -> float:
    rows = r * (1 - 1 / size)
    m = messages_per_draw(method, size, r)
    return rows * sample_bytes + (m * 72 + rows * 16 if method == "reverie" else m * 8)


def hpc_profile(models: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Raw fabric costs replaced by HPC ones; Reverie keeps its software cost above raw."""
    out = {}
    for m, model in models.items():
        base = models["raw_owner"] if m == "reverie" else model
        extra_a = max(0.0, model["a_us"] - base["a_us"]) if m == "reverie" else 0.0
        out[m] = dict(model, a_us=HPC["latency_s"] * 1e6 + extra_a, us_per_byte=1e6 / HPC["bandwidth_Bps"])
    return out


def print_table(rows: list[dict]) -> None:
    print(
        f"{'P':>4} {'r':>3} {'method':>10} {'p50_us':>9} {'p99_us':>9} {'msgs/draw':>9} {'KB/draw':>8} {'rev/raw_p50':>11}"
    )
    by = {(r["P"], r["r"], r["method"]): r for r in rows}
    for row in rows:
        ratio = ""
        if row["method"] != "reverie":
            ratio = f"{by[(row['P'], row['r'], 'reverie')]['p50_us'] / row['p50_us']:.2f}"
        print(
            f"{row['P']:>4} {row['r']:>3} {row['method']:>10} {row['p50_us']:>9.1f} {row['p99_us']:>9.1f} "
            f"{row['messages']:>9.2f} {row['bytes'] / 1e3:>8.1f} {ratio:>11}"
        )


def growth(rows: list[dict]) -> None:
    """p50 at each P over p50 at the smallest P, per method and r: the growth against raw."""
    sizes = sorted({r["P"] for r in rows})
    by = {(r["P"], r["r"], r["method"]): r["p50_us"] for r in rows}
    print(f"\ngrowth of p50 from {sizes[0]} ranks (Reverie vs the raw exchanges in the same job):")
    for r in sorted({r["r"] for r in rows}):
        for m in METHODS:
            cells = " ".join(f"P={p}: {by[(p, r, m)] / by[(sizes[0], r, m)]:5.2f}x" for p in sizes)
            print(f"  r={r:<3} {m:>10}  {cells}")


def validate(rows: list[dict], models: dict[str, dict[str, float]], held_out: int, cores: int) -> None:
    scope = f"fitted on P < {held_out} (P = {held_out} held out)" if held_out else "fitted on every P"
    print(f"\nmodel: T = c0 + a*m + s*H(m) + B/W + w*m*o + q*(1-(1-o)^m), o = max(0, 1 - {cores}/P); {scope}")
    for m, model in models.items():
        print(
            f"  {m:>10}: c0 {model['c0_us']:.1f} us, a {model['a_us']:.2f} us/msg, s {model['s_us']:.1f} us, "
            f"W {1 / max(model['us_per_byte'], 1e-12) / 1e3:.2f} GB/s, w {model['wait_us']:.0f} us, "
            f"q {model['slice_us']:.0f} us"
        )
    print(f"{'P':>4} {'r':>3} {'method':>10} {'measured_us':>11} {'predicted_us':>12} {'pred/meas':>9}")
    for row in rows:
        pred = predict(models[row["method"]], row["messages"], row["bytes"], off_core(row["P"], cores))
        tag = "  (held out)" if row["P"] == held_out else ""
        print(
            f"{row['P']:>4} {row['r']:>3} {row['method']:>10} {row['p50_us']:>11.1f} {pred:>12.1f} {pred / row['p50_us']:>9.2f}{tag}"
        )


def predictions(models, sample_bytes: int, rs: list[int], step_ms: float) -> list[dict]:
    out = []
    profiles = {"measured": models, "hpc": hpc_profile(models)}
    for profile, ms in profiles.items():
        for size in [2**k for k in range(1, 11)]:
            for r in rs:
                for m in METHODS:
                    t = predict(
                        ms[m], messages_per_draw(m, size, r), bytes_per_draw(m, size, r, sample_bytes)
                    )
                    exposed = max(0.0, t / 1e3 - step_ms)
                    out.append(
                        {
                            "profile": profile,
                            "P": size,
                            "r": r,
                            "method": m,
                            "draw_us": t,
                            "exposed_ms": exposed,
                        }
                    )
    return out


def research_setup(models, step_ms: float) -> list[dict]:
    """ResNet-class steps, 602 KB samples, b = 56, r = 7 and 28, 16 to 1024 ranks."""
    sample = int(np.prod(SHAPES["602KB"])) * 4 + 12
    rows = []
    for profile, ms in {"measured": models, "hpc": hpc_profile(models)}.items():
        for size in [2**k for k in range(4, 11)]:
            for r in (7, 28):
                for m in METHODS:
                    t = predict(ms[m], messages_per_draw(m, size, r), bytes_per_draw(m, size, r, sample))
                    rows.append(
                        {
                            "profile": profile,
                            "P": size,
                            "r": r,
                            "method": m,
                            "messages": messages_per_draw(m, size, r),
                            "draw_ms": t / 1e3,
                            "exposed_ms": max(0.0, t / 1e3 - step_ms),
                        }
                    )
    return rows


def plot(
    path: Path,
    rows: list[dict],
    models: dict[str, dict[str, float]],
    cores: int,
    preds: list[dict],
    rs: list[int],
    research: list[dict],
    step_ms: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = {"reverie": "tab:blue", "raw_all": "tab:red", "raw_owner": "tab:green"}
    styles = {"measured": "-", "hpc": ":"}
    r = max(rs) if len(rs) < 2 else sorted(rs)[len(rs) // 2]
    for m in METHODS:
        for profile, ls in styles.items():
            pts = [p for p in preds if p["method"] == m and p["r"] == r and p["profile"] == profile]
            axes[0].plot(
                [p["P"] for p in pts],
                [p["draw_us"] for p in pts],
                ls,
                color=colors[m],
                label=f"{m} ({profile})",
            )
        meas = [x for x in rows if x["method"] == m and x["r"] == r]
        axes[0].plot([x["P"] for x in meas], [x["p50_us"] for x in meas], "o", color=colors[m])
        fitted = [predict(models[m], x["messages"], x["bytes"], off_core(x["P"], cores)) for x in meas]
        axes[0].plot([x["P"] for x in meas], fitted, "x", color=colors[m], ms=8)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="ranks P",
        ylabel="draw p50 (us)",
        title=f"one draw, r = {r} (o measured, x model at those P)",
    )
    axes[0].set_xscale("log", base=2)
    axes[0].legend(fontsize=7)
    sizes = [2**k for k in range(1, 11)]
    for rr in sorted({1, 7, 28, 64} | set(rs)):
        axes[1].plot(
            sizes, [messages_per_draw("reverie", s, rr) for s in sizes], label=f"owner-only, r = {rr}"
        )
    axes[1].plot(sizes, [s - 1 for s in sizes], "k--", label="all-peer (any r)")
    axes[1].set(
        xscale="log", yscale="log", xlabel="ranks P", ylabel="messages per draw", title="messages per draw"
    )
    axes[1].set_xscale("log", base=2)
    axes[1].legend(fontsize=7)
    colors = {"reverie": "tab:blue", "raw_all": "tab:red", "raw_owner": "tab:green"}
    for m in METHODS:
        for r, ls in ((7, "-"), (28, "--")):
            pts = [x for x in research if x["profile"] == "hpc" and x["method"] == m and x["r"] == r]
            axes[2].plot(
                [x["P"] for x in pts], [x["draw_ms"] for x in pts], ls, color=colors[m], label=f"{m}, r = {r}"
            )
    axes[2].axhline(step_ms, color="k", lw=0.8)
    axes[2].text(16, step_ms * 1.08, f"training step ({step_ms:g} ms): draws below it are hidden", fontsize=7)
    axes[2].set(xscale="log", yscale="log", xlabel="ranks P", ylabel="draw (ms)")
    axes[2].set_title("research setup, hpc profile: 602 KB samples, b = 56", fontsize=9)
    axes[2].set_xscale("log", base=2)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    rows: list[dict] = []
    cpus = args.cores
    if args.load:
        rows = json.loads(args.load.read_text())["rows"]
    for size in [] if args.load else args.ranks:
        note = f" ({size / cpus:.0f}x oversubscribed on {cpus} cores)" if size > cpus else ""
        print(f"scaling: {size} ranks{note} ...", flush=True)
        rows += launch(args, size)
    print(
        f"\nscaling: engine={args.engine}, sample={args.sample}, all ranks drawing, buffers full; {cpus} cores"
    )
    print_table(rows)
    growth(rows)
    sizes = sorted({r["P"] for r in rows})
    held_out = sizes[-1] if len(sizes) > 2 else 0
    # The two raw exchanges share one fabric (one set of costs; they differ only in m);
    # Reverie gets its own, so its software cost shows against the raw one.
    fitted = [r for r in rows if r["P"] != held_out]
    raw = fit([r for r in fitted if r["method"] != "reverie"], cpus)
    models = {
        "reverie": fit([r for r in fitted if r["method"] == "reverie"], cpus),
        "raw_all": raw,
        "raw_owner": raw,
    }
    validate(rows, models, held_out, cpus)
    rs = sorted({r["r"] for r in rows})
    preds = predictions(models, rows[0]["sample_bytes"], sorted(set(rs) | {7, 28}), args.step_ms)
    research = research_setup(models, args.step_ms)
    print(f"\nresearch setup: 128 ranks, 602 KB samples, b = 56, step {args.step_ms:g} ms (--step-ms)")
    print(f"{'profile':>9} {'r':>3} {'method':>10} {'msgs/draw':>9} {'draw_ms':>8} {'exposed_ms':>10}")
    for x in (x for x in research if x["P"] == 128):
        print(
            f"{x['profile']:>9} {x['r']:>3} {x['method']:>10} {x['messages']:>9.1f} {x['draw_ms']:>8.2f} {x['exposed_ms']:>10.2f}"
        )
    print("\nmodel at 16..1024 ranks (r = 7, 12 KB samples as measured): draw p50 in us")
    for profile in ("measured", "hpc"):
        for m in METHODS:
            cells = " ".join(
                f"{p['draw_us']:>8.0f}"
                for p in preds
                if p["profile"] == profile and p["method"] == m and p["r"] == 7 and p["P"] >= 16
            )
            print(f"  {profile:>8} {m:>10} {cells}   (P = 16 32 64 128 256 512 1024)")
    print("\nresearch setup, hpc profile, 16..1024 ranks: draw ms (exposed ms per step)")
    for r in (7, 28):
        for m in METHODS:
            cells = " ".join(
                f"{x['draw_ms']:>6.2f} ({x['exposed_ms']:.1f})"
                for x in research
                if x["profile"] == "hpc" and x["method"] == m and x["r"] == r
            )
            print(f"  r={r:<3} {m:>10} {cells}   (P = 16 32 64 128 256 512 1024)")
    if args.plot:
        plot(args.plot, rows, models, cpus, preds, rs, research, args.step_ms)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "engine": args.engine,
                    "cores": cpus,
                    "rows": rows,
                    "models": models,
                    "predictions": preds,
                    "research": research,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
