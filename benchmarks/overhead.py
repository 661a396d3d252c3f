"""Exposed overhead of rehearsal in a real DDP training loop, side by side in one run.

    mpiexec -n 4 python benchmarks/overhead.py [--steps 30] [--quick] [--device cuda]

Small ResNet on 3x32x32 inputs, b=56, r=7, c=14 (defaults). Three loops, same model and data:
  (a) plain: minibatches of b + r new samples, no rehearsal (the baseline);
  (b) reverie: RehearsalLoader, b new + r drawn, the draw for step i+1 overlapped with step i;
  (c) sync: the reference without overlap (request the draw, wait for it, then train).
Prints step times (median over steps, max over ranks) and overhead = step(b) / step(a) - 1,
and the CPU each loop's threads used per step (Linux: /proc/self/task/*/schedstat), so CPU
taken by background threads shows up even when the machine's noise hides it in step times.
With --device cuda every loop copies its batches from host memory to the GPU and a step
ends when the GPU has finished it (ranks on one GPU share it and reduce with gloo).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import torch
import torch.nn.functional as F
from mpi4py import MPI
from torch.nn.parallel import DistributedDataParallel as DDP

from reverie import DistributedRehearsalBuffer, RehearsalLoader, concat_draw
from reverie.experiments.models import SmallResNet
from reverie.experiments.process_group import init_process_group

SHAPE = (3, 32, 32)


def stream(rank: int, steps: int, b: int, classes: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(rank)
    return [
        (torch.randn(b, *SHAPE, generator=g), torch.randint(0, classes, (b,), generator=g))
        for _ in range(steps)
    ]


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y, w) -> None:
    opt.zero_grad(set_to_none=True)
    loss = (F.cross_entropy(model(x), y, reduction="none") * w).mean()
    loss.backward()
    opt.step()


def timed_loop(batches, model, opt, comm: MPI.Comm, device: torch.device) -> list[float]:
    times = []
    comm.Barrier()
    t = time.perf_counter()
    for x, y, w in batches:
        train_step(model, opt, x.to(device), y.to(device), w.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - t)
        t = now
    return times


def thread_cpu_ns() -> collections.Counter:
    """CPU nanoseconds used so far by each thread of this process, summed per thread name
    (the main thread is "main"); empty where /proc has no schedstat."""
    out: collections.Counter = collections.Counter()
    task_dir = "/proc/self/task"
    for tid in os.listdir(task_dir) if os.path.isdir(task_dir) else []:
        try:
            with open(f"{task_dir}/{tid}/comm") as f:
                name = "main" if int(tid) == os.getpid() else f.read().strip()
            with open(f"{task_dir}/{tid}/schedstat") as f:
                out[name] += int(f.read().split()[0])
        except (OSError, ValueError):
            continue
    return out


def plain(data_br):
    for x, y in data_br:
        yield x, y, torch.ones(x.shape[0])


def synchronous(data, dbuf: DistributedRehearsalBuffer, r: int):
    for x, y in data:
        dbuf.add(x, y)
        draw = dbuf.get_remote_samples(r).wait()
        out = concat_draw(x, y, None, draw)
        yield out["x"], out.labels, out.weights


def make_buffer(comm: MPI.Comm, args) -> DistributedRehearsalBuffer:
    return DistributedRehearsalBuffer(
        capacity=args.capacity,
        fields={"x": (SHAPE, torch.float32)},
        candidates=args.c,
        comm=comm,
        seed=0,
        engine=args.engine,
    )


def print_thread_cpu(cpu: dict[str, dict[str, float]]) -> None:
    """CPU ms per step of each thread (mean over ranks, last round), threads over 0.05 ms."""
    if not any(cpu.values()):
        return
    print("CPU per step, ms (mean over ranks, last round):")
    for loop, threads in cpu.items():
        busy = {t: ms for t, ms in threads.items() if ms >= 0.05}
        parts = ", ".join(f"{t} {ms:.2f}" for t, ms in sorted(busy.items(), key=lambda kv: -kv[1]))
        print(f"  {loop:<8} total {sum(threads.values()):7.2f}: {parts}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each loop")
    p.add_argument("--b", type=int, default=56, help="new samples per minibatch")
    p.add_argument("--r", type=int, default=7, help="representatives per minibatch")
    p.add_argument("--c", type=int, default=14, help="candidates offered per minibatch")
    p.add_argument("--capacity", type=int, default=2000, help="buffer capacity per rank")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds, each loop first in turn; the best median of each loop counts",
    )
    p.add_argument("--quick", action="store_true", help="a few steps: smoke run")
    p.add_argument("--engine", default="auto", choices=["auto", "mpi", "thallium"], help="Reverie engine")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model trains")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds = 4, 1, 1
    torch.set_num_threads(1)
    group = init_process_group(args.device)
    device = group.device
    comm = MPI.COMM_WORLD
    torch.manual_seed(0)
    model = DDP(SmallResNet(SHAPE, 10).to(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n = args.steps + args.warmup
    data = stream(comm.rank, n, args.b)
    data_br = stream(comm.rank + 1000, n, args.b + args.r)

    cpu: dict[str, dict[str, float]] = {}

    def measure(name: str, batches) -> float:
        before = thread_cpu_ns()
        times = timed_loop(batches, model, opt, comm, device)
        used = thread_cpu_ns()
        used.subtract(before)
        total: collections.Counter = collections.Counter()
        for per_rank in comm.allgather(dict(used)):  # thread names may differ between ranks
            total.update(per_rank)
        cpu[name] = {t: ns / comm.size / n / 1e6 for t, ns in total.items()}
        return comm.allreduce(statistics.median(times[args.warmup :]), op=MPI.MAX)

    # Rounds alternate the loops so drift in machine load hits all of them alike.
    results: dict[str, float] = {"plain": float("inf"), "reverie": float("inf"), "sync": float("inf")}
    exposed = 0.0
    stages: dict[str, float] = {}
    with make_buffer(comm, args) as dbuf, make_buffer(comm, args) as sync_buf:
        for round_ in range(args.rounds):
            loader = RehearsalLoader(data, dbuf, representatives=args.r, device=device)
            loops = {"plain": plain(data_br), "reverie": loader, "sync": synchronous(data, sync_buf, args.r)}
            names = list(loops)
            names = names[round_ % 3 :] + names[: round_ % 3]  # each loop goes first in turn
            for name in names:
                t = measure(name, loops[name])
                results[name] = min(results.get(name, t), t)
            stats = loader.stats()
            exposed = comm.allreduce(stats["overhead"]["p50"], op=MPI.MAX)
            stages = {s: comm.allreduce(stats[s]["p50"], op=MPI.MAX) for s in ("add", "wait", "concat")}
    if comm.rank == 0:
        base = results["plain"]
        backend = torch.distributed.get_backend()
        print(
            f"ranks={comm.size} device={device.type} ({backend}) engine={dbuf.engine} b={args.b} r={args.r} c={args.c} "
            f"steps={args.steps} (median step, max over ranks)"
        )
        print(f"{'loop':<10}{'step ms':>10}{'vs plain':>10}")
        for name, t in results.items():
            print(f"{name:<10}{t * 1e3:>10.2f}{t / base:>10.3f}")
        print(f"exposed overhead (reverie / plain - 1): {results['reverie'] / base - 1:+.2%}")
        parts = ", ".join(f"{s} {t * 1e3:.3f}" for s, t in stages.items())
        print(f"loop time inside RehearsalLoader per step (p50): {exposed * 1e3:.3f} ms ({parts})")
        print(f"sync reference overhead (sync / plain - 1): {results['sync'] / base - 1:+.2%}")
        print_thread_cpu(cpu)
    group.close()


if __name__ == "__main__":
    main()
