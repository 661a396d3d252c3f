"""Avalanche's ReplayPlugin against Reverie's plugin on real MNIST digits, same total memory.

    python benchmarks/avalanche_replay.py --ranks 2 --buffer-sizes 200 500 --seeds 0 1 2 --engine mpi

Runs examples/avalanche_replay.py once per (plugin, buffer size, seed) under
``mpiexec -n RANKS`` (one process when RANKS is 1) and prints, per buffer size, the final
mean accuracy over all ten classes and the training wall time (slowest rank, evaluation
excluded) of both plugins side by side, with Reverie / Avalanche ratios. ``buffer size`` is
the memory of the whole job: Avalanche's plugin keeps ``size // RANKS`` samples on every
rank and replays its own; Reverie's keeps as many per rank and draws from all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "avalanche_replay.py"
PLUGINS = ("replay", "reverie")


def run(
    plugin: str, size: int, seed: int, ranks: int, engine: str, mpiexec: str, channels: int = 1
) -> dict[str, float]:
    """One training run; returns the example's JSON result (final_accuracy %, train_seconds)."""
    cmd = [sys.executable, str(EXAMPLE), "--plugin", plugin, "--buffer-size", str(size), "--seed", str(seed)]
    cmd += ["--engine", engine, "--channels", str(channels), "--json"]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--buffer-sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--engine", default="mpi", help="Reverie's engine: auto, mpi or thallium")
    parser.add_argument("--mpiexec", default=str(Path(sys.executable).parent / "mpiexec"))
    parser.add_argument(
        "--channels", type=int, choices=[1, 3], default=1,
        help="3: the gray channel repeated, an MLP of 2352 inputs (issue 18's reference setup)",
    )  # fmt: skip
    args = parser.parse_args()
    print(
        f"{'buffer':>6} {'seed':>4} | {'Avalanche acc':>13} {'time s':>7} | {'Reverie acc':>11} {'time s':>7}"
    )
    for size in args.buffer_sizes:
        acc: dict[str, list[float]] = {p: [] for p in PLUGINS}
        secs: dict[str, list[float]] = {p: [] for p in PLUGINS}
        for seed in args.seeds:
            for plugin in PLUGINS:  # alternated, so a change in machine load hits both
                result = run(plugin, size, seed, args.ranks, args.engine, args.mpiexec, args.channels)
                acc[plugin].append(result["final_accuracy"])
                secs[plugin].append(result["train_seconds"])
            print(
                f"{size:>6} {seed:>4} | {acc['replay'][-1]:>12.1f}% {secs['replay'][-1]:>7.2f} | "
                f"{acc['reverie'][-1]:>10.1f}% {secs['reverie'][-1]:>7.2f}",
                flush=True,
            )
        a, r = (statistics.mean(acc[p]) for p in PLUGINS)
        ta, tr = (statistics.mean(secs[p]) for p in PLUGINS)
        print(
            f"{size:>6} mean | {a:>12.1f}% {ta:>7.2f} | {r:>10.1f}% {tr:>7.2f} | "
            f"Reverie/Avalanche: accuracy {r - a:+.1f} points, time {tr / ta:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
