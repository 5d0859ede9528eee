"""Studies: create a multi-objective study and run workers on it, in one or many processes.

A study records what it searches (dataset, space, epochs, seed, artifacts folder) as its user
attribute "bnnx", so `worker` processes on any machine can join it with just storage + name.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import torch

from spaces import SearchSpace

from .datasets import get_dataset
from .objective import Objective
from .storage import StorageError, artifact_store, default_artifacts_dir, load_study, open_storage

DIRECTIONS = ("maximize", "minimize")
METRIC_NAMES = ("val_accuracy", "latency_ms")


@dataclass
class SearchSettings:
    dataset: str = "digits"
    space: str = "quick"
    trials: int = 10
    epochs: int = 3
    seed: int = 0
    artifacts: str = ""  # folder of weight artifacts; default: beside the storage
    space_knobs: dict = field(default_factory=dict)  # the space's knobs, so workers rebuild it


def create_study(spec: str, name: str, settings: SearchSettings) -> optuna.Study:
    """A new study; refuses to reuse a name so two searches never mix their trials."""
    get_dataset(settings.dataset)  # fail now, not in every worker
    settings.space_knobs = SearchSpace(settings.space).knobs  # a space file may change later
    storage = open_storage(spec, create=True)
    if name in optuna.get_all_study_names(storage):
        raise StorageError(f"study {name!r} already exists in {spec}; choose another --study")
    settings.artifacts = settings.artifacts or str(default_artifacts_dir(spec).resolve())
    study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS))
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr("bnnx", asdict(settings))
    return study


def study_settings(study: optuna.Study) -> SearchSettings:
    attrs = study.user_attrs.get("bnnx")
    if not isinstance(attrs, dict):
        raise StorageError(f"study {study.study_name!r} was not created by bnnx search")
    return SearchSettings(**attrs)


def run_worker(spec: str, name: str, n_trials: int, worker: int = 0, threads: int = 1) -> None:
    """Join a study and run `n_trials` trials; failed trials are recorded and skipped."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(threads)
    study = load_study(spec, name)
    settings = study_settings(study)
    sampler = optuna.samplers.TPESampler(
        seed=settings.seed + 1000 * worker,
        n_startup_trials=min(10, max(3, settings.trials // 2)),
        multivariate=True,
    )
    study = optuna.load_study(study_name=name, storage=open_storage(spec), sampler=sampler)
    objective = Objective(
        get_dataset(settings.dataset),
        SearchSpace(settings.space, settings.space_knobs or None),
        settings.epochs,
        settings.seed,
        artifact_store(settings.artifacts),
        threads=threads,
        cache=Path(settings.artifacts),
    )
    study.optimize(objective, n_trials=n_trials, catch=(Exception,), callbacks=[report_trial])


def report_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One progress line per finished trial (the explorer shows a job's last log line)."""
    if trial.values is not None:
        print(f"trial {trial.number} complete: val {100 * trial.values[0]:.1f}%, "
              f"{trial.values[1]:.3f} ms", file=sys.stderr, flush=True)
    else:
        reason = trial.user_attrs.get("fail_reason", trial.state.name.lower())
        print(f"trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)


def run_search(spec: str, name: str, settings: SearchSettings, workers: int = 1) -> optuna.Study:
    """Create the study and split its trials over `workers` local processes."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    create_study(spec, name, settings)
    threads = max(1, (os.cpu_count() or 1) // workers)
    shares = [settings.trials // workers + (i < settings.trials % workers) for i in range(workers)]
    if workers == 1:
        run_worker(spec, name, shares[0], 0, threads)
    else:
        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        procs = [
            ctx.Process(target=run_worker, args=(spec, name, n, i, threads), daemon=False)
            for i, n in enumerate(shares)
            if n > 0
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    return load_study(spec, name)
