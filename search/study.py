"""Studies: create a multi-objective study and run workers on it, in one or many processes.

A study records what it searches (dataset, space, epochs, seed, artifacts folder, sampler,
objectives, budgets, early stopping) as its user attribute "bnnx", so `worker` processes on any
machine, and a resumed search, run it with just storage + name.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from spaces import SearchSpace

from .budget import BUDGET_REASON, budget_of, finished, is_covered
from .datasets import search_data
from .objective import Objective
from .progress import Progress
from .samplers import make_sampler
from .settings import SearchSettings, check_threads
from .stale import recover_and_report, runs_here
from .stopping import Flag, QuietStops, StopSignals
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

QUIET_STOPS = QuietStops()
FAILURES_IN_A_ROW = 5  # a worker whose trials keep failing stops instead of looping forever
WAIT_S = 2.0  # how often a worker with nothing to run looks at the others' running trials


def create_study(spec: str, name: str, settings: SearchSettings) -> optuna.Study:
    """A new study; refuses to reuse a name so two searches never mix their trials."""
    check_study_name(name)
    settings.check()
    search_data(settings.dataset, settings.train_subset)  # fail now, not in every worker
    settings.space_knobs = SearchSpace(settings.space).knobs  # a space file may change later
    folder = settings.artifacts or str(default_artifacts_dir(spec))
    check_artifacts_dir(Path(folder))  # a bad folder fails before the study exists
    storage = open_storage(spec, create=True)
    taken = (f"study {name!r} already exists in {masked(spec)}; choose another --study, or add "
             "--resume to continue it")
    if name in optuna.get_all_study_names(storage):
        raise StorageError(taken)
    settings.artifacts = recorded_artifacts(spec, folder)
    artifact_store(folder)
    try:
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=settings.directions)
    except optuna.exceptions.DuplicatedStudyError:  # another search took the name meanwhile
        raise StorageError(taken) from None
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(settings.metric_names)
    study.set_user_attr("bnnx", asdict(settings))
    return study


def study_settings(study: optuna.Study) -> SearchSettings:
    attrs = study.user_attrs.get("bnnx")
    if not isinstance(attrs, dict):
        raise StorageError(f"study {study.study_name!r} was not created by bnnx search")
    try:
        return SearchSettings.from_dict(attrs)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"study {study.study_name!r}: {exc}") from None


def raise_budget(spec: str, name: str, trials: int) -> optuna.Study:
    """Set the study's trial budget to `trials`; it can grow, never shrink below its finished
    trials."""
    study = load_study(spec, name)
    settings = study_settings(study)
    done = finished(study)
    if trials < done:
        raise ValueError(f"study {name!r} has {done} finished trials already; --trials must be "
                         f">= {done} (its budget is {settings.trials})")
    if trials != settings.trials:
        settings.trials = trials
        study.set_user_attr("bnnx", asdict(settings))
    return study


def sampler_seed(seed: int, worker: int, trials_so_far: int) -> int:
    """A worker's sampler seed: reproducible, yet new for every worker and every resume (a
    worker joining a study that already has trials must not replay trial 0's parameters)."""
    return int(np.random.SeedSequence([seed, worker, trials_so_far]).generate_state(1)[0])


