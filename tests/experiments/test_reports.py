"""results.json / results.csv / plots from hand-made results."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from reverie.experiments.reports import (
    StrategyResult,
    comparison,
    comparison_lines,
    results_document,
    summary_table,
    write_csv,
)


def result(name: str, diag: float, off: float, seconds: float) -> StrategyResult:
    r = StrategyResult.empty(name, 2)
    r.top1[:] = [[diag, math.nan], [off, diag]]
    r.top5[:] = [[1.0, math.nan], [1.0, 1.0]]
    r.train_time_per_task = [seconds, seconds]
    r.eval_time_per_task = [0.1, 0.1]
    return r


def results() -> dict[str, StrategyResult]:
    return {
        "incremental": result("incremental", 1.0, 0.0, 1.0),
        "scratch": result("scratch", 1.0, 1.0, 3.0),
        "rehearsal": result("rehearsal", 1.0, 0.8, 1.2),
    }


def test_comparison_ratios() -> None:
    comp = comparison(results())
    assert comp["rehearsal_accuracy_pct_of_scratch"] == pytest.approx(90.0)
    assert comp["rehearsal_accuracy_x_incremental"] == pytest.approx(1.8)
    assert comp["rehearsal_time_x_incremental"] == pytest.approx(1.2)
    assert comp["scratch_time_x_incremental"] == pytest.approx(3.0)


def test_document_csv_table(tmp_path: Path) -> None:
    res = results()
    doc = results_document(res, {"dataset": "digits"}, {"world_size": 2})
    text = json.dumps(doc)  # JSON-able, NaN turned into null
    assert "NaN" not in text
    back = json.loads(text)
    assert back["strategies"]["rehearsal"]["accuracy_matrix_top1"] == [[1.0, None], [0.8, 1.0]]
    assert back["strategies"]["rehearsal"]["final_mean_top1"] == pytest.approx(0.9)
    assert back["strategies"]["incremental"]["forgetting"] == pytest.approx(1.0)
    write_csv(res, tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 6 and rows[-1]["strategy"] == "rehearsal" and rows[-1]["top1_task0"] == "0.800000"
    assert rows[0]["top1_task1"] == ""
    table = summary_table(back)
    assert "rehearsal" in table and "90.0%" in table
    assert "rehearsal accuracy as % of scratch: 90.0%" in comparison_lines(back)
    assert "rehearsal time as x incremental: 1.20x" in comparison_lines(back)


def test_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from reverie.experiments.plots import write_plots

    doc = json.loads(json.dumps(results_document(results(), {"dataset": "digits"}, {"world_size": 2})))
    for p in write_plots(doc, tmp_path):
        assert p.exists() and p.stat().st_size > 1000
    assert np.isfinite(comparison(results())["rehearsal_accuracy_x_incremental"])
