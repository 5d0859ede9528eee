"""The one timing rule every benchmark shares: warm up, then the median of repeated calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))
