"""Optuna storage → plain rows. No Dash here, so every piece is unit-testable on a fake study."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search.budget import FINISHED
from search.early_stop import LATENCY_ATTR, RUNGS_ATTR
from search.progress import cpu_models, trial_kind

# trial_kind values whose reason sits in the user attr "fail_reason"
FAILED_KINDS = ("failed", "stopped")
# search.remeasure.LATENCY_ATTR (that module imports torch: not in the web process): the study
# attr holding {trial number: {machine key: record}} of latencies measured again
REMEASURED_ATTR = "latency_by_machine"


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


def dataset_options(datasets: list[str]) -> list[dict[str, str]]:
    """The form's dataset choices, each saying whether it loads offline or downloads first (a
    file check: nothing is loaded)."""
    from search.datasets import available_offline

    return [{"label": f"{name} ({'offline' if available_offline(name) else 'downloads once'})",
             "value": name} for name in datasets]


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
    """One trial of any state: a row of the trials table, and a point of the plot when it has
    an accuracy and a latency.

    `val_accuracy` is the trained accuracy (complete, or infeasible after training), or for a
    pruned trial its accuracy at its last rung (`rung_epoch`); None when never measured.
    `latency_ms` is the measured latency, or the one measured before training.
    """

    number: int
    kind: str  # search.progress.trial_kind: complete, infeasible, pruned, stopped, failed, ...
    val_accuracy: float | None
    latency_ms: float | None
    size_kb: float | None
    train_seconds: float | None
    params: dict[str, Any]
    reason: str | None = None
    rung_epoch: int | None = None
    on_front: bool = False

    @property
    def plotted(self) -> bool:
        """A point of the plot: it has a latency and an accuracy, or it is infeasible (never
        trained, it is drawn in a band under the accuracy axis)."""
        if self.latency_ms is None:
            return False
        return self.val_accuracy is not None or self.kind == "infeasible"


@dataclass(frozen=True)
class StudyView:
    """What the main panel shows for one study: a row per trial, counts by kind, settings."""

    name: str
    rows: list[TrialRow]
    counts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    cpus: list[str] = field(default_factory=list)  # CPU models its latencies were measured on
    finished_at: list[float] = field(default_factory=list)  # POSIX times, complete or pruned

    def of_kind(self, kind: str) -> list[TrialRow]:
        """Rows of one trial_kind that have plot coordinates."""
        return [r for r in self.rows if r.kind == kind and r.plotted]

    @property
    def front(self) -> list[TrialRow]:
        """Front rows by increasing latency, the order a front line is drawn in."""
        return sorted(
            (r for r in self.rows if r.on_front), key=lambda r: (r.latency_ms, -r.val_accuracy)
        )

    @property
    def objectives(self) -> list[str]:
        """What the search optimised (search.settings.OBJECTIVES keys): acc,latency[,size]."""
        return list(self.settings.get("objectives") or ["acc", "latency"])

    @property
    def with_size(self) -> bool:
        """Size is an objective: the front is taken in three objectives."""
        return "size" in self.objectives

    @property
    def param_names(self) -> list[str]:
        """The study's sampled params, in the order the trials first suggested them."""
        return list(dict.fromkeys(name for r in self.rows for name in r.params))

    def signature(self) -> str:
        """Changes whenever the plot, the table or the counts would; lets polling skip
        identical redraws. A digest: the page sends it back on every poll."""
        kinds = repr((self.name, [(r.number, r.kind) for r in self.rows]))
        return hashlib.blake2b(kinds.encode(), digest_size=12).hexdigest()


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


