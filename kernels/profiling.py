"""Per-layer latency of a packed model: medians and spreads over repeated forwards."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .graph import Op, Value


@dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str
    median_ms: float
    iqr_ms: float


@dataclass(frozen=True)
class Profile:
    """Whole-forward median (`total_ms`) and per-layer medians; spreads are interquartile ranges.

    Layer medians are taken from the same runs as the total, so they add up to it closely.
    """

    total_ms: float
    total_iqr_ms: float
    isa: str
    threads: int
    batch_size: int
    repeats: int
    layers: list[LayerProfile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A fixed-width table for logs and the CLI."""
        width = max([len(layer.name) for layer in self.layers] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<20} {'median ms':>10} {'iqr ms':>8}"]
        for layer in self.layers:
            lines.append(f"{layer.name:<{width}}  {layer.kind:<20} {layer.median_ms:>10.4f} "
                         f"{layer.iqr_ms:>8.4f}")
        lines.append(f"{'total':<{width}}  {self.isa + f' x{self.threads}':<20} "
                     f"{self.total_ms:>10.4f} {self.total_iqr_ms:>8.4f}")
        return "\n".join(lines)


def time_ops(ops: Sequence[Op], x: torch.Tensor, threads: int, repeats: int,
             warmup: int) -> np.ndarray:
    """(repeats, len(ops)) seconds; each row is one forward timed op by op, back to back."""
    clock = time.perf_counter
    times = np.empty((repeats, len(ops)))
    with torch.inference_mode():
        for r in range(-warmup, repeats):
            value: Value = x
            stamps = [clock()]
            for op in ops:
                value = op.run(value, threads)
                stamps.append(clock())
            if r >= 0:
                times[r] = np.diff(stamps)
    return times


def summarise(times: np.ndarray, ops: Sequence[Op], isa: str, threads: int,
              batch_size: int) -> Profile:
    def stats(t: np.ndarray) -> tuple[float, float]:
        q25, q50, q75 = np.percentile(t * 1e3, [25, 50, 75])
        return float(q50), float(q75 - q25)

    layers = [LayerProfile(op.name, op.label, *stats(times[:, i])) for i, op in enumerate(ops)]
    total, spread = stats(times.sum(axis=1))
    return Profile(total, spread, isa, threads, batch_size, times.shape[0], layers)


def steady_profile(measure: Callable[[], Profile], max_spread: float = 0.15,
                   rounds: int = 4) -> tuple[Profile, list[float]]:
    """The quietest of up to `rounds` profiles, and every round's median (ms).

    A round whose interquartile range exceeds `max_spread` of its median was disturbed (another
    process took the core), so it is measured again; interference only ever adds time, so the
    round with the lowest median is kept.
    """
    if rounds < 1 or max_spread <= 0:
        raise ValueError("steady_profile needs rounds >= 1 and max_spread > 0")
    profiles = [measure()]
    while (len(profiles) < rounds
           and profiles[-1].total_iqr_ms > max_spread * profiles[-1].total_ms):
        profiles.append(measure())
    best = min(profiles, key=lambda p: p.total_ms)
    return best, [p.total_ms for p in profiles]
