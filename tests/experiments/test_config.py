"""Config files (YAML, TOML, JSON), precedence, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from reverie.experiments.config import ExperimentConfig, load_config_file, resolve_config


def test_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    p = tmp_path / "c.yaml"
    p.write_text(
        "dataset: digits\nbatch-size: 16\nstrategies: [incremental, rehearsal]\nlr: 1\nprogress: no\n"
    )
    opts = load_config_file(p)
    assert opts == {
        "dataset": "digits",
        "batch_size": 16,
        "strategies": ["incremental", "rehearsal"],
        "lr": 1.0,
        "progress": False,
    }


def test_toml_with_section(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[experiment]\ndataset = "digits"\nepochs = 3\nstrategies = "incremental,der"\n')
    assert load_config_file(p) == {"dataset": "digits", "epochs": 3, "strategies": ["incremental", "der"]}


def test_json(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text('{"tasks": 2, "scenario": "instance"}')
    assert load_config_file(p) == {"tasks": 2, "scenario": "instance"}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("epochz = 3\n")
    with pytest.raises(ValueError, match="epochz"):
        load_config_file(p)


def test_unparsable_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("= = =\n")
    with pytest.raises(ValueError, match=r"bad\.toml"):
        load_config_file(p)


def test_precedence_defaults_base_file_cli(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("epochs = 3\nlr = 0.5\n")
    cfg = resolve_config({"lr": 0.25}, str(p), base={"strategies": ["rehearsal"], "epochs": 9})
    assert cfg.epochs == 3 and cfg.lr == 0.25 and cfg.strategies == ["rehearsal"]
    assert cfg.dataset == ExperimentConfig().dataset


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"dataset": "cifar"}, "dataset"),
        ({"strategies": ["ewc"]}, "strategies"),
        ({"lr": -1.0}, "lr"),
        ({"strategies": []}, "strategies"),
        ({"replay": "future"}, "replay"),
        ({"batch_size": 15, "ranks": 2}, "batch_size"),  # job-wide sizes split evenly over ranks
        ({"buffer_size": 201, "ranks": 2}, "buffer_size"),
        (
            {"representatives": 10, "batch_size": 30, "candidates": 30, "buffer_size": 999, "ranks": 3},
            "representatives",
        ),
    ],
)
def test_validation_names_option(options: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        resolve_config(options)


def test_replay_strategies_all_take_deterministic_and_the_replay_modes() -> None:
    strategies = ["incremental", "scratch", "rehearsal", "der", "derpp"]
    options = {"deterministic": True, "replay": "past", "replay_draws": "passes", "strategies": strategies}
    cfg = resolve_config(options)
    assert (cfg.deterministic, cfg.replay, cfg.replay_draws, cfg.strategies) == (
        True,
        "past",
        "passes",
        strategies,
    )


def test_der_alpha_defaults() -> None:
    cfg = ExperimentConfig()
    assert cfg.der_alpha("der") == 0.3 and cfg.der_alpha("derpp") == 0.1
    assert ExperimentConfig(alpha=0.7).der_alpha("derpp") == 0.7


def test_dataset_preset_sits_beneath_explicit_options() -> None:
    digits = resolve_config({"dataset": "digits"})
    assert (digits.batch_size, digits.representatives, digits.buffer_size, digits.epochs) == (16, 8, 200, 12)
    assert resolve_config({"dataset": "digits", "epochs": 2}).epochs == 2
    assert resolve_config({}).batch_size == ExperimentConfig().batch_size  # mnist1d: plain defaults
    mnist = resolve_config({"dataset": "mnist"})
    assert (mnist.batch_size, mnist.representatives, mnist.buffer_size, mnist.epochs, mnist.lr) == (
        32,
        16,
        500,
        3,
        0.02,
    )
