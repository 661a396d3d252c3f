"""Continual-learning experiments on several ranks: scenarios, strategies, evaluation, reports.

``reverie compare`` (see :mod:`reverie.cli`) runs ``incremental``, ``scratch`` and
``rehearsal`` (optionally ``der`` / ``derpp``) on the same data-parallel setup and reports
accuracy and time side by side. The per-rank driver is :mod:`reverie.experiments.run`.
"""

from __future__ import annotations

from .config import STRATEGIES, ExperimentConfig, load_config_file, resolve_config
from .datasets import DATASETS, DatasetSplits, load_dataset
from .evaluation import backward_transfer, forgetting, mean_accuracy_after_each_task
from .scenarios import SCENARIOS, Task, class_incremental, instance_incremental, make_scenario

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
