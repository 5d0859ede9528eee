"""Re-time stored trials on this machine from their weights, without training them again.

Latencies from different CPUs are not comparable (kernels.machine), so a front searched on one
machine is profiled again on the machine that will run it, and at the end of a search the front
is timed side by side (`interleaved`) so that a drift in the machine's speed hits every model
alike instead of whichever happened to be measured during a slow spell.

Results are kept per machine. Optuna refuses to change a finished trial (JournalStorage raises
UpdateFinishedTrialError and leaves a dead record in the journal; RDBStorage raises too), so they
live in the study's user attribute "latency_by_machine":
{trial number (a string, as JSON keys are): {machine key: record}} (read it with
`latency_records`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

import kernels
from kernels.machine import machine_info

from .export import pick_trial, trial_model
from .objective import WEIGHTS_ATTR, measure_latency
from .settings import check_threads
from .storage import StorageError, load_study
from .study import study_settings

if TYPE_CHECKING:
    from torch import nn

LATENCY_ATTR = "latency_by_machine"
INTERLEAVED_ROUNDS = 15  # every model profiled once per round; its latency: median over rounds
INTERLEAVED_REPEATS = 5  # timed forwards per profile (after its warmup): short, so rounds are
# close together in time and a slow spell lands in the same rounds for every model


def machine_key(facts: dict[str, Any]) -> str:
    """Which machine a latency belongs to: 'cpu | isa | N threads' (from machine_info facts)."""
    return f"{facts['cpu']} | {facts['isa']} | {facts['threads']} threads"


def front_numbers(study: optuna.Study) -> list[int]:
    """Numbers of the trials on the study's Pareto front that have weights to re-time."""
    return sorted(t.number for t in study.best_trials if WEIGHTS_ATTR in t.user_attrs)


def latency_records(study: optuna.Study) -> dict[int, dict[str, dict[str, Any]]]:
    """Every re-measured latency of the study: {trial number: {machine key: record}}."""
    return {int(n): records for n, records in study.user_attrs.get(LATENCY_ATTR, {}).items()}


def remeasure_trials(spec: str, study_name: str, numbers: list[int] | None, threads: int,
                     interleaved: bool, artifacts: str | None = None) -> list[dict[str, Any]]:
    """Profile trials' models again on this machine on `threads` threads and store the results.

    `numbers=None` takes every complete trial that has weights (see `_trials`). Each model is
    rebuilt from its weights artifact (`artifacts` overrides the study's folder) and compiled.
    Not interleaved, each is measured like a trial (search.objective.measure_latency);
    interleaved, all are timed in alternating rounds (see `_interleaved`). Returns one row per
    trial: its stored latency and machine, the new latency and this machine's key.
    """
    check_threads(threads)
    study = load_study(spec, study_name)
    trials = _trials(study, numbers)
    if not trials:
        return []
    exact_float = study_settings(study).exact_float  # as its trials were timed
    packed = {t.number: _compiled(trial_model(spec, study, t, artifacts), t, exact_float)
              for t in trials}
    if interleaved:
        records = _interleaved(packed, threads)
    else:
        records = {n: _measured(p, threads) for n, p in packed.items()}
    _store(study, records)
    rows = []
    for t in trials:
        stored_on = t.user_attrs.get("measured_on")  # absent in studies older than that record
        rows.append({"trial": t.number, "stored_ms": t.values[1],
                     "stored_on": machine_key(stored_on) if stored_on else None,
                     "latency_ms": records[t.number]["latency_ms"],
                     "machine": machine_key(records[t.number])})
    return rows


def _trials(study: optuna.Study, numbers: list[int] | None) -> list[optuna.trial.FrozenTrial]:
    """The trials to re-time, checked before anything is measured: every complete trial with
    weights (over-budget candidates are stored untrained), or the numbered ones, where one that
    is not complete (pick_trial: the error lists the complete ones) or has no weights is a
    StorageError."""
    if numbers is None:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return [t for t in complete if WEIGHTS_ATTR in t.user_attrs]
    trials = [pick_trial(study, n) for n in dict.fromkeys(numbers)]
    untrained = [str(t.number) for t in trials if WEIGHTS_ATTR not in t.user_attrs]
    if untrained:
        raise StorageError(f"trials {', '.join(untrained)} of study {study.study_name!r} have no "
                           "weights (over budget, never trained): nothing to re-time")
    return trials


def _compiled(model: nn.Module, trial: optuna.trial.FrozenTrial,
              exact_float: bool) -> kernels.PackedModel:
    meta = trial.user_attrs["data"]
    return kernels.compile(model, (meta["in_channels"], meta["image_size"], meta["image_size"]),
                           exact_float=exact_float)


def _measured(packed: kernels.PackedModel, threads: int) -> dict[str, Any]:
    """One model measured exactly as a trial's latency is (steady profile, same facts)."""
    profile, facts = measure_latency(packed, threads)
    return {"latency_ms": profile.total_ms, **facts, "interleaved": False, "measured_at": _now()}


def _interleaved(packed: dict[int, kernels.PackedModel], threads: int) -> dict[int, dict]:
    """All models timed side by side: INTERLEAVED_ROUNDS rounds, each profiling every model once
    (INTERLEAVED_REPEATS forwards after profile's warmup) in an order rotated by one per round,
    so no model is always the one timed first or last. A model's latency is the median of its round
    medians and its iqr_ms their interquartile range: the spread over time, which is what
    interleaving is for. (kernels.timing.interleaved_ms times a callable's wall time; this keeps
    Profile.total_ms, the sum of per-layer times that trials store, so numbers compare.)"""
    numbers = list(packed)
    rounds: dict[int, list[float]] = {n: [] for n in numbers}
    for r in range(INTERLEAVED_ROUNDS):
        k = r % len(numbers)
        for n in numbers[k:] + numbers[:k]:
            profile = packed[n].profile(threads=threads, repeats=INTERLEAVED_REPEATS)
            rounds[n].append(profile.total_ms)
    facts = machine_info(threads)
    records = {}
    for n, ms in rounds.items():
        q25, q50, q75 = np.percentile(ms, [25, 50, 75])
        records[n] = {"latency_ms": float(q50), **facts, "repeats": INTERLEAVED_REPEATS,
                      "rounds_ms": ms, "iqr_ms": float(q75 - q25), "interleaved": True,
                      "measured_at": _now()}
    return records


def _store(study: optuna.Study, records: dict[int, dict[str, Any]]) -> None:
    """Merge `records` into the study's "latency_by_machine", one write for the whole run.

    The attribute is read again just before writing, so only a remeasure finishing in the same
    instant on another machine could be lost (last writer wins)."""
    if not records:
        return
    stored = dict(study.user_attrs.get(LATENCY_ATTR, {}))
    for n, record in records.items():
        stored[str(n)] = {**stored.get(str(n), {}), machine_key(record): record}
    study.set_user_attr(LATENCY_ATTR, stored)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
