"""Datasets as in-memory arrays with a fixed, seeded train/validation/test split.

Images stay raw (as the source provides them); the model normalises them itself with the
per-channel mean/std computed here on the training split, so exported models take raw input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 0  # fixed: every study and every export sees the same split


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, C, H, W) float32, raw pixel scale
    y_train: np.ndarray  # (N,) int64
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def mean(self) -> list[float]:
        return [float(m) for m in self.x_train.mean(axis=(0, 2, 3))]

    @property
    def std(self) -> list[float]:
        return [float(max(s, 1e-6)) for s in self.x_train.std(axis=(0, 2, 3))]

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


def _stratified_split(y: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple:
    """Indices (train, val, test) with `fractions` = (val, test) of every class."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val, n_test = (round(len(idx) * f) for f in fractions)
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16): offline."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train, val, test = _stratified_split(y, (0.15, 0.2), SPLIT_SEED)
    return Dataset("digits", x[train], y[train], x[val], y[val], x[test], y[test], 10)


DATASETS: dict[str, Callable[[], Dataset]] = {"digits": load_digits}


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]()


def as_nchw(x: np.ndarray, in_channels: int) -> np.ndarray:
    """Raw images as a dataset provides them, (N, H, W) or (N, C, H, W), to float32 NCHW."""
    if x.ndim == 3 and in_channels == 1:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"input must be (N, H, W) or (N, {in_channels}, H, W) images, got shape {x.shape}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)
