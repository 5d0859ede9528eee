"""Optuna storage → plain rows. No Dash here, so every piece is unit-testable on a fake study."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

# Knobs shown on hover, in this order; params a space does not sample are skipped.
HOVER_PARAMS = (
    "width",
    "depth",
    "blocks_per_stage",
    "input_quantizer",
    "weight_quantizer",
    "lr",
    "batch_size",
)


def open_storage(spec: str) -> BaseStorage:
    """The storage the search processes write to; created when missing, so a first run works."""
    from search.storage import open_storage as open_search_storage

    return open_search_storage(spec, create=True)


def available_datasets() -> list[str]:
    """Datasets the search knows; only `digits` until search.datasets says otherwise."""
    try:
        from search.datasets import DATASETS
    except ImportError:
        return ["digits"]
    return list(DATASETS)


@dataclass(frozen=True)
class StudyInfo:
    """One entry of the study dropdown."""

    name: str
    study_id: int
    dataset: str | None


def list_studies(storage: BaseStorage) -> list[StudyInfo]:
    """All studies, newest first (ids grow with creation in both journal and RDB storage)."""
    infos = [
        StudyInfo(
            name=s.study_name,
            study_id=s._study_id,
            dataset=(s.user_attrs.get("bnnx") or {}).get("dataset"),
        )
        for s in storage.get_all_studies()
    ]
    return sorted(infos, key=lambda info: info.study_id, reverse=True)


@dataclass(frozen=True)
class TrialRow:
    """A completed trial as a point of the accuracy/latency scatter."""

    number: int
    val_accuracy: float
    latency_ms: float
    params: dict[str, Any]
    on_front: bool


@dataclass(frozen=True)
class StudyView:
    """What the main panel shows for one study: plotted rows plus counts by state."""

    name: str
    rows: list[TrialRow]
    counts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def front(self) -> list[TrialRow]:
        """Front rows by increasing latency, the order a front line is drawn in."""
        return sorted(
            (r for r in self.rows if r.on_front), key=lambda r: (r.latency_ms, -r.val_accuracy)
        )

    def signature(self) -> tuple:
        """Changes whenever the plot or the counts would; lets polling skip identical redraws."""
        return (self.name, tuple(r.number for r in self.rows), tuple(sorted(self.counts.items())))


def pareto_front(points: Iterable[tuple[int, float, float]]) -> set[int]:
    """Numbers of the non-dominated (number, accuracy, latency) points: max accuracy, min latency.

    Exact duplicates dominate neither each other, so all copies of a front point stay on it.
    """
    ordered = sorted(points, key=lambda p: (p[2], -p[1]))
    front: set[int] = set()
    best_acc, best_lat = -math.inf, math.inf
    for number, acc, lat in ordered:
        if acc > best_acc:
            best_acc, best_lat = acc, lat
            front.add(number)
        elif acc == best_acc and lat == best_lat:
            front.add(number)
    return front


def _is_point(trial: FrozenTrial) -> bool:
    values = trial.values
    return (
        trial.state == TrialState.COMPLETE
        and values is not None
        and len(values) >= 2
        and all(math.isfinite(v) for v in values[:2])
    )


def _study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def load_study_view(storage: BaseStorage, name: str) -> StudyView | None:
    """The study's plotted rows and state counts, or None while the study does not exist yet."""
    study_id = _study_id(storage, name)
    if study_id is None:
        return None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    counts = Counter(t.state.name.lower() for t in trials)
    points = [t for t in trials if _is_point(t)]
    front = pareto_front((t.number, t.values[0], t.values[1]) for t in points)
    rows = [
        TrialRow(
            number=t.number,
            val_accuracy=float(t.values[0]),
            latency_ms=float(t.values[1]),
            params=dict(t.params),
            on_front=t.number in front,
        )
        for t in points
    ]
    settings = storage.get_study_user_attrs(study_id).get("bnnx") or {}
    return StudyView(name=name, rows=rows, counts=dict(counts), settings=settings)


@dataclass(frozen=True)
class TrialDetail:
    """Everything the detail panel shows about one trial, straight from its user attrs."""

    number: int
    state: str
    params: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    learning_curve: list[dict[str, Any]]
    layer_latency: list[dict[str, Any]]
    isa: str | None
    fail_reason: str | None


def load_trial_detail(storage: BaseStorage, study_name: str, number: object) -> TrialDetail | None:
    """The trial `number` of `study_name`, or None when either does not exist."""
    study_id = _study_id(storage, study_name)
    if study_id is None or isinstance(number, bool) or not isinstance(number, int):
        return None
    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError:
        return None
    trial = storage.get_trial(trial_id)
    attrs = trial.user_attrs
    return TrialDetail(
        number=trial.number,
        state=trial.state.name.lower(),
        params=dict(trial.params),
        config=attrs.get("config") or {},
        metrics=attrs.get("metrics") or {},
        learning_curve=list(attrs.get("learning_curve") or []),
        layer_latency=list(attrs.get("layer_latency") or []),
        isa=attrs.get("isa"),
        fail_reason=attrs.get("fail_reason"),
    )


def pick_export_trial(view: StudyView | None, selected: int | None) -> int | None:
    """The selected trial if it is plotted, else the most accurate trial on the front."""
    if view is None or not view.rows:
        return None
    if selected is not None and any(r.number == selected for r in view.rows):
        return selected
    return max(view.front, key=lambda r: (r.val_accuracy, -r.latency_ms)).number
