"""A bounded soak on 4 ranks: no corrupted sample, flat memory, nothing leaked after close."""

from __future__ import annotations

from pathlib import Path

import mpi_launch
import pytest

WORKER = Path(__file__).with_name("soak_worker.py")


@pytest.mark.parametrize("engine", ["mpi", "thallium"])
def test_soak_four_ranks(engine: str) -> None:
    mpi_launch.require_engine(engine)
    results = mpi_launch.run_ranks(WORKER, 4, "--steps", "2000", "--engine", engine, timeout=600)
    for r in results:
        print(r)  # the growth is reported in the test log (pytest -s)
        assert r["drawn"] > 0.9 * 16 * r["steps"]
        assert r["corrupted"] == 0, r
        assert r["rss_growth_kib"] < 8 * 1024, r  # flat after warm-up: no per-step leak
        assert r["threads_during"] >= 2, r  # the engine really ran its worker and server
        assert r["threads_left"] == 0 and r["fds_left"] == 0, r
