"""PNG plots of a results document (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(doc: dict[str, Any]) -> Any:
    """Mean top-1 accuracy over seen tasks after each task, one line per strategy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in doc["strategies"].items():
        ys = 100 * np.asarray(r["mean_top1_after_task"])
        ax.plot(np.arange(1, len(ys) + 1), ys, marker="o", label=name)
        ax.set_xticks(np.arange(1, len(ys) + 1))
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("mean top-1 accuracy on seen tasks (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    _legend_below(ax, len(doc["strategies"]))
    ax.set_title(_title(doc))
    return fig


def matrices_figure(doc: dict[str, Any]) -> Any:
    """Accuracy matrices (row: after task i, column: task j) as heatmaps, one per strategy.

    The panels share the y axis, so only the first one carries its label and ticks: a label
    on every panel ran into the tick labels of the panel to its left."""
    plt = _pyplot()
    names = list(doc["strategies"])
    fig, axes = plt.subplots(
        1, len(names), figsize=(3.2 * len(names) + 0.8, 3.4), squeeze=False, sharey=True, layout="constrained"
    )
    im = None
    for ax, name in zip(axes[0], names, strict=True):
        m = np.array(
            [
                [np.nan if v is None else 100 * v for v in row]
                for row in doc["strategies"][name]["accuracy_matrix_top1"]
            ],
            dtype=float,
        )
        im = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(
                    j,
                    i,
                    f"{v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v < 60 else "black",
                )
        ax.set_title(name)
        ax.set_xlabel("evaluated task")
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
    axes[0][0].set_ylabel("after training task")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="top-1 accuracy (%)", shrink=0.8)
    return fig


def times_figure(doc: dict[str, Any]) -> Any:
    """Training time per task, grouped bars per strategy."""
    plt = _pyplot()
    names = list(doc["strategies"])
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        times = np.asarray(doc["strategies"][name]["train_time_per_task_s"])
        ax.bar(
            np.arange(len(times)) + k * width - 0.4 + width / 2,
            times,
            width,
            label=f"{name} ({doc['strategies'][name]['train_time_s']:.1f} s)",
        )
    ax.set_xlabel("task")
    ax.set_ylabel("training time (s)")
    _legend_below(ax, len(names))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(_title(doc))
    return fig


def _legend_below(ax: Any, entries: int) -> None:
    """The legend under the axes: inside them it covered lines and bars."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=min(3, max(1, entries)), frameon=False)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def _title(doc: dict[str, Any]) -> str:
    c = doc.get("config", {})
    return (
        f"{c.get('dataset', '?')}, {c.get('scenario', '?')}-incremental, {c.get('tasks', '?')} tasks, "
        f"{doc.get('world_size', '?')} ranks"
    )


#: The figure builders, in the order of write_plots' files.
FIGURES = (accuracy_figure, matrices_figure, times_figure)


def write_plots(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write accuracy.png, accuracy_matrix.png and time.png into ``out``; returns their paths."""
    paths = [out / "accuracy.png", out / "accuracy_matrix.png", out / "time.png"]
    for figure, path in zip(FIGURES, paths, strict=True):
        _save(figure(doc), path)
    return paths