def pareto_front_3(points: Iterable[tuple[int, float, float, float]]) -> set[int]:
    """Numbers of the non-dominated (number, accuracy, latency, size) points: max accuracy, min
    latency, min size. A point is dominated by one at least as good in all three and better in
    one; exact duplicates dominate neither each other.

    In lexicographic order of (-accuracy, latency, size) a point's dominators all come before
    it, and if any does, one on the front does: so each point is checked against the front
    found so far only, O(n x front) instead of O(n^2)."""
    costs = sorted(((-acc, lat, size), number) for number, acc, lat, size in points)
    front: list[tuple[float, float, float]] = []
    numbers = set()
    for cost, number in costs:
        if not any(f[0] <= cost[0] and f[1] <= cost[1] and f[2] <= cost[2] and f != cost
                   for f in front):
            front.append(cost)
            numbers.add(number)
    return numbers


def knee_point(front: list[TrialRow]) -> TrialRow | None:
    """The front point farthest from the line joining the front's two extremes, with accuracy
    and latency each scaled to 0..1 over the front: where more latency stops buying much
    accuracy. None for fewer than three points, or a straight front."""
    if len(front) < 3:
        return None
    lats = [r.latency_ms for r in front]
    accs = [r.val_accuracy for r in front]
    lat_low, acc_low = min(lats), min(accs)
    lat_span, acc_span = (max(lats) - lat_low) or 1.0, (max(accs) - acc_low) or 1.0

    def scaled(r: TrialRow) -> tuple[float, float]:
        return (r.latency_ms - lat_low) / lat_span, (r.val_accuracy - acc_low) / acc_span

    (x0, y0), (x1, y1) = scaled(front[0]), scaled(front[-1])
    length = math.hypot(x1 - x0, y1 - y0) or 1.0

    def distance(r: TrialRow) -> float:
        x, y = scaled(r)
        return abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length

    best = max(front[1:-1], key=distance)
    return best if distance(best) > 1e-9 else None