def run_worker(spec: str, name: str, worker: int = 0, threads: int = 1,
               artifacts: str | None = None, stop: StopSignals | None = None,
               deadline: float | None = None) -> None:
    """Join a study and run trials until its budget of finished trials is reached.

    `threads` is for training; latency is measured on the study's own `latency_threads`.
    `artifacts` overrides the study's artifacts folder (e.g. where this machine mounts it).
    `stop`'s flags end the run early (see search.stopping); no trial starts after `deadline`
    (time.time()), running ones finish. Failed trials are recorded and made up for. When the
    other workers' running trials would fill the budget, this one waits for them where their
    fate can be told from here (database heartbeats, or this host's journal trials): a worker
    that died leaves its trial to be failed, retried and finished by those still alive.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in optuna.logging.get_logger("optuna").handlers:  # records of its submodules
        handler.addFilter(QUIET_STOPS)
    torch.set_num_threads(threads)
    stop = stop or StopSignals()
    study = load_study(spec, name)
    settings = study_settings(study)
    folder = artifacts or artifacts_dir(spec, settings.artifacts)
    sampler = make_sampler(settings.sampler, sampler_seed(settings.seed, worker, len(study.trials)),
                           settings.trials)
    study = optuna.load_study(study_name=name, storage=study._storage, sampler=sampler)
    objective = Objective(
        partial(search_data, settings.dataset, settings.train_subset),
        SearchSpace(settings.space, settings.space_knobs or None),
        settings,
        artifact_store(folder),
        cache=Path(folder),
        stop=stop,
    )
    failures: list[optuna.trial.FrozenTrial] = []

    def after_trial(_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        lost_race = trial.user_attrs.get("fail_reason") == BUDGET_REASON
        if trial.state == TrialState.FAIL and not lost_race:
            failures.append(trial)
        elif not lost_race:
            failures.clear()

    while not stop.requested and (deadline is None or time.time() < deadline):
        _recover(study, name)
        if finished(study) >= budget_of(study):
            break
        if len(failures) >= FAILURES_IN_A_ROW:
            reason = failures[-1].user_attrs.get("fail_reason", "no reason recorded")
            print(f"worker {worker}: {len(failures)} trials in a row failed, stopping; the last: "
                  f"{reason}", file=sys.stderr, flush=True)
            break
        if is_covered(study):  # the running trials of other workers fill the budget
            if not _can_wait_for(study):
                break
            time.sleep(WAIT_S)
            continue
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        study.optimize(objective, n_trials=1, timeout=timeout, catch=(Exception,),
                       callbacks=[after_trial])
        if objective.unavailable:  # every trial here would fail the same way
            print(f"worker {worker}: {objective.unavailable}; its trial failed with that reason, "
                  "this worker stops (workers on other machines go on)", file=sys.stderr,
                  flush=True)
            break


def _recover(study: optuna.Study, name: str) -> None:
    """Fail (and queue once more) the trials of workers that died: this host's on a journal,
    any whose heartbeat stopped on a database."""
    if isinstance(study._storage, JournalStorage):
        recover_and_report(study._storage, name)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def _can_wait_for(study: optuna.Study) -> bool:
    """Whether a dead owner of a running trial would be noticed from here (see _recover)."""
    if not isinstance(study._storage, JournalStorage):
        return True
    return all(runs_here(t) for t in study.get_trials(deepcopy=False,
                                                       states=(TrialState.RUNNING,)))


def _worker_process(spec: str, name: str, worker: int, threads: int, deadline: float | None,
                    finish: Flag, now: Flag) -> None:
    """A local worker process: shares its parent's stop flags, leaves Ctrl+C to the parent."""
    with StopSignals(finish, now).installed(worker=True) as stop:
        run_worker(spec, name, worker, threads, stop=stop, deadline=deadline)


def run_search(spec: str, name: str, settings: SearchSettings | None, workers: int = 1,
               stop: StopSignals | None = None, timeout: float | None = None,
               resume_trials: int | None = None, progress: bool = False) -> optuna.Study:
    """Create the study (or, with `settings` None, continue it, its budget raised to
    `resume_trials` if given) and run `workers` local worker processes on it until its budget is
    covered, `timeout` seconds pass (running trials finish) or `stop` says so.

    With `stop` (made by StopSignals.shared() for more than one worker), its flags reach every
    worker; the caller installs its signal handlers. `progress` reports on stderr (see
    search.progress).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and spec.startswith("sqlite:///"):
        raise StorageError(
            f"SQLite storage {spec} takes one worker process (its file lock fails under several); "
            "use a journal file (e.g. --storage runs/bnnx.journal) or PostgreSQL for --workers > 1"
        )
    cpus = os.cpu_count() or 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings is None:
        if resume_trials is not None:
            raise_budget(spec, name, resume_trials)
        settings = study_settings(load_study(spec, name))
    else:
        check_threads(settings.latency_threads)
        create_study(spec, name, settings)
    threads = max(1, cpus // workers)
    deadline = None if timeout is None else time.time() + timeout
    stop = stop or (StopSignals.shared() if workers > 1 else StopSignals())
    with Progress(load_study(spec, name)) if progress else nullcontext():
        if workers == 1:
            run_worker(spec, name, 0, threads, stop=stop, deadline=deadline)
        else:
            ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
            procs = [
                ctx.Process(target=_worker_process, daemon=False,
                            args=(spec, name, i, threads, deadline, stop.finish, stop.now))
                for i in range(workers)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
    return load_study(spec, name)
