"""Exact hypervolume of a study's front, to follow a search's progress in one number.

The hypervolume is the volume of objective space that the points dominate, bounded by a
reference point (the worst corner). It only means something against a fixed reference, so a
study uses one reference throughout (see `default_reference`). Points are few (a study's front),
so plain exact sweeps suffice: 2 objectives sort and sweep, 3 sum 2D slices along the last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIRECTIONS = ("maximize", "minimize")
HYPERVOLUME_ATTR = "hypervolume"  # trial attr: the front's hypervolume once that trial is in
HV_REFERENCE_ATTR = "hv_reference"  # study attr: the reference point of every HYPERVOLUME_ATTR
FIRST_TRIAL_MARGIN = 2.0  # reference = 2x the first completed trial's latency (and size): see
# default_reference; twice a typical early (random-sampled) model leaves room for slower ones


def hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str],
                reference: Sequence[float]) -> float:
    """The exact volume dominated by `points` and bounded by `reference`, for 2 or 3 objectives.

    A point contributes only where it is strictly better than the reference in every objective;
    dominated points and duplicates add nothing, as they cover no new volume.
    """
    pts, ref = _as_minimized(points, directions, reference)
    pts = pts[np.all(pts < ref, axis=1)]  # NaN compares false: dropped too
    if len(pts) == 0:
        return 0.0
    return _hv2d(pts, ref) if len(ref) == 2 else _hv3d(pts, ref)


def hypervolume_history(values_in_order: Sequence[Sequence[float]], directions: Sequence[str],
                        reference: Sequence[float]) -> list[float]:
    """The hypervolume of the front after each completed trial, in completion order.

    Only the front is kept: a trial that the front dominates (or that the reference excludes)
    repeats the previous value without recomputing.
    """
    _, ref = _as_minimized([], directions, reference)
    front = np.empty((0, len(ref)))
    history: list[float] = []
    for values in values_in_order:
        p, _ = _as_minimized([values], directions, reference)
        p = p[0]
        if np.all(p < ref) and not np.any(np.all(front <= p, axis=1)):
            front = np.vstack([front[~np.all(p <= front, axis=1)], p])
            history.append(hypervolume(front, ["minimize"] * len(ref), ref))
        else:
            history.append(history[-1] if history else 0.0)
    return history


def default_reference(latency_budget_ms: float | None, completed: Sequence[Sequence[float]],
                      size_budget_kb: float | None = None,
                      objectives: int = 2) -> tuple[float, ...]:
    """The reference of a bnnx study: its worst corner, fixed for the study's lifetime.

    Objectives are (val_accuracy maximize, latency_ms minimize[, packed_kb minimize]);
    `objectives` says whether there are 2 or 3. Per objective:
    - accuracy: 0 (over-budget trials stored with accuracy 0 thus add nothing);
    - latency: the study's budget (--max-latency-ms) when it has one, since a model over budget
      is worthless; otherwise FIRST_TRIAL_MARGIN x the latency of the first completed trial
      (`completed[0]`, in completion order), which never changes once that trial exists;
    - packed size: likewise, --max-size-kb or FIRST_TRIAL_MARGIN x the first trial's size.
    `completed` holds the completed trials' values in completion order; it may be empty only when
    every minimized objective has a budget.
    """
    if objectives not in (2, 3):
        raise ValueError(f"bnnx studies have 2 or 3 objectives, got {objectives}")
    if any(len(v) != objectives for v in completed):
        raise ValueError(f"completed values must have {objectives} objectives each")
    budgets = (latency_budget_ms, size_budget_kb)[: objectives - 1]
    reference = [0.0]
    for i, budget in enumerate(budgets, start=1):
        if budget is not None and not budget > 0:
            raise ValueError(f"budgets must be > 0, got {budget}")
        if budget is None and not completed:
            raise ValueError("no completed trial and no budget for every minimized objective: "
                             "no reference point yet")
        reference.append(float(budget) if budget is not None
                         else FIRST_TRIAL_MARGIN * float(completed[0][i]))
    return tuple(reference)


def _as_minimized(points: Sequence[Sequence[float]], directions: Sequence[str],
                  reference: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, d) and reference (d,) with maximized objectives negated, after checking that
    their shapes and the directions agree."""
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or len(ref) not in (2, 3) or len(directions) != len(ref):
        raise ValueError(f"hypervolume takes 2 or 3 objectives: got {len(directions)} "
                         f"directions and a reference of shape {ref.shape}")
    if any(d not in DIRECTIONS for d in directions):
        raise ValueError(f"directions must be {' or '.join(DIRECTIONS)}, got {list(directions)}")
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))  # (n, d)
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return pts * sign, ref * sign


def _hv2d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Area for minimized (n, 2) points all strictly inside `ref`: sweep x upwards; each point
    adds the strip between its y and the lowest y seen before it, out to ref's x."""
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # by x, then y
    best_before = np.minimum.accumulate(np.concatenate([[ref[1]], pts[:-1, 1]]))
    return float(np.sum((ref[0] - pts[:, 0]) * np.maximum(best_before - pts[:, 1], 0.0)))


def _hv3d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Volume for minimized (n, 3) points: between consecutive z values, the points with lower z
    cover a constant 2D area; sum area x slab height up to ref's z."""
    pts = pts[np.argsort(pts[:, 2], kind="stable")]
    tops = np.append(pts[1:, 2], ref[2])
    return float(sum(_hv2d(pts[: i + 1, :2], ref[:2]) * (tops[i] - pts[i, 2])
                     for i in range(len(pts)) if tops[i] > pts[i, 2]))
