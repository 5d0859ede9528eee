"""The samplers a search can use, built the same way in every worker from the study's settings.

Each one gets the worker's own seed. Budgets reach them as the trial constraints the objective
sets (Optuna's `Trial.set_constraint`): TPE, NSGA-II and GP learn to avoid infeasible regions.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.samplers import BaseSampler

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    return name


def make_sampler(name: str, seed: int, budget: int) -> BaseSampler:
    """The named sampler; random start-up trials scale with the trial budget (3 to 10)."""
    startup = min(10, max(3, budget // 2))
    with warnings.catch_warnings():  # GPSampler and multivariate TPE carry experimental flags
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if check_sampler(name) == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                              multivariate=True)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed,
                                                 population_size=min(50, max(4, budget // 4)))
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        return optuna.samplers.RandomSampler(seed=seed)
