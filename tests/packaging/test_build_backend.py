"""backend/reverie_backend.py: a build brings its own MPI exactly when the target has none, and
`import reverie` serves `_core` from `_core_mpi` where that loads and explains where it does not.

The whole path (an isolated `pip install` in a fresh venv without MPI, then `pip install
mpich mpi4py`) takes minutes of compiling; docs/hpc.md gives its commands and result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "backend"))
import reverie_backend  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the build MPI is Linux-only")


def _no_mpi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A target interpreter with no mpicc beside it and a PATH without one."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for variable in ("MPI_C_COMPILER", "MPI_HOME", "REVERIE_MPI"):
        monkeypatch.delenv(variable, raising=False)
    return bin_dir


def _mpicc(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    compiler = directory / "mpicc"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    return compiler


def test_no_mpi_anywhere_brings_mpich(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_mpi(monkeypatch, tmp_path)
    monkeypatch.chdir(ROOT)
    assert reverie_backend.site_mpi() is None
    assert reverie_backend.needs_build_mpi()
    assert "mpich" in reverie_backend.get_requires_for_build_wheel()
    settings = reverie_backend._with_optional_mpi({"cmake.define.X": "1"})
    assert settings == {"cmake.define.X": "1", "cmake.define.REVERIE_MPI_OPTIONAL": "ON"}


@pytest.mark.parametrize("where", ["beside-python", "path", "mpi-home", "mpi-c-compiler"])
def test_a_site_mpi_is_used_as_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str) -> None:
    bin_dir = _no_mpi(monkeypatch, tmp_path)
    if where == "beside-python":
        _mpicc(bin_dir)
    elif where == "path":
        monkeypatch.setenv("PATH", str(_mpicc(tmp_path / "site" / "bin").parent))
    elif where == "mpi-home":
        monkeypatch.setenv("MPI_HOME", "/opt/cray/pe/mpich")
    else:
        monkeypatch.setenv("MPI_C_COMPILER", "/opt/intel/mpi/bin/mpicc")
    monkeypatch.chdir(ROOT)
    assert reverie_backend.site_mpi() is not None
    assert not reverie_backend.needs_build_mpi()
    assert "mpich" not in reverie_backend.get_requires_for_build_wheel()
    assert "cmake.define.REVERIE_MPI_OPTIONAL" not in reverie_backend._with_optional_mpi(None)


@pytest.mark.parametrize("value", ["OFF", "ON", "off"])
def test_reverie_mpi_other_than_auto_brings_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    _no_mpi(monkeypatch, tmp_path)
    monkeypatch.setenv("REVERIE_MPI", value)
    assert not reverie_backend.needs_build_mpi()
    monkeypatch.delenv("REVERIE_MPI")
    assert not reverie_backend.needs_build_mpi({"cmake.define.REVERIE_MPI": value})
    assert reverie_backend.needs_build_mpi({"cmake.define.REVERIE_MPI": "AUTO"})


def test_the_build_environments_own_mpicc_does_not_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In build_wheel, pip's build environment has the mpich it was given on PATH: that MPI is
    the optional one, not a site MPI (else `_core` would need libmpi and fail to import)."""
    _no_mpi(monkeypatch, tmp_path)
    build_env = tmp_path / "pip-build-env" / "normal"
    monkeypatch.setenv("PATH", str(_mpicc(build_env / "bin").parent))
    monkeypatch.setattr(reverie_backend, "_build_mpi_prefix", lambda: build_env.resolve())
    assert reverie_backend.site_mpi() is None
    assert reverie_backend.needs_build_mpi()


def _package_copy(tmp_path: Path, core_mpi_source: str) -> Path:
    """The installed reverie package copied under tmp_path, with a stand-in `_core_mpi`."""
    import reverie

    copy = tmp_path / "site" / "reverie"
    shutil.copytree(Path(reverie.__file__).parent, copy, ignore=shutil.ignore_patterns("_core_mpi*"))
    (copy / "_core_mpi.py").write_text(core_mpi_source)
    return copy.parent


def _run(site: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_core_mpi_that_loads_serves_core(tmp_path: Path) -> None:
    site = _package_copy(tmp_path, "HAVE_MPI = 'from _core_mpi'\n")
    out = _run(site, "import reverie; from reverie import _core; print(reverie.__file__, _core.HAVE_MPI)")
    assert out == f"{site / 'reverie' / '__init__.py'} from _core_mpi"


def test_core_mpi_without_libmpi_leaves_core_and_one_line(tmp_path: Path) -> None:
    error = "libmpi.so.12: cannot open shared object file: No such file or directory"
    site = _package_copy(tmp_path, f"raise ImportError({error!r})\n")
    out = _run(
        site,
        "import reverie\n"
        "from reverie import _core, engines\n"
        "assert _core.__name__ == 'reverie._core', _core.__name__\n"
        "print(engines.missing('mpi'))\n",
    )
    assert out.count("\n") == 0
    assert out.startswith("this build's MPI engine needs an MPI library at run time")
    assert error in out and "pip install mpich mpi4py (no reinstall of Reverie needed)" in out
