"""How bnnx times contenders against each other (the benchmarks, and the runtimes an export
writes): interleaved, so a shared machine's drift hits them alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def interleaved_ms(fns: Mapping[str, Callable[[], Any]], repeats: int, calls: int = 5,
                   warmup: int = 3, settle_s: float = 0.02) -> dict[str, float]:
    """Median wall time (ms) of each contender over `repeats` calls, made in rounds of `calls`
    calls per contender, the first contender rotating. A shared machine's speed drifts from one
    second to the next; interleaved, every contender samples the same slow and fast spells, so
    the ratios between them hold where back-to-back medians would compare different moments.
    Each block of calls starts with one untimed call: a contender is timed warm (caches, thread
    pool awake), as it runs among the layers of a network. Before that call the run sleeps
    `settle_s`: after a multi-threaded call an OpenMP team keeps a core spinning for some
    milliseconds (about 5 measured), which would take part of a core from the next contender."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, -(-repeats // calls))):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, bucket = fns[name], times[name]
            time.sleep(settle_s)
            fn()
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}
