"""The end of every multi-rank worker's main: run the named scenarios on every rank, abort
the whole job on an exception (no rank left waiting in a collective), gather the results on
rank 0 and print them as one ``RESULT {...}`` line (mpi_jobs.result_line reads it)."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any


def run_scenarios(
    comm: Any, engine: str, runners: dict[str, Callable[[], dict]], names: Iterable[str]
) -> int:
    """Runs ``runners[name]()`` for each of ``names``; each result gets ``_seconds``."""
    rank = comm.Get_rank()
    results = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            mine = runners[name]()
        except Exception:
            sys.stderr.write(f"rank {rank}: scenario {name} failed:\n{traceback.format_exc()}")
            sys.stderr.flush()
            comm.Abort(1)
        mine["_seconds"] = time.perf_counter() - t0
        results[name] = comm.gather(mine, root=0)
    if rank == 0:
        print(
            "RESULT " + json.dumps({"size": comm.Get_size(), "engine": engine, "scenarios": results}),
            flush=True,
        )
    return 0
