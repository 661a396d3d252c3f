"""Runs our bare Thallium program (``benchmarks/thallium_bare.cc``, installed as
``reverie/_bench/thallium_bare``) with the engine's thread layout: one progress thread that
runs the handlers, Margo's spindown as the engine sets it. Used by ``thallium_fetch.py``
(one client, an idle server) and ``remote_fetch.py`` (a pair drawing from each other)."""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import reverie

BARE_BENCH = Path(reverie.__file__).parent / "_bench" / "thallium_bare"
LAYOUT = ["1", "-1"]  # progress thread on, handlers in its pool: the engine's layout
TIMEOUT_S = 600


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    """Each process's stdout once all ended; if one fails or they outlast TIMEOUT_S, kills
    the others (a server or peer would wait for a partner that is gone) and raises."""
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.returncode not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()
            why = f"failed ({failed[0].returncode})" if failed else f"did not finish within {TIMEOUT_S} s"
            raise RuntimeError(f"thallium_bare {why}: {(failed or procs)[0].stderr.read()[-2000:]}")
        time.sleep(0.05)
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"thallium_bare failed: {' '.join(p.stderr.read()[-1000:] for p in procs)}")
    return [p.stdout.read() for p in procs]


def client_server(exe: Path, address: str, seconds: float, cases: list[tuple[int, int]] | None = None):
    """One client pulling from an idle server. ``cases``: (row_bytes, r) pairs of one
    row size, or None for the program's own grid (12 and 602 KiB rows, r = 7, 28, 64).
    Returns {(row KiB, r): microseconds per RPC + push}."""
    extra = [str(cases[0][0]), *(str(r) for _, r in cases)] if cases else []
    with tempfile.TemporaryDirectory() as tmp:
        addr = str(Path(tmp) / "addr")
        server = _spawn([str(exe), "server", address, *LAYOUT, addr])
        client = _spawn([str(exe), "client", address, *LAYOUT, addr, str(seconds), *extra])
        out = _finish([client, server])[0]
    found = re.finditer(r"RESULT bw .*?size=(\d+)KBx(\d+) .*?rpc_us=([\d.]+)", out)
    return {(int(m.group(1)), int(m.group(2))): float(m.group(3)) for m in found}


def pair(
    exe: Path, address: str, seconds: float, row_bytes: int, rs: list[int], runs: int = 3
) -> dict[int, float]:
    """Two processes serving each other and drawing at the same time, half of each draw
    from the peer and half copied locally (the raw MPI exchange of 2 ranks). Returns
    {r: microseconds per draw}: the median over ``runs`` runs of the two processes' mean.
    Several runs, as on a busy box a run sometimes sticks in a slow mode (2 ranks on 2
    cores: 7 x 12 KB took 3.2 ms in 1 run of 4, 61-66 us in the others)."""
    got: dict[int, list[float]] = {}
    for _ in range(runs):
        for r, us in _pair_once(exe, address, seconds, row_bytes, rs).items():
            got.setdefault(r, []).append(us)
    return {r: statistics.median(v) for r, v in got.items() if len(v) == runs}


def _pair_once(exe: Path, address: str, seconds: float, row_bytes: int, rs: list[int]) -> dict[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = str(Path(tmp) / "a"), str(Path(tmp) / "b")
        tail = [str(seconds), str(row_bytes), *map(str, rs)]
        procs = [
            _spawn([str(exe), "pair", address, *LAYOUT, mine, theirs, *tail])
            for mine, theirs in ((a, b), (b, a))
        ]
        outs = _finish(procs)
    times: dict[int, list[float]] = {}
    for out in outs:
        for m in re.finditer(r"RESULT pair size=\d+Bx(\d+) .*?rpc_us=([\d.]+)", out):
            times.setdefault(int(m.group(1)), []).append(float(m.group(2)))
    return {r: sum(v) / len(v) for r, v in times.items() if len(v) == 2}
