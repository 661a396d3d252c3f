"""Per-step timing records of the training-loop integration, summarised on demand."""

from __future__ import annotations

from typing import Any

import numpy as np


class StepStats:
    """Seconds spent per step in add, waiting for the draw, and building the batch."""

    STAGES = ("add", "wait", "concat")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._times: dict[str, list[float]] = {s: [] for s in self.STAGES}
        self._drawn = 0

    def record(self, add: float, wait: float, concat: float, drawn: int) -> None:
        for name, value in (("add", add), ("wait", wait), ("concat", concat)):
            self._times[name].append(value)
        self._drawn += drawn

    def summary(self, engine: dict[str, Any]) -> dict[str, Any]:
        """mean/p50/p99 per stage plus ``overhead`` (their sum: the time the loop waited on
        Reverie per step) and the engine's counters (draws, bytes, fetch/insert seconds)."""
        steps = len(self._times["add"])
        out: dict[str, Any] = {"steps": steps, "samples_drawn": self._drawn}
        total = np.zeros(steps)
        for name, values in self._times.items():
            arr = np.asarray(values, dtype=float)
            total = total + arr
            out[name] = _describe(arr)
        out["overhead"] = _describe(total)
        out["engine"] = engine
        return out


def _describe(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "total": 0.0}
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "total": float(values.sum()),
    }
