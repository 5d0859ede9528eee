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

import numpy as np
import optuna
import torch
from optuna.storages import JournalStorage

from spaces import SearchSpace

from .datasets import get_dataset
from .objective import Objective
from .stale import recover_and_report
from .stopping import STOPPED_REASON, Flag, QuietStops, StopSignals
from .storage import (
    StorageError,
    artifact_store,
    artifacts_dir,
    check_artifacts_dir,
    check_study_name,
    default_artifacts_dir,
    load_study,
    masked,
    open_storage,
    recorded_artifacts,
)

DIRECTIONS = ("maximize", "minimize")
QUIET_STOPS = QuietStops()
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
    latency_threads: int = 1  # latency is measured on this many threads, whatever --workers is


def create_study(spec: str, name: str, settings: SearchSettings) -> optuna.Study:
    """A new study; refuses to reuse a name so two searches never mix their trials."""
    check_study_name(name)
    get_dataset(settings.dataset)  # fail now, not in every worker
    settings.space_knobs = SearchSpace(settings.space).knobs  # a space file may change later
    folder = settings.artifacts or str(default_artifacts_dir(spec))
    check_artifacts_dir(Path(folder))  # a bad folder fails before the study exists
    storage = open_storage(spec, create=True)
    taken = f"study {name!r} already exists in {masked(spec)}; choose another --study"
    if name in optuna.get_all_study_names(storage):
        raise StorageError(taken)
    settings.artifacts = recorded_artifacts(spec, folder)
    artifact_store(folder)
    try:
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=list(DIRECTIONS))
    except optuna.exceptions.DuplicatedStudyError:  # another search took the name meanwhile
        raise StorageError(taken) from None
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


def sampler_seed(seed: int, worker: int, trials_so_far: int) -> int:
    """A worker's sampler seed: reproducible, yet new for every worker and every resume (a
    worker joining a study that already has trials must not replay trial 0's parameters)."""
    return int(np.random.SeedSequence([seed, worker, trials_so_far]).generate_state(1)[0])


def run_worker(spec: str, name: str, n_trials: int, worker: int = 0, threads: int = 1,
               artifacts: str | None = None, stop: StopSignals | None = None) -> None:
    """Join a study and run `n_trials` trials; failed trials are recorded and skipped.

    `threads` is for training; latency is measured on the study's own `latency_threads`.
    `artifacts` overrides the study's artifacts folder (e.g. where this machine mounts it).
    `stop`'s flags end the run early (see search.stopping).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in optuna.logging.get_logger("optuna").handlers:  # records of its submodules
        handler.addFilter(QUIET_STOPS)
    torch.set_num_threads(threads)
    stop = stop or StopSignals()
    study = load_study(spec, name)
    if isinstance(study._storage, JournalStorage):  # databases have heartbeats instead
        recover_and_report(study._storage)
    settings = study_settings(study)
    folder = artifacts or artifacts_dir(spec, settings.artifacts)
    sampler = optuna.samplers.TPESampler(
        seed=sampler_seed(settings.seed, worker, len(study.trials)),
        n_startup_trials=min(10, max(3, settings.trials // 2)),
        multivariate=True,
    )
    study = optuna.load_study(study_name=name, storage=open_storage(spec), sampler=sampler)
    objective = Objective(
        get_dataset(settings.dataset),
        SearchSpace(settings.space, settings.space_knobs or None),
        settings.epochs,
        settings.seed,
        artifact_store(folder),
        latency_threads=settings.latency_threads,
        cache=Path(folder),
        stop=stop,
    )

    def stop_when_told(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if stop.requested:
            study.stop()

    study.optimize(objective, n_trials=n_trials, catch=(Exception,),
                   callbacks=[report_trial, stop_when_told])


def _worker_process(spec: str, name: str, n_trials: int, worker: int, threads: int,
                    finish: Flag, now: Flag) -> None:
    """A local worker process: shares its parent's stop flags, leaves Ctrl+C to the parent."""
    with StopSignals(finish, now).installed(worker=True) as stop:
        run_worker(spec, name, n_trials, worker, threads, stop=stop)


def report_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One progress line per finished trial (the explorer shows a job's last log line)."""
    if trial.values is not None:
        print(f"trial {trial.number} complete: val {100 * trial.values[0]:.1f}%, "
              f"{trial.values[1]:.3f} ms", file=sys.stderr, flush=True)
    elif trial.user_attrs.get("fail_reason") == STOPPED_REASON:
        print(f"trial {trial.number} stopped", file=sys.stderr, flush=True)
    else:
        reason = trial.user_attrs.get("fail_reason", trial.state.name.lower())
        print(f"trial {trial.number} failed: {reason}", file=sys.stderr, flush=True)


def run_search(spec: str, name: str, settings: SearchSettings, workers: int = 1,
               stop: StopSignals | None = None) -> optuna.Study:
    """Create the study and split its trials over `workers` local processes.

    With `stop` (made by StopSignals.shared() for more than one worker), its flags reach every
    worker; the caller installs its signal handlers.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and spec.startswith("sqlite:///"):
        raise StorageError(
            f"SQLite storage {spec} takes one worker process (its file lock fails under several); "
            "use a journal file (e.g. --storage runs/bnnx.journal) or PostgreSQL for --workers > 1"
        )
    cpus = os.cpu_count() or 1
    if not 1 <= settings.latency_threads <= cpus:
        raise ValueError(f"latency threads must be 1..{cpus} (this machine's CPUs), got "
                         f"{settings.latency_threads}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    create_study(spec, name, settings)
    threads = max(1, cpus // workers)
    stop = stop or (StopSignals.shared() if workers > 1 else StopSignals())
    shares = [settings.trials // workers + (i < settings.trials % workers) for i in range(workers)]
    if workers == 1:
        run_worker(spec, name, shares[0], 0, threads, stop=stop)
    else:
        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        procs = [
            ctx.Process(target=_worker_process, daemon=False,
                        args=(spec, name, n, i, threads, stop.finish, stop.now))
            for i, n in enumerate(shares)
            if n > 0
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    return load_study(spec, name)
