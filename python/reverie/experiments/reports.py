"""Results of a run: per-strategy records, the comparison ratios, JSON/CSV files and the
terminal table.

Times are seconds of wall-clock time measured on rank 0 between barriers, so they are the
time of the slowest rank. ``train_time_s`` = buffer/model setup + training of every task
(evaluation excluded, it is the same work for every strategy); ``wall_time_s`` adds the
evaluations.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import backward_transfer, forgetting, mean_accuracy_after_each_task, new_matrix

REPLAY_STRATEGIES = ("rehearsal", "der", "derpp")


@dataclass
class StrategyResult:
    """Measurements of one strategy over the task sequence.

    Attributes:
        name: strategy name.
        top1: accuracy matrix ``[T, T]`` (fractions; NaN where not evaluated).
        top5: top-5 accuracy matrix ``[T, T]``.
        train_time_per_task: seconds of training per task ``[T]``.
        eval_time_per_task: seconds of evaluation per task ``[T]``.
        setup_time: seconds to build the model and buffer.
        buffer: buffer sizes (replay strategies only).
    """

    name: str
    top1: np.ndarray
    top5: np.ndarray
    train_time_per_task: list[float] = field(default_factory=list)
    eval_time_per_task: list[float] = field(default_factory=list)
    setup_time: float = 0.0
    buffer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, name: str, tasks: int) -> StrategyResult:
        """A record with NaN matrices for ``tasks`` tasks."""
        return cls(name, new_matrix(tasks), new_matrix(tasks))

    @property
    def train_time(self) -> float:
        """Setup plus training of all tasks, seconds."""
        return self.setup_time + float(sum(self.train_time_per_task))

    @property
    def wall_time(self) -> float:
        """Setup, training and evaluation, seconds."""
        return self.train_time + float(sum(self.eval_time_per_task))

    def final_mean(self, k: int = 1) -> float:
        """Mean accuracy over all tasks after the last task evaluated (top-``k``, k in {1, 5})."""
        means = mean_accuracy_after_each_task(self.top1 if k == 1 else self.top5)
        return means[-1] if means else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN entries become null)."""

        def matrix(m: np.ndarray) -> list[list[float | None]]:
            return [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in m]

        return {
            "accuracy_matrix_top1": matrix(self.top1),
            "accuracy_matrix_top5": matrix(self.top5),
            "mean_top1_after_task": [round(v, 6) for v in mean_accuracy_after_each_task(self.top1)],
            "mean_top5_after_task": [round(v, 6) for v in mean_accuracy_after_each_task(self.top5)],
            "final_mean_top1": round(self.final_mean(1), 6),
            "final_mean_top5": round(self.final_mean(5), 6),
            "forgetting": round(forgetting(self.top1), 6),
            "backward_transfer": round(backward_transfer(self.top1), 6),
            "train_time_per_task_s": [round(t, 4) for t in self.train_time_per_task],
            "eval_time_per_task_s": [round(t, 4) for t in self.eval_time_per_task],
            "setup_time_s": round(self.setup_time, 4),
            "train_time_s": round(self.train_time, 4),
            "wall_time_s": round(self.wall_time, 4),
            "buffer": self.buffer,
        }


def comparison(results: dict[str, StrategyResult]) -> dict[str, float]:
    """Ratios between strategies: each replay strategy's final mean top-1 as % of scratch's and
    as a multiple of incremental's, and its train time as a multiple of incremental's."""
    out: dict[str, float] = {}
    inc, scr = results.get("incremental"), results.get("scratch")
    for name in (*REPLAY_STRATEGIES, "scratch"):
        res = results.get(name)
        if res is None:
            continue
        if scr is not None and name != "scratch" and scr.final_mean() > 0:
            out[f"{name}_accuracy_pct_of_scratch"] = round(100.0 * res.final_mean() / scr.final_mean(), 3)
        if inc is not None and inc.final_mean() > 0:
            out[f"{name}_accuracy_x_incremental"] = round(res.final_mean() / inc.final_mean(), 4)
        if inc is not None and inc.train_time > 0:
            out[f"{name}_time_x_incremental"] = round(res.train_time / inc.train_time, 4)
    return out


def results_document(
    results: dict[str, StrategyResult], config: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Any]:
    """The content of ``results.json``."""
    return {
        "config": config,
        **meta,
        "strategies": {n: r.to_dict() for n, r in results.items()},
        "comparison": comparison(results),
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    """Write ``doc`` as indented JSON."""
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_csv(results: dict[str, StrategyResult], path: Path) -> None:
    """One row per (strategy, trained task): mean top-1/top-5 over seen tasks, times, and the
    accuracy on every task (``top1_task<j>`` columns; empty where not evaluated)."""
    tasks = next(iter(results.values())).top1.shape[0] if results else 0
    header = (
        [
            "strategy",
            "after_task",
            "mean_top1",
            "mean_top5",
            "train_time_s",
            "eval_time_s",
            "cumulative_train_time_s",
        ]
        + [f"top1_task{j}" for j in range(tasks)]
        + [f"top5_task{j}" for j in range(tasks)]
    )
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for name, res in results.items():
            m1, m5 = mean_accuracy_after_each_task(res.top1), mean_accuracy_after_each_task(res.top5)
            cum = res.setup_time
            for i in range(len(m1)):
                cum += res.train_time_per_task[i]
                cells = [
                    name,
                    i,
                    f"{m1[i]:.6f}",
                    f"{m5[i]:.6f}",
                    f"{res.train_time_per_task[i]:.4f}",
                    f"{res.eval_time_per_task[i]:.4f}",
                    f"{cum:.4f}",
                ]
                cells += ["" if math.isnan(v) else f"{v:.6f}" for v in res.top1[i]]
                cells += ["" if math.isnan(v) else f"{v:.6f}" for v in res.top5[i]]
                w.writerow(cells)


def summary_table(doc: dict[str, Any]) -> str:
    """Terminal table of a results document (as written to ``results.json``)."""
    rows = [("strategy", "top-1", "top-5", "forgetting", "train s", "wall s", "mean top-1 after each task")]
    for name, r in doc["strategies"].items():
        rows.append(
            (
                name,
                f"{100 * r['final_mean_top1']:.1f}%",
                f"{100 * r['final_mean_top5']:.1f}%",
                f"{100 * r['forgetting']:.1f}",
                f"{r['train_time_s']:.1f}",
                f"{r['wall_time_s']:.1f}",
                " ".join(f"{100 * v:.0f}" for v in r["mean_top1_after_task"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(widths[i]) if i in (0, 6) else c.rjust(widths[i]) for i, c in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparison_lines(doc: dict[str, Any]) -> list[str]:
    """Human-readable comparison lines, e.g. ``rehearsal accuracy as % of scratch: 96.2%``."""
    comp = doc.get("comparison", {})
    lines = []
    for name in (*REPLAY_STRATEGIES, "scratch"):
        if f"{name}_accuracy_pct_of_scratch" in comp:
            lines.append(f"{name} accuracy as % of scratch: {comp[f'{name}_accuracy_pct_of_scratch']:.1f}%")
        if f"{name}_accuracy_x_incremental" in comp and name != "scratch":
            lines.append(f"{name} accuracy as x incremental: {comp[f'{name}_accuracy_x_incremental']:.2f}x")
        if f"{name}_time_x_incremental" in comp:
            lines.append(f"{name} time as x incremental: {comp[f'{name}_time_x_incremental']:.2f}x")
    return lines
