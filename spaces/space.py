"""Search spaces: turn an Optuna trial into a Config.

Only `trial.suggest_*` is used (no storage, no study), so a space can be sampled by any Optuna
sampler and its params read by any Optuna tool under readable names.
"""

from __future__ import annotations

from typing import Any, Protocol

from .config import Config


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


class SearchSpace:
    """A named set of knobs; `sample(trial, epochs)` returns a validated Config."""

    PRESETS = ("quick",)

    def __init__(self, name: str = "quick") -> None:
        if name not in self.PRESETS:
            raise ValueError(f"unknown search space {name!r}; allowed: {', '.join(self.PRESETS)}")
        self.name = name

    def sample(self, trial: TrialLike, epochs: int, seed: int = 0) -> Config:
        """The `quick` preset: small plain nets for the digits demo (seconds per trial)."""
        return Config.from_dict(
            {
                "arch": {
                    "family": "plain",
                    "width": trial.suggest_categorical("width", [8, 16, 32, 64]),
                    "depth": trial.suggest_int("depth", 1, 3),
                    "blocks_per_stage": trial.suggest_int("blocks_per_stage", 1, 2),
                },
                "quant": {
                    "input_quantizer": trial.suggest_categorical(
                        "input_quantizer", ["ste", "clipped_ste", "approx_sign"]
                    ),
                    "weight_quantizer": trial.suggest_categorical(
                        "weight_quantizer", ["sign", "xnor"]
                    ),
                },
                "train": {
                    "lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
                    "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
                    "epochs": epochs,
                },
                "seed": seed,
            }
        )
