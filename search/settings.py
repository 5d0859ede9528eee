"""What a study searches and how: recorded with the study, so every worker and every resume
runs it the same way."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

from .early_stop import early_stop_rule
from .samplers import check_sampler

# objective name -> (metric stored with each trial, direction)
OBJECTIVES = {
    "acc": ("val_accuracy", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "size": ("packed_kb", "minimize"),
}


# How a candidate's float parts (stem, downsampling shortcuts, head) run on the packed kernels:
# "exact": torch's own ops in torch's order, bit-equal logits (kernels.compile's default);
# "fast": BatchNorm and the input normalisation folded into the float convs, run on bnnx's
# direct kernel (exact_float=False): logits within rounding of torch's, a sign may flip where a
# binary layer's input lies within rounding of zero. Trials are timed, and exports packed, so.
FLOAT_PARTS = ("exact", "fast")


def check_threads(threads: int) -> int:
    """A latency thread count this machine can honour: more threads than cores would make every
    layer wait at its barrier for a core another thread holds."""
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        raise ValueError(f"latency threads must be 1..{cpus} (this machine's CPUs), got "
                         f"{threads}")
    return threads


def exact_float_of(float_parts: str) -> bool:
    """kernels.compile's exact_float for one of FLOAT_PARTS (ValueError naming them else)."""
    if float_parts not in FLOAT_PARTS:
        raise ValueError(f"float parts {float_parts!r} not allowed; allowed: "
                         f"{', '.join(FLOAT_PARTS)}")
    return float_parts == "exact"


@dataclass
class SearchSettings:
    dataset: str = "digits"
    space: str = "quick"
    trials: int = 10  # the budget: finished (complete or pruned) trials, over all workers
    epochs: int = 3
    seed: int = 0
    artifacts: str = ""  # folder of weight artifacts; default: beside the storage
    space_knobs: dict = field(default_factory=dict)  # the space's knobs, so workers rebuild it
    latency_threads: int = 1  # latency is measured on this many threads, whatever --workers is
    sampler: str = "tpe"
    objectives: list[str] = field(default_factory=lambda: ["acc", "latency"])
    max_latency_ms: float | None = None  # over it: infeasible, never trained
    max_size_kb: float | None = None  # packed model size budget, likewise
    early_stop: str = "halving"
    train_subset: int | None = None  # train on this many training images (validation whole)
    float_parts: str = "exact"  # FLOAT_PARTS: how the packed model's float parts are compiled

    @classmethod
    def from_dict(cls, attrs: dict) -> SearchSettings:
        """Settings a study recorded; keys of a newer bnnx are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(attrs) - known)
        if unknown:
            raise ValueError(f"study settings have unknown keys {unknown} (written by a newer "
                             "bnnx?)")
        return cls(**attrs)

    def check(self) -> SearchSettings:
        """Raise ValueError naming the first bad value and what is allowed."""
        check_sampler(self.sampler)
        exact_float_of(self.float_parts)
        early_stop_rule(self.early_stop)
        if list(self.objectives[:2]) != ["acc", "latency"] or not set(self.objectives) <= set(
                OBJECTIVES) or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {','.join(self.objectives)!r} not allowed; allowed: "
                             "acc,latency or acc,latency,size")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(f"train-subset must be a positive number of images, got "
                             f"{self.train_subset}")
        for name in ("max_latency_ms", "max_size_kb"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', '-')} must be a positive number, "
                                 f"got {value}")
        return self

    @property
    def exact_float(self) -> bool:
        return exact_float_of(self.float_parts)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][1] for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def constrained(self) -> bool:
        return self.max_latency_ms is not None or self.max_size_kb is not None
