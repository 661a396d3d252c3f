"""PEP 517 backend: scikit-build-core, plus an MPI to build against where the target has none.

``pip install 'reverie[mpi]'`` builds the wheel before it installs the ``mpich`` the extra
asks for, so the build cannot see that MPI. When neither the environment Reverie installs
into nor the build's PATH has an MPI (on Linux, ``REVERIE_MPI`` unset or ``AUTO``), the build
environment gets the ``mpich`` wheel, and CMake builds two modules: ``_core`` without the MPI
engine and ``_core_mpi`` with it. At import, Reverie uses ``_core_mpi`` where
``libmpi.so.12`` loads (the ``mpich`` wheel of the extra, or any MPICH-ABI library: Cray
MPICH, Intel MPI, MVAPICH) and ``_core`` elsewhere, so a plain ``pip install reverie`` still
imports, and ``pip install mpich mpi4py`` later enables the engine without a rebuild.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from scikit_build_core import build as _scikit_build
from scikit_build_core.build import (  # noqa: F401 (re-exported PEP 517 hooks)
    build_sdist,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ConfigSettings = Mapping[str, "str | list[str]"] | None
#: What the build environment gets when the target has no MPI (the MPICH ABI, libmpi.so.12).
BUILD_MPI = "mpich"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _build_mpi_prefix() -> Path | None:
    """Where pip put :data:`BUILD_MPI` in its isolated build environment, if it did."""
    try:
        dist = metadata.distribution(BUILD_MPI)
    except metadata.PackageNotFoundError:
        return None
    # <prefix>/lib/pythonX.Y/site-packages/
    prefix = Path(str(dist.locate_file(""))).resolve().parents[2]
    return None if _inside(prefix, Path(sys.prefix).resolve()) else prefix


def site_mpi() -> str | None:
    """The MPI of the environment Reverie installs into or of the user's PATH, if any.

    The order CMake uses (cmake/engines.cmake): ``MPI_C_COMPILER`` or ``MPI_HOME`` given by
    the user, ``mpicc`` beside the interpreter (a venv with the ``mpich`` wheel, activated or
    not), ``mpicc`` on PATH. An ``mpicc`` of pip's build environment does not count.
    """
    for variable in ("MPI_C_COMPILER", "MPI_HOME"):
        if os.environ.get(variable):
            return os.environ[variable]
    beside = Path(sys.executable).parent / "mpicc"
    if beside.exists():
        return str(beside)
    on_path = shutil.which("mpicc")
    build_mpi = _build_mpi_prefix()
    if on_path and not (build_mpi and _inside(Path(on_path).resolve(), build_mpi)):
        return on_path
    return None


def needs_build_mpi(config_settings: ConfigSettings = None) -> bool:
    """Whether this build brings its own MPI (``mpich`` in the build environment).

    Only where the engine is ``AUTO``: ``-Ccmake.define.REVERIE_MPI=...`` (what Spack
    passes) or else the ``REVERIE_MPI`` variable, as pyproject.toml reads them.
    """
    wanted = (config_settings or {}).get("cmake.define.REVERIE_MPI") or os.environ.get("REVERIE_MPI", "AUTO")
    return sys.platform.startswith("linux") and str(wanted).upper() == "AUTO" and site_mpi() is None


def _with_optional_mpi(config_settings: ConfigSettings) -> dict[str, str | list[str]]:
    settings = dict(config_settings or {})
    if needs_build_mpi(config_settings):
        settings["cmake.define.REVERIE_MPI_OPTIONAL"] = "ON"
    return settings


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    extra = [BUILD_MPI] if needs_build_mpi(config_settings) else []
    return [*_scikit_build.get_requires_for_build_wheel(config_settings), *extra]


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    extra = [BUILD_MPI] if needs_build_mpi(config_settings) else []
    return [*_scikit_build.get_requires_for_build_editable(config_settings), *extra]


def build_wheel(
    wheel_directory: str, config_settings: ConfigSettings = None, metadata_directory: str | None = None
) -> str:
    return _scikit_build.build_wheel(wheel_directory, _with_optional_mpi(config_settings), metadata_directory)


def build_editable(
    wheel_directory: str, config_settings: ConfigSettings = None, metadata_directory: str | None = None
) -> str:
    return _scikit_build.build_editable(
        wheel_directory, _with_optional_mpi(config_settings), metadata_directory
    )
