"""Continual-learning experiments on several ranks: scenarios, strategies, evaluation, reports.

``reverie compare`` (see :mod:`reverie.cli`) runs ``incremental``, ``scratch`` and
``rehearsal`` (optionally ``der`` / ``derpp``) on the same data-parallel setup and reports
accuracy and time side by side. The per-rank driver is :mod:`reverie.experiments.run`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Imported on first use: the command line reads the options (config, names) without torch.
_HOMES = {
    "STRATEGIES": "config",
    "ExperimentConfig": "config",
    "load_config_file": "config",
    "resolve_config": "config",
    "DATASETS": "datasets",
    "DatasetSplits": "datasets",
    "load_dataset": "datasets",
    "backward_transfer": "evaluation",
    "forgetting": "evaluation",
    "mean_accuracy_after_each_task": "evaluation",
    "SCENARIOS": "scenarios",
    "Task": "scenarios",
    "class_incremental": "scenarios",
    "instance_incremental": "scenarios",
    "make_scenario": "scenarios",
}

__all__ = [
    "DATASETS",
    "SCENARIOS",
    "STRATEGIES",
    "DatasetSplits",
    "ExperimentConfig",
    "Task",
    "backward_transfer",
    "class_incremental",
    "forgetting",
    "instance_incremental",
    "load_config_file",
    "load_dataset",
    "make_scenario",
    "mean_accuracy_after_each_task",
    "resolve_config",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'reverie.experiments' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
