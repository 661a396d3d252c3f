"""Checks that run before any rank starts, so that a missing package or an unusable output
folder is one line at once rather than a traceback per rank, or an error after training.

Imports no torch (the checks answer in a fraction of a second).
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

EXTRA_HINT = "pip install 'reverie[experiments]'"


def missing_modules(needs: dict[str, str]) -> list[str]:
    """The entries ``"module (what needs it)"`` of ``needs`` (module -> what) that are not installed."""
    return [f"{module} ({why})" for module, why in needs.items() if importlib.util.find_spec(module) is None]


def experiment_needs(cfg: Any, progress_bars: bool) -> dict[str, str]:
    """Optional modules an experiment run of ``cfg`` imports, with the option that needs each."""
    needs = {"matplotlib": "the plots"}
    if cfg.dataset == "mnist1d":
        needs["mnist1d"] = "--dataset mnist1d"
    if cfg.dataset == "digits":
        needs["sklearn"] = "--dataset digits"
    if cfg.progress and progress_bars:
        needs["tqdm"] = "progress bars; --progress false runs without"
    return needs


def check_extras(cfg: Any) -> None:
    """Raises ValueError (one line naming the extra) when a module ``cfg`` needs is missing."""
    from .progress import bars_wanted

    missing = missing_modules(experiment_needs(cfg, bars_wanted()))
    if missing:
        raise ValueError(
            f"missing optional dependencies: {', '.join(missing)}; install them with {EXTRA_HINT}"
        )


#: Strategies that train without a rehearsal buffer, so without a transport engine.
NO_BUFFER_STRATEGIES = ("incremental", "scratch")


def check_engine(cfg: Any) -> None:
    """Raises ValueError (one line, once, before any rank starts) when the strategies of a
    multi-rank ``cfg`` need a transport engine this build of Reverie lacks."""
    if cfg.ranks > 1 and set(cfg.strategies) - set(NO_BUFFER_STRATEGIES):
        from reverie.engines import resolve_engine

        resolve_engine(cfg.engine, cfg.ranks)


def yaml_module() -> Any:
    """The yaml module, or ValueError naming the extra (config files in YAML need PyYAML)."""
    try:
        import yaml
    except ImportError:
        raise ValueError(f"config: a YAML config file needs PyYAML; install it with {EXTRA_HINT}") from None
    return yaml


def check_out_dir(out: Path) -> Path:
    """Creates ``out`` and checks a file can be written in it; returns it.

    Raises ValueError naming ``--out`` when it is an existing file or cannot be written
    (a read-only place), so the error comes before the ranks start rather than when rank 0
    writes its results after training."""
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out: {out} exists and is not a folder; expected a folder to write the results into"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--out: cannot write into {out}: {e.strerror or e}") from None
    return out
