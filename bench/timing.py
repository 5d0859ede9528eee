"""The timing rules the benchmarks share: warm up, then the median of repeated calls; contenders
compared with each other are timed interleaved."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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


def interleaved_ms(fns: Mapping[str, Callable[[], Any]], repeats: int, calls: int = 5,
                   warmup: int = 3) -> dict[str, float]:
    """Median wall time (ms) of each contender over `repeats` calls, made in rounds of `calls`
    calls per contender, the first contender rotating. A shared machine's speed drifts from one
    second to the next; interleaved, every contender samples the same slow and fast spells, so
    the ratios between them hold where back-to-back medians would compare different moments.
    Each block of calls starts with one untimed call: a contender is timed warm (caches, thread
    pool awake), as it runs among the layers of a network."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, -(-repeats // calls))):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, bucket = fns[name], times[name]
            fn()
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}
