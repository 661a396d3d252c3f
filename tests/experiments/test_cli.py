"""The ``reverie`` command line: --help everywhere, option errors, launcher choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reverie import cli
from reverie.experiments.config import ExperimentConfig
from reverie.experiments.launch import choose_launcher, launch_command
from reverie.experiments.process_group import inside_launch, launcher_rank_and_size


@pytest.mark.parametrize("argv", [["--help"], ["experiment", "--help"], ["compare", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: reverie" in out
    if argv[0] != "--help":
        for option in ("--dataset", "--scenario", "--tasks", "--ranks", "--out", "--config", "--buffer-size"):
            assert option in out


def test_every_option_has_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_help_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "compare", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--strategies" in proc.stdout


def test_bad_option_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_launcher_choice_and_command() -> None:
    cfg = ExperimentConfig(ranks=3, mpiexec="/opt/mpi/bin/mpiexec --bind-to none")
    assert choose_launcher(cfg, env={}) == "mpiexec"
    assert choose_launcher(ExperimentConfig(ranks=1), env={}) == "none"
    cmd = launch_command(cfg, "cfg.json", "mpiexec")
    assert cmd[:5] == ["/opt/mpi/bin/mpiexec", "--bind-to", "none", "-n", "3"]
    assert cmd[cmd.index("-m") + 1] == "reverie.experiments.run" and cmd[-1] == "cfg.json"
    assert launch_command(cfg, "c.json", "srun")[:3] == ["srun", "-n", "3"]


def test_launch_detection() -> None:
    assert launcher_rank_and_size({"PMI_RANK": "1", "PMI_SIZE": "4"}) == (1, 4)
    assert launcher_rank_and_size({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}) == (0, 2)
    assert launcher_rank_and_size({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}) == (3, 8)
    assert launcher_rank_and_size({}) is None
    assert not inside_launch({"PMI_RANK": "0", "PMI_SIZE": "1"})
    assert inside_launch({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})
    assert isinstance(inside_launch(dict(os.environ)), bool)
