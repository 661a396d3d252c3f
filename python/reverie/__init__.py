"""Reverie: distributed rehearsal buffers for data-parallel continual learning with PyTorch."""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.util import find_spec
from typing import Any

__all__ = [
    "DistributedRehearsalBuffer",
    "DrawHandle",
    "RehearsalBuffer",
    "RehearsalLoader",
    "Samples",
    "__version__",
]
__version__ = "0.1.0"

# Every name is imported on first use: importing reverie must not initialise MPI, and the
# command line (`reverie --help`, option errors) must not wait for torch to import.
_HOMES = {
    "RehearsalBuffer": "reverie.buffer",
    "Samples": "reverie.samples",
    "DistributedRehearsalBuffer": "reverie.distributed",
    "DrawHandle": "reverie.distributed",
    "RehearsalLoader": "reverie.loader",
    "concat_draw": "reverie.loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'reverie' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)


#: Why this build's MPI module did not load (None: it loaded, or the build has none).
MPI_LOAD_ERROR: str | None = None


def _take_mpi_core() -> None:
    """Serve ``reverie._core`` from ``reverie._core_mpi`` where the build has one and it loads.

    A build whose MPI came from pip's build environment (``pip install reverie`` where no MPI
    was found) ships both modules: ``_core_mpi`` needs ``libmpi.so.12`` at run time, ``_core``
    does not. Installing an MPI later (``pip install mpich mpi4py``) then enables the MPI
    engine without reinstalling Reverie. Loads only a shared library: MPI is not initialised.
    """
    global MPI_LOAD_ERROR
    if find_spec("reverie._core_mpi") is None:
        return
    try:
        sys.modules[f"{__name__}._core"] = import_module("reverie._core_mpi")
    except ImportError as error:
        MPI_LOAD_ERROR = str(error)


_take_mpi_core()
