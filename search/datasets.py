"""Datasets as in-memory arrays with a fixed, seeded train/validation/test split.

Images stay raw (as the source provides them: uint8 for the image datasets, so 60k 28x28 images
cost 47 MB, not 188 MB of float32); training converts per batch. The model normalises inputs
itself with the per-channel mean/std computed here on the training split, so exported models take
raw input. Datasets with an official test set keep it as the test split; the validation split is
a seeded, stratified VAL_FRACTION of the training set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

SPLIT_SEED = 0  # fixed: every study and every export sees the same split
VAL_FRACTION = 0.1
FOLDER_PREFIX = "folder:"
STATS_CHUNK = 4096  # images per chunk when computing mean/std: no float copy of the whole set


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, C, H, W) raw pixel scale, uint8 or float32
    y_train: np.ndarray  # (N,) int64
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    augment: bool = False  # random crop (4 padding) + horizontal flip while training
    classes: list[str] = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[2])

    @cached_property
    def _stats(self) -> tuple[list[float], list[float]]:
        total = np.zeros(self.in_channels)
        squares = np.zeros(self.in_channels)
        for i in range(0, len(self.x_train), STATS_CHUNK):
            chunk = self.x_train[i : i + STATS_CHUNK].astype(np.float64)
            total += chunk.sum(axis=(0, 2, 3))
            squares += (chunk**2).sum(axis=(0, 2, 3))
        n = len(self.x_train) * self.image_size * int(self.x_train.shape[3])
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
        return [float(m) for m in mean], [float(max(s, 1e-6)) for s in std]

    @property
    def mean(self) -> list[float]:
        return self._stats[0]

    @property
    def std(self) -> list[float]:
        return self._stats[1]

    def meta(self) -> dict:
        """What a trained model needs to be rebuilt and fed raw images later."""
        return {
            "dataset": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
        }


def _stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> tuple:
    """Index arrays (rest, *parts): part i takes `fractions[i]` of every class."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for i, f in enumerate(fractions, start=1):
            n = round(len(idx) * f)
            parts[i].append(idx[start : start + n])
            start += n
        parts[0].append(idx[start:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def _without_test_set(name: str, x: np.ndarray, y: np.ndarray, n_classes: int, **kw) -> Dataset:
    train, val, test = _stratified_split(y, (0.15, 0.2), SPLIT_SEED)
    return Dataset(name, x[train], y[train], x[val], y[val], x[test], y[test], n_classes, **kw)


def with_test_set(
    name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    classes: int, augment: bool = False,
) -> Dataset:
    """The official test set kept; validation split off the training set."""
    train, val = _stratified_split(y, (VAL_FRACTION,), SPLIT_SEED)
    return Dataset(name, x[train], y[train], x[val], y[val], x_test, y_test, classes, augment)


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16): offline."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    return _without_test_set("digits", x, bunch.target.astype(np.int64), 10)


def _idx(name: str, base_url: str, md5: dict[str, str], system: tuple[str, ...] = (),
         hint: str = "") -> Callable[[], Dataset]:
    def load() -> Dataset:
        from .data.idx import load_idx_dataset

        how = hint or f"download the four files from {base_url}"
        return with_test_set(name, *load_idx_dataset(name, base_url, md5, system, how)[:4], 10)

    def local() -> bool:
        from .data.idx import found_locally

        return found_locally(name, system)

    load.__doc__ = f"{name}: 60k/10k 28x28 grayscale IDX images, 10 classes."
    load.local = local  # type: ignore[attr-defined]
    return load


def _cifar(name: str) -> Callable[[], Dataset]:
    def load() -> Dataset:
        from .data.cifar import load_cifar

        x, y, x_test, y_test, classes = load_cifar(name)
        return with_test_set(name, x, y, x_test, y_test, classes, augment=True)

    def local() -> bool:
        from .data.cifar import found_locally

        return found_locally(name)

    load.__doc__ = f"{name}: 50k/10k 32x32 RGB images; crop+flip augmentation in training."
    load.local = local  # type: ignore[attr-defined]
    return load


def load_folder(path: str) -> Dataset:
    """`folder:PATH`: one sub-folder per class; no official test set, so both splits are drawn."""
    from .data.folder import load_folder as read_folder

    x, y, classes = read_folder(Path(path).expanduser())
    return _without_test_set(f"{FOLDER_PREFIX}{path}", x, y, len(classes), classes=classes)


DATASETS: dict[str, Callable[[], Dataset]] = {
    "digits": load_digits,
    "fashion-mnist": _idx(
        "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
        system=("/usr/share/datasets/fashion-mnist",),
        hint="install the Debian package dataset-fashion-mnist (apt-get install "
             "dataset-fashion-mnist)",
    ),
    "mnist": _idx(
        "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist",
        {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
    ),
    "kmnist": _idx(
        "kmnist", "http://codh.rois.ac.jp/kmnist/dataset/kmnist",
        {"train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
         "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
         "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
         "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134"},
    ),
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
}


def available_offline(name: str) -> bool:
    """Whether `name` loads without a download: bundled (digits), or its files found in
    $BNNX_DATA, the cache or the system folders its loader searches."""
    if name.startswith(FOLDER_PREFIX):
        return Path(name[len(FOLDER_PREFIX):]).expanduser().is_dir()
    local = getattr(DATASETS.get(name), "local", None)
    return name in DATASETS and (local is None or local())


def get_dataset(name: str) -> Dataset:
    """A registered dataset by name, or `folder:PATH` for an image folder."""
    if name.startswith(FOLDER_PREFIX):
        return load_folder(name[len(FOLDER_PREFIX) :])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}, "
                         f"{FOLDER_PREFIX}PATH")
    return DATASETS[name]()


def search_data(name: str, train_subset: int | None = None) -> Dataset:
    """The dataset a study trains on: `train_subset` keeps a stratified, seeded share of the
    training split (a proxy search: each candidate trains on less data) while validation and
    test stay whole, so every trial is still judged on the same full validation split."""
    data = get_dataset(name)
    if train_subset is None:
        return data
    n = len(data.y_train)
    if not 1 <= train_subset <= n:
        raise ValueError(f"train subset must be 1..{n} (the training images of {name}), got "
                         f"{train_subset}")
    # Every image gets its seeded rank within its class as a share of the class (0..1); the n
    # lowest shares take each class in proportion, and exactly n images in all.
    rng, share = np.random.default_rng(SPLIT_SEED), np.empty(n)
    for c in np.unique(data.y_train):
        idx = np.flatnonzero(data.y_train == c)
        share[idx] = (rng.permutation(len(idx)) + 0.5) / len(idx)
    keep = np.sort(np.argsort(share, kind="stable")[:train_subset])
    return Dataset(data.name, data.x_train[keep], data.y_train[keep], data.x_val, data.y_val,
                   data.x_test, data.y_test, data.num_classes, data.augment, data.classes)


def as_nchw(x: np.ndarray, in_channels: int) -> np.ndarray:
    """Raw images as a dataset provides them, (N, H, W) or (N, C, H, W), to float32 NCHW."""
    if x.ndim == 3 and in_channels == 1:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"input must be (N, H, W) or (N, {in_channels}, H, W) images, got shape {x.shape}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)