def is_number(value: Any) -> bool:
    """int or float, not bool (a categorical True/False is no quantity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    if not is_number(value):
        return None
    return float(value) if math.isfinite(value) else None


def was_trained(metrics: dict[str, Any]) -> bool:
    """True when a trial finished training: only then do its metrics hold a test accuracy."""
    return "test_accuracy" in metrics


def _last_rung(trial: FrozenTrial) -> tuple[float | None, int | None]:
    """(accuracy, epoch) at the highest rung a trial recorded; (None, None) without rungs."""
    rungs = trial.user_attrs.get(RUNGS_ATTR)
    if not isinstance(rungs, dict):
        return None, None
    epochs = [int(e) for e in rungs if str(e).isdigit()]
    if not epochs:
        return None, None
    epoch = max(epochs)
    return _finite(rungs[str(epoch)]), epoch


def _reason(trial: FrozenTrial, kind: str) -> str | None:
    attrs = trial.user_attrs
    if kind == "infeasible":
        return str(attrs["infeasible"])
    if kind == "pruned":
        return attrs.get("prune_reason")
    if kind in FAILED_KINDS:
        return attrs.get("fail_reason")
    return None


def trial_row(trial: FrozenTrial) -> TrialRow:
    """The row of one trial, whatever its state (on_front is decided for the whole study)."""
    attrs = trial.user_attrs
    kind = trial_kind(trial)
    metrics = attrs.get("metrics") or {}
    values = trial.values if trial.state == TrialState.COMPLETE else None
    accuracy = latency = None
    rung_epoch = None
    if values is not None and len(values) >= 2:
        latency = _finite(values[1])
        # an infeasible trial's 0 is no accuracy unless it was trained (then over budget)
        if kind == "complete" or was_trained(metrics):
            accuracy = _finite(values[0])
    elif kind == "pruned":
        accuracy, rung_epoch = _last_rung(trial)
    if latency is None:
        latency = _finite(attrs.get(LATENCY_ATTR))
    size = _finite(metrics.get("packed_kb"))
    return TrialRow(
        number=trial.number,
        kind=kind,
        val_accuracy=accuracy,
        latency_ms=latency,
        size_kb=size if size is not None else _finite(attrs.get("packed_kb_before_training")),
        train_seconds=_finite(metrics.get("train_seconds")),
        params=trial.params,  # read only: the storage's own dict (deepcopy=False)
        reason=_reason(trial, kind),
        rung_epoch=rung_epoch,
    )


def _study_id(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def load_study_view(storage: BaseStorage, name: str) -> StudyView | None:
    """Every trial of the study as a row, or None while the study does not exist yet.

    The front is taken over the feasible complete trials, as Optuna's best_trials does, in the
    study's objectives (accuracy and latency, and size when the search minimised it too).
    """
    study_id = _study_id(storage, name)
    if study_id is None:
        return None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    rows = [trial_row(t) for t in trials]
    complete = [r for r in rows if r.kind == "complete" and r.plotted]
    settings = storage.get_study_user_attrs(study_id).get("bnnx") or {}
    if "size" in (settings.get("objectives") or ()):
        front = pareto_front_3((r.number, r.val_accuracy, r.latency_ms, r.size_kb)
                               for r in complete if r.size_kb is not None)
    else:
        front = pareto_front((r.number, r.val_accuracy, r.latency_ms) for r in complete)
    rows = [replace(r, on_front=True) if r.number in front else r for r in rows]
    counts = Counter(r.kind for r in rows)
    finished_at = sorted(t.datetime_complete.timestamp() for t in trials
                         if t.state in FINISHED and t.datetime_complete is not None)
    return StudyView(name=name, rows=rows, counts=dict(counts), settings=settings,
                     cpus=cpu_models(trials), finished_at=finished_at)


@dataclass(frozen=True)
class TrialDetail:
    """Everything the detail panel shows about one trial, straight from its user attrs."""

    number: int
    kind: str
    reason: str | None
    params: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    learning_curve: list[dict[str, Any]]
    layer_latency: list[dict[str, Any]]
    isa: str | None
    latency_before_ms: float | None = None
    size_before_kb: float | None = None
    rungs: dict[int, float] = field(default_factory=dict)
    pruned_at_epoch: int | None = None
    measured_on: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # spaces.summary's to_dict()
    space_knobs: dict[str, Any] = field(default_factory=dict)  # the study's space, by path
    remeasured: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine -> record

    @property
    def trained(self) -> bool:
        return was_trained(self.metrics)


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
    kind = trial_kind(trial)
    rungs = attrs.get(RUNGS_ATTR) if isinstance(attrs.get(RUNGS_ATTR), dict) else {}
    study_attrs = storage.get_study_user_attrs(study_id)
    knobs = (study_attrs.get("bnnx") or {}).get("space_knobs")
    remeasured = (study_attrs.get(REMEASURED_ATTR) or {}).get(str(number))
    return TrialDetail(
        number=trial.number,
        kind=kind,
        reason=_reason(trial, kind),
        params=dict(trial.params),
        config=attrs.get("config") or {},
        metrics=attrs.get("metrics") or {},
        learning_curve=list(attrs.get("learning_curve") or []),
        layer_latency=list(attrs.get("layer_latency") or []),
        isa=attrs.get("isa"),
        latency_before_ms=_finite(attrs.get(LATENCY_ATTR)),
        size_before_kb=_finite(attrs.get("packed_kb_before_training")),
        rungs={int(e): a for e, a in rungs.items() if str(e).isdigit()},
        pruned_at_epoch=attrs.get("pruned_at_epoch"),
        measured_on=attrs.get("measured_on") or {},
        summary=attrs.get("summary") if isinstance(attrs.get("summary"), dict) else {},
        space_knobs=knobs if isinstance(knobs, dict) else {},
        remeasured=remeasured if isinstance(remeasured, dict) else {},
    )


def pick_export_trial(view: StudyView | None, selected: int | None) -> int | None:
    """The selected trial if it completed, else the most accurate trial on the front."""
    if view is None or not view.front:
        return None
    if selected is not None and any(r.number == selected for r in view.of_kind("complete")):
        return selected
    return max(view.front, key=lambda r: (r.val_accuracy, -r.latency_ms)).number
