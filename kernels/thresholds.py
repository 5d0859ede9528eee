"""Integer sign thresholds: the exact bit a binary layer's float epilogue would produce.

For a layer with K = C_in * KH * KW, every dot is an integer in [-K, K], so evaluating the torch
module's own epilogue (weight scale, bias, BatchNorm, ...) on all 2K + 1 of them and reading off
where its sign flips reproduces torch's sign bit for bit, whatever gamma's sign or zero.
"""

from __future__ import annotations

import numpy as np


class NonMonotonicError(ValueError):
    """The epilogue's sign changes more than once over the dots, so no threshold represents it."""


def sign_thresholds(negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (threshold, direction) from a (2K + 1, C) table of 'output is -1' at d = -K..K.

    direction +1: bit = dot >= threshold; direction -1: bit = dot <= threshold.
    """
    table = np.asarray(negative, dtype=bool)
    if table.ndim != 2 or table.shape[0] % 2 != 1:
        raise ValueError(f"expected a (2K + 1, C) table, got shape {table.shape}")
    k = table.shape[0] // 2
    channels = table.shape[1]
    threshold = np.empty(channels, dtype=np.int32)
    direction = np.empty(channels, dtype=np.int8)
    changes = np.count_nonzero(table[1:] != table[:-1], axis=0)
    for c in range(channels):
        col = table[:, c]
        if changes[c] > 1:
            raise NonMonotonicError(
                f"channel {c}: the sign flips {changes[c]} times over dots in [-{k}, {k}]"
            )
        if changes[c] == 0:  # constant: 'always' is d >= -K, 'never' is d >= K + 1
            threshold[c], direction[c] = (-k if col[0] else k + 1), 1
        elif not col[0]:  # 0 ... 0 1 ... 1: negative from the first True on
            threshold[c], direction[c] = int(np.argmax(col)) - k, 1
        else:  # 1 ... 1 0 ... 0: negative up to the last True
            threshold[c], direction[c] = int(np.argmin(col)) - 1 - k, -1
    return threshold, direction


def apply_thresholds(dots: np.ndarray, threshold: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Reference of the kernel's comparison on int dots (..., C): True where the bit is 1."""
    d = np.asarray(dots, dtype=np.int64)
    return np.where(direction > 0, d >= threshold, d <= threshold)
