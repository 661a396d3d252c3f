"""Engine choice: auto picks only engines the build has; a missing one is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reverie import _core, engines
from reverie.engines import built_engines, resolve_engine


def with_build(monkeypatch: pytest.MonkeyPatch, mpi: bool, thallium: bool) -> None:
    monkeypatch.setattr(_core, "HAVE_MPI", mpi, raising=False)
    monkeypatch.setattr(_core, "HAVE_THALLIUM", thallium, raising=False)


@pytest.mark.parametrize(
    ("mpi", "thallium", "auto"), [(True, True, "thallium"), (True, False, "mpi"), (False, True, "thallium")]
)
def test_auto_picks_a_built_engine(
    monkeypatch: pytest.MonkeyPatch, mpi: bool, thallium: bool, auto: str
) -> None:
    with_build(monkeypatch, mpi, thallium)
    assert resolve_engine("auto", 4) == auto
    assert auto in built_engines()


def test_one_rank_needs_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with_build(monkeypatch, False, False)
    assert resolve_engine("auto", 1) == "local" and resolve_engine("mpi", 1) == "local"


@pytest.mark.parametrize(
    ("engine", "hint"), [("auto", "install an MPI"), ("mpi", "install an MPI"), ("thallium", "mochi")]
)
def test_a_missing_engine_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, engine: str, hint: str) -> None:
    with_build(monkeypatch, False, False)
    with pytest.raises(ValueError, match="reinstall Reverie") as e:
        resolve_engine(engine, 2)
    assert f"engine={engine!r}" in str(e.value) and hint in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_engine_is_named() -> None:
    with pytest.raises(ValueError, match=r"engine: expected one of auto, mpi, thallium, got 'tcp'"):
        resolve_engine("tcp", 2)


def test_the_cli_refuses_a_missing_engine_before_any_rank(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path
) -> None:
    from reverie import cli

    with_build(monkeypatch, False, False)
    monkeypatch.setattr("reverie.experiments.launch.launch", lambda *a: pytest.fail("a rank was started"))
    assert cli.main(["compare", "--dataset", "digits", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reinstall Reverie" in err, err
    assert engines.HOW_TO_GET["mpi"] in err


@pytest.mark.parametrize(("value", "warned"), [("fast", True), ("0", True), ("2.5", False)])
def test_hot_window_scale_is_checked_when_the_module_loads(value: str, warned: bool) -> None:
    env = {**os.environ, "REVERIE_HOT_WINDOW_SCALE": value}
    proc = subprocess.run(
        [sys.executable, "-c", "import reverie._core"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    expected = f"reverie: REVERIE_HOT_WINDOW_SCALE={value} ignored: expected a number > 0 and <= 1000\n"
    assert proc.stderr == (expected if warned else ""), proc.stderr
