"""Which transport engines this build of Reverie has, and which one a run gets.

Imports no torch, so the command line can check the engine before it starts any rank: a
missing engine is then one line, once, instead of a traceback from every rank.
"""

from __future__ import annotations

import reverie
from reverie import _core

ENGINES = ("auto", "mpi", "thallium")
#: What to do when the build lacks an engine (the build skips an engine whose library it
#: does not find, with a CMake warning that pip shows only with -v).
HOW_TO_GET = {
    "mpi": "install an MPI (pip install mpich mpi4py, or your site's MPI), then reinstall Reverie (docs/hpc.md)",
    "thallium": "install mochi-thallium (e.g. with Spack), then reinstall Reverie with REVERIE_THALLIUM=ON "
    "(docs/hpc.md)",
}


def missing(engine: str) -> str:
    """Why this build lacks ``engine`` and what to do about it, in one line."""
    if engine == "mpi" and reverie.MPI_LOAD_ERROR is not None:
        return (
            f"this build's MPI engine needs an MPI library at run time ({reverie.MPI_LOAD_ERROR}); "
            "pip install mpich mpi4py (no reinstall of Reverie needed), or load your site's MPI"
        )
    return f"this build of Reverie has no {engine} engine; {HOW_TO_GET[engine]}"


def built_engines() -> list[str]:
    """The engines this build has, the one ``engine="auto"`` prefers first."""
    return [name for name, built in (("thallium", _core.HAVE_THALLIUM), ("mpi", _core.HAVE_MPI)) if built]


def resolve_engine(engine: str, world_size: int) -> str:
    """The engine a buffer over ``world_size`` ranks uses for ``engine`` ("local" for one rank).

    Raises ValueError (one line) naming the engine and how to get it when this build lacks
    it, or when ``engine`` is not one of :data:`ENGINES`.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if world_size == 1:
        return "local"
    built = built_engines()
    if engine == "auto":
        if not built:
            raise ValueError(
                f"engine='auto' needs a transport engine on {world_size} ranks: {missing('mpi')}"
            )
        return built[0]
    if engine not in built:
        raise ValueError(f"engine={engine!r}: {missing(engine)}")
    return engine
