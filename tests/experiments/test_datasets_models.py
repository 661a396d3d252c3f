"""Datasets without downloads, batching, and model output shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reverie.experiments.batches import ShardBatches
from reverie.experiments.datasets import load_dataset, load_mnist1d
from reverie.experiments.models import build_model


def test_digits() -> None:
    pytest.importorskip("sklearn")
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.train_labels) + len(d.test_labels) == 1797
    assert set(np.unique(d.test_labels)) == set(range(10))
    again = load_dataset("digits")
    assert np.array_equal(d.train_labels, again.train_labels)


def test_mnist1d_generated_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    state = np.random.get_state()
    d = load_mnist1d(num_samples=200, seed=7)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG left as found
    assert d.input_shape == (1, 40) and len(d.train_labels) == 160 and len(d.test_labels) == 40
    assert (tmp_path / "mnist1d-200-7.npz").exists()
    cached = load_mnist1d(num_samples=200, seed=7)
    x1, _ = d.tensors("train")  # type: ignore[misc]
    x2, _ = cached.tensors("train")  # type: ignore[misc]
    assert torch.equal(x1, x2)


def test_synthetic_and_unknown() -> None:
    d = load_dataset("synthetic", synthetic_samples=100)
    assert d.input_shape == (3, 32, 32) and len(d.train_labels) == 80
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="data_root"):
        load_dataset("imagefolder")


def test_shard_batches_reshuffle_deterministically() -> None:
    d = load_dataset("synthetic", synthetic_samples=100)
    idx = np.arange(0, 80, 2)
    a, b = ShardBatches(d.train, idx, 16, seed=1), ShardBatches(d.train, idx, 16, seed=1)
    first = [y.clone() for _, y in a]
    assert len(a) == 2 and [len(y) for y in first] == [16, 16]  # whole batches: 8 rows wait
    assert all(torch.equal(p, q) for p, q in zip(first, [y for _, y in b], strict=True))
    second = [y for _, y in a]
    assert not all(torch.equal(p, q) for p, q in zip(first, second, strict=True))  # new order per pass
    every = ShardBatches(d.train, idx, 16, seed=1, whole_batches=False)
    assert [len(y) for _, y in every] == [16, 16, 8]
    _, yall = d.tensors("train")  # type: ignore[misc]
    assert sorted(torch.cat([y for _, y in every]).tolist()) == sorted(yall[idx].tolist())


@pytest.mark.parametrize("world", [2, 3, 4])
def test_rank_parts_of_each_step_make_the_one_rank_batch(world: int) -> None:
    # issue 18: the ranks' parts of step k together are the 1-rank batch k, so a run takes
    # the same steps on any rank count; a short last batch is cut to a multiple of world.
    d = load_dataset("synthetic", synthetic_samples=200)
    idx, b = np.arange(3, 160), 4 * world
    single = ShardBatches(d.train, idx, b, seed=5)
    parts = [ShardBatches(d.train, idx, b, seed=5, rank=r, world_size=world) for r in range(world)]
    for _ in range(2):  # every pass reshuffles the same way on every rank count
        one = [y for _, y in single]
        steps = list(zip(*[[y for _, y in p] for p in parts], strict=True))
        assert len(steps) == len(parts[0])
        if len(one) > len(steps):  # a last batch of fewer rows than ranks is dropped
            assert len(one) == len(steps) + 1 and len(one[-1]) < world
        for k, step in enumerate(steps):
            assert len({len(y) for y in step}) == 1, [len(y) for y in step]
            n = len(one[k]) - len(one[k]) % world
            assert torch.equal(torch.cat(step), one[k][:n]), k


def test_shard_batches_reject_uneven_rank_split() -> None:
    d = load_dataset("synthetic", synthetic_samples=100)
    with pytest.raises(ValueError, match="batch_size"):
        ShardBatches(d.train, np.arange(10), 15, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        ShardBatches(d.train, np.arange(10), 16, rank=2, world_size=2)


@pytest.mark.parametrize(
    ("name", "shape"), [("mlp", (1, 40)), ("cnn1d", (1, 40)), ("cnn", (1, 8, 8)), ("resnet", (3, 32, 32))]
)
def test_models(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, shape, 10)
    assert model(torch.randn(4, *shape)).shape == (4, 10)
