"""The plots at their default size: no label runs into another label or into another panel,
and no legend covers the data."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from reverie.experiments.plots import FIGURES

STRATEGIES = ("incremental", "scratch", "rehearsal", "der", "derpp")


def results_doc(tasks: int) -> dict[str, Any]:
    """A results document as run.py writes it, with accuracies near 100% (the top of the axes)."""
    rng = np.random.default_rng(0)

    def strategy() -> dict[str, Any]:
        matrix = [
            [float(rng.uniform(0.9, 1.0)) if j <= i else None for j in range(tasks)] for i in range(tasks)
        ]
        return {
            "mean_top1_after_task": [float(np.mean([v for v in row if v is not None])) for row in matrix],
            "accuracy_matrix_top1": matrix,
            "train_time_per_task_s": [float(t) for t in rng.uniform(9.0, 10.0, tasks)],
            "train_time_s": 47.5,
        }

    config = {"dataset": "mnist1d", "scenario": "class", "tasks": tasks}
    return {"config": config, "world_size": 2, "strategies": {name: strategy() for name in STRATEGIES}}


def texts(fig: Any) -> list[tuple[Any, Any, str]]:
    """(owning axes or None, window extent, text) of every visible, non-empty text of ``fig``
    (axis labels and tick labels belong to their axes, though their ``.axes`` may be None)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    owner = {id(t): ax for ax in fig.axes for t in ax.findobj(Text)}
    return [
        (owner.get(id(t)), t.get_window_extent(renderer).shrunk(0.98, 0.98), t.get_text())
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip()
    ]


@pytest.fixture(autouse=True)
def close_figures() -> Any:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(
    params=[(make, tasks) for make in FIGURES for tasks in (2, 5, 10)],
    ids=lambda case: f"{case[0].__name__}-{case[1]}",
)
def fig(request: pytest.FixtureRequest) -> Any:
    """Each figure, drawn at its default size, for 2, 5 and 10 tasks."""
    make, tasks = request.param
    figure = make(results_doc(tasks))
    figure.canvas.draw()
    return figure


def test_no_text_overlaps_another(fig: Any) -> None:
    clashes = [(a, b) for (_, ba, a), (_, bb, b) in combinations(texts(fig), 2) if ba.overlaps(bb)]
    assert not clashes, f"overlapping labels: {clashes[:5]}"


def test_no_text_enters_another_panel(fig: Any) -> None:
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    intruders = [
        (text, panels.index(other))
        for owner, box, text in texts(fig)
        for other in panels
        if owner is not None and other is not owner and box.overlaps(other.get_window_extent(renderer))
    ]
    assert not intruders, f"labels inside another panel: {intruders[:5]}"


def test_legend_covers_no_data(fig: Any) -> None:
    renderer = fig.canvas.get_renderer()
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
    for ax, legend in legends:
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
