"""A study's trials for the analysis views: hypervolume history, optimisation history, parameter
importance per objective, and the knobs' values. No Dash and no plotting here.

Importance is the one costly computation (Optuna's PED-ANOVA evaluator over every trained
trial), so it runs only when its view is open, and once per study and trained-trial count.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from search.hypervolume import HV_REFERENCE_ATTR, HYPERVOLUME_ATTR
from search.progress import trial_kind

MIN_IMPORTANCE_TRIALS = 10  # PED-ANOVA compares the top 10% with the rest: fewer say nothing
MAX_CATEGORIES = 12  # a categorical knob with more values is no marginal view's group


@dataclass(frozen=True)
class StudyTrials:
    """The trained, feasible trials of one study (those on which every objective means what it
    says) with the study's objectives and hypervolume reference point."""

    name: str
    trained: list[FrozenTrial]
    metric_names: list[str]
    directions: list[str]  # "maximize" / "minimize", one per objective
    hv_reference: list[float] | None

    def objective(self, index: int) -> list[float]:
        """The values of objective `index`, one per trained trial."""
        return [t.values[index] for t in self.trained]


def load_study_trials(storage: BaseStorage, name: str) -> StudyTrials | None:
    """The study's complete, feasible trials by number; None when there is no such study."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    names = optuna.load_study(study_name=name, storage=storage).metric_names
    reference = storage.get_study_user_attrs(study_id).get(HV_REFERENCE_ATTR)
    return StudyTrials(
        name=name,
        trained=[t for t in trials if trial_kind(t) == "complete" and t.values is not None],
        metric_names=names or [f"objective {i}" for i in range(len(directions))],
        directions=directions,
        hv_reference=list(reference) if isinstance(reference, list) else None,
    )


def hypervolume_points(study: StudyTrials) -> list[tuple[int, float]]:
    """(trial number, hypervolume once it was in) in completion order, from the value each
    trained trial stored: the search computed it, nothing is recomputed here."""
    stored = [t for t in study.trained if isinstance(t.user_attrs.get(HYPERVOLUME_ATTR),
                                                     (int, float))]
    stored.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
    return [(t.number, float(t.user_attrs[HYPERVOLUME_ATTR])) for t in stored]


def best_so_far(values: list[float], direction: str) -> list[float]:
    """The running best of `values` (max when maximizing, else min)."""
    pick = max if direction == "maximize" else min
    best: list[float] = []
    for value in values:
        best.append(value if not best else pick(best[-1], value))
    return best


def categorical_knobs(study: StudyTrials) -> list[str]:
    """Knobs sampled from a list of choices (family, quantizers, widths...), in the order the
    trials first suggested them."""
    knobs = {}
    for trial in study.trained:
        for name, dist in trial.distributions.items():
            if isinstance(dist, CategoricalDistribution) and len(dist.choices) <= MAX_CATEGORIES:
                knobs.setdefault(name, None)
    return list(knobs)


def param_importances(study: StudyTrials) -> dict[str, dict[str, float]] | str:
    """{objective: {knob: importance}} by Optuna's default evaluator, or why there is none."""
    if len(study.trained) < MIN_IMPORTANCE_TRIALS:
        return (f"Parameter importance needs at least {MIN_IMPORTANCE_TRIALS} trained trials; "
                f"this study has {len(study.trained)} so far.")
    if not any(t.params for t in study.trained):
        return "No sampled knobs: every trial was enqueued with a fixed configuration."
    shadow = optuna.create_study(
        directions=[StudyDirection[d.upper()] for d in study.directions]
    )  # in memory: the evaluator reads the trained trials only, the storage is never written
    shadow.add_trials(study.trained)
    result: dict[str, dict[str, float]] = {}
    for i, (name, direction) in enumerate(zip(study.metric_names, study.directions,
                                              strict=True)):
        sign = -1.0 if direction == "maximize" else 1.0  # the evaluator minimizes `target`

        def target(trial: FrozenTrial, i: int = i, sign: float = sign) -> float:
            return sign * trial.values[i]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns that target is minimized: it is meant
            try:
                result[name] = optuna.importance.get_param_importances(shadow, target=target)
            except (ValueError, RuntimeError) as exc:
                return f"Parameter importance could not be computed: {exc}"
    return result


class ImportanceCache:
    """Importances per (study, trained-trial count); the last few studies only."""

    def __init__(self, size: int = 8) -> None:
        self._entries: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, study: StudyTrials) -> dict[str, dict[str, float]] | str:
        key = (study.name, len(study.trained))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = param_importances(study)
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value
