"""Datasets for the continual-learning experiments, none of which needs a download.

Every loader returns a :class:`DatasetSplits`: a train and a test ``torch.utils.data.Dataset``
with their integer labels as numpy arrays (so scenarios can split by class without touching
the samples), the shape of one input and the number of classes.

* ``digits``: scikit-learn's 8x8 handwritten digits (1797 samples, 10 classes), inputs
  ``[1, 8, 8]`` float32 in [0, 1]; a stratified 75/25 train/test split with a fixed seed.
* ``mnist1d``: MNIST-1D generated locally by the ``mnist1d`` package's own functions
  (``mnist1d.data.make_dataset``) with a fixed seed, inputs ``[1, 40]`` float32, 80/20 split;
  cached as ``.npz`` under ``~/.cache/reverie`` (or ``$REVERIE_CACHE``).
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (or ``test``) read with
  torchvision (imported lazily, optional), resized to ``[3, image_size, image_size]``.
* ``synthetic``: class-conditioned Gaussian images ``[3, 32, 32]``; only for throughput
  benchmarks (its accuracies mean nothing).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

DATASETS = ("mnist1d", "digits", "imagefolder", "synthetic")


@dataclass(frozen=True)
class DatasetSplits:
    """Train and test data of one dataset.

    Attributes:
        name: dataset name, one of :data:`DATASETS`.
        train: map-style dataset yielding ``(x, y)`` with ``x`` of shape ``input_shape``.
        train_labels: int64 ``[n_train]``, the label of every train sample in order.
        test: map-style dataset like ``train``.
        test_labels: int64 ``[n_test]``.
        input_shape: shape of one input, e.g. ``(1, 40)``.
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
    """

    name: str
    train: Dataset[Any]
    train_labels: np.ndarray
    test: Dataset[Any]
    test_labels: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x [n, *input_shape], y [n])`` when ``split`` ("train"/"test") is held in
        memory as tensors, else None (lazy datasets such as image folders)."""
        ds = self.train if split == "train" else self.test
        if isinstance(ds, TensorDataset):
            x, y = ds.tensors
            return x, y
        return None


def cache_dir() -> Path:
    """Folder for generated data: ``$REVERIE_CACHE`` or ``~/.cache/reverie``."""
    return Path(os.environ.get("REVERIE_CACHE", Path.home() / ".cache" / "reverie"))


def _tensor_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
) -> DatasetSplits:
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.int64))
    xs = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))
    ys = torch.from_numpy(np.ascontiguousarray(y_test, dtype=np.int64))
    return DatasetSplits(
        name,
        TensorDataset(xt, yt),
        yt.numpy(),
        TensorDataset(xs, ys),
        ys.numpy(),
        tuple(xt.shape[1:]),
        num_classes,
    )


def load_digits(split_seed: int = 0) -> DatasetSplits:
    """scikit-learn digits as ``[1, 8, 8]`` float32 in [0, 1]; stratified 75/25 split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=split_seed)
    return _tensor_splits("digits", x_tr, y_tr, x_te, y_te, 10)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_mnist1d(num_samples: int = 40000, seed: int = 42, use_cache: bool = True) -> DatasetSplits:
    """MNIST-1D generated with ``mnist1d.data.make_dataset`` (never downloaded).

    Args:
        num_samples: total samples generated (80% train, 20% test); 5000 is the package's
            published size; the default 40000 gives enough samples for 1-2 epochs per task.
        seed: generator seed (the package default is 42).
        use_cache: read/write ``<cache_dir>/mnist1d-<num_samples>-<seed>.npz``.
    Returns:
        splits with inputs ``[1, 40]`` float32 (standardized by the generator).
    """
    path = cache_dir() / f"mnist1d-{num_samples}-{seed}.npz"
    if use_cache and path.exists():
        with np.load(path) as z:
            return _tensor_splits("mnist1d", z["x"], z["y"], z["x_test"], z["y_test"], 10)
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("dataset 'mnist1d' needs the 'mnist1d' package: pip install mnist1d") from e
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave it as found
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    x = data["x"].astype(np.float32)[:, None, :]
    x_test = data["x_test"].astype(np.float32)[:, None, :]
    y = data["y"].astype(np.int64)
    y_test = data["y_test"].astype(np.int64)
    if use_cache:
        _atomic_savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return _tensor_splits("mnist1d", x, y, x_test, y_test, 10)


def load_synthetic(
    num_samples: int = 8192, num_classes: int = 10, seed: int = 0, shape: tuple[int, ...] = (3, 32, 32)
) -> DatasetSplits:
    """Class-conditioned Gaussian images (class mean + unit noise), 80/20 split.

    Only meant for throughput benchmarks of the training loop and the buffer.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn((num_classes, *shape), generator=g) * 0.5
    y = torch.arange(num_samples) % num_classes
    y = y[torch.randperm(num_samples, generator=g)]
    x = means[y] + torch.randn((num_samples, *shape), generator=g)
    n_train = int(num_samples * 0.8)
    return _tensor_splits(
        "synthetic",
        x[:n_train].numpy(),
        y[:n_train].numpy(),
        x[n_train:].numpy(),
        y[n_train:].numpy(),
        num_classes,
    )


def load_imagefolder(root: str | os.PathLike[str], image_size: int = 32) -> DatasetSplits:
    """Image folders ``ROOT/train`` and ``ROOT/val`` (or ``ROOT/test``), one subfolder per class.

    Images are read lazily by torchvision's ``ImageFolder`` (optional dependency, imported
    here only), resized and center-cropped to ``[3, image_size, image_size]`` float32 in [0, 1].
    """
    try:
        from torchvision import datasets, transforms
    except ImportError as e:
        raise RuntimeError("dataset 'imagefolder' needs torchvision: pip install torchvision") from e
    base = Path(root)
    train_dir = base / "train"
    test_dir = next((base / d for d in ("val", "test") if (base / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise ValueError(f"data_root: expected {base}/train and {base}/val (or test) folders")
    tf = transforms.Compose(
        [transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()]
    )
    train = datasets.ImageFolder(str(train_dir), transform=tf)
    test = datasets.ImageFolder(str(test_dir), transform=tf)
    if train.classes != test.classes:
        raise ValueError(f"data_root: class folders differ between {train_dir} and {test_dir}")
    return DatasetSplits(
        "imagefolder",
        train,
        np.asarray(train.targets, dtype=np.int64),
        test,
        np.asarray(test.targets, dtype=np.int64),
        (3, image_size, image_size),
        len(train.classes),
    )


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    mnist1d_samples: int = 40000,
    synthetic_samples: int = 8192,
    image_size: int = 32,
    use_cache: bool = True,
) -> DatasetSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`); raises ``ValueError`` naming the bad argument."""
    if name == "digits":
        return load_digits()
    if name == "mnist1d":
        return load_mnist1d(mnist1d_samples, use_cache=use_cache)
    if name == "synthetic":
        return load_synthetic(synthetic_samples)
    if name == "imagefolder":
        if not data_root:
            raise ValueError("data_root: required for dataset 'imagefolder'")
        return load_imagefolder(data_root, image_size)
    raise ValueError(f"dataset: unknown {name!r}; choose one of {', '.join(DATASETS)}")
