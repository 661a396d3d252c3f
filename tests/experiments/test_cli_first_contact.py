"""What a user meets first: help text, one-line errors, missing extras, --out, progress output."""

from __future__ import annotations

import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reverie import cli
from reverie.experiments import preflight
from reverie.experiments.progress import BARS_ENV, bars_wanted, progress_factory, progress_lines


def help_text(command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "reverie.cli", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_and_option_errors_do_not_import_torch() -> None:
    script = (
        "import sys\n"
        "from reverie import cli\n"
        "for argv in (['--help'], ['compare', '--help'], ['experiment', '--tasks', 'x'], ['compare', '--tasks', '0']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["experiment", "compare", "clean-shm"])
def test_help_has_no_markup_and_each_default_once(command: str) -> None:
    text = help_text(command)
    assert "``" not in text and ":class:" not in text
    assert "(default: None)" not in text
    for option_help in re.split(r"\n  (?=-)", text):
        assert option_help.count("(default:") <= 1, option_help


def test_help_shows_the_dataset_presets() -> None:
    flat = " ".join(help_text("compare").split())
    assert (
        "--batch-size BATCH_SIZE new samples per step, over all ranks (b; each rank takes b/ranks) "
        "(default: 32; digits: 16; mnist: 32)" in flat
    )
    assert "(default: 1000; digits: 200; mnist: 500)" in flat


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["compare", "--tasks", "x"], "--tasks"),
        (["compare", "--tasks", "0"], "tasks"),
        (["compare", "--no-such-option"], "--no-such-option"),
        (["compare", "--strategies", "incremental,nope"], "strategies"),
        ([], "COMMAND"),
    ],
)
def test_argument_and_config_errors_are_one_line(argv: list[str], names: str, capsys: Any) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reverie: error: ") and names in err, err


def hide_module(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == hidden else real(name, *a)
    )


@pytest.mark.parametrize(
    ("dataset", "module"), [("mnist1d", "mnist1d"), ("digits", "sklearn"), ("digits", "matplotlib")]
)
def test_missing_extra_is_one_line_before_any_rank(
    dataset: str, module: str, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    hide_module(monkeypatch, module)
    monkeypatch.setattr("reverie.experiments.launch.launch", lambda *a: pytest.fail("a rank was started"))
    assert cli.main(["compare", "--dataset", dataset, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and module in err and "pip install 'reverie[experiments]'" in err, err
    assert not (tmp_path / "out").exists()


def test_missing_yaml_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("tasks: 3\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    assert cli.main(["compare", "--config", str(tmp_path / "my.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PyYAML" in err and "reverie[experiments]" in err, err


@pytest.mark.parametrize("where", ["existing file", "below a file", "read-only"])
def test_unusable_out_is_one_line_before_training(
    where: str, capsys: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "file").write_text("x")
    out = {"existing file": tmp_path / "file", "below a file": tmp_path / "file" / "run", "read-only": None}[
        where
    ]
    if out is None:
        out = Path("/proc/reverie-out") if Path("/proc/self").exists() else pytest.skip("no /proc")
    monkeypatch.setattr("reverie.experiments.launch.launch", lambda *a: pytest.fail("a rank was started"))
    assert cli.main(["compare", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reverie: error: --out: ") and str(out) in err, err


def test_check_out_dir_creates_a_writable_folder(tmp_path: Path) -> None:
    assert preflight.check_out_dir(tmp_path / "a" / "b").is_dir()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_unless_the_launcher_says() -> None:
    assert bars_wanted(FakeTerminal(), env={}) is True
    assert bars_wanted(io.StringIO(), env={}) is False
    assert bars_wanted(io.StringIO(), env={BARS_ENV: "1"}) is True  # a rank whose launcher has a terminal
    assert bars_wanted(FakeTerminal(), env={BARS_ENV: "0"}) is False


def test_progress_lines_are_periodic_and_plain() -> None:
    ticks = iter([0.0, 1.0, 11.0, 12.0, 13.0, 30.0])
    stream = io.StringIO()
    items = list(
        progress_lines(range(5), "rehearsal task 0", 5, stream, interval=10.0, clock=lambda: next(ticks))
    )
    assert items == [0, 1, 2, 3, 4]
    assert stream.getvalue() == "rehearsal task 0: 2/5 (11 s)\nrehearsal task 0: 5/5 (30 s)\n"


def test_progress_in_a_log_has_no_bar(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv(BARS_ENV, "0")
    progress = progress_factory(True)
    assert list(progress(range(3), desc="scratch task 1", total=3)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("scratch task 1: 3/3 (0 s)\n"), repr(err)


def test_the_names_help_shows_are_the_ones_the_modules_accept() -> None:
    from reverie.experiments import datasets, models, names

    assert names.DATASETS == datasets.DATASETS, "add the dataset to reverie/experiments/names.py too"
    assert names.MODELS == models.MODELS
