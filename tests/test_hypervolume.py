"""Exact hypervolume against hand-computed cases and a Monte-Carlo estimate."""

import numpy as np
import pytest

from search.hypervolume import default_reference, hypervolume, hypervolume_history

BNNX = ["maximize", "minimize"]
BNNX3 = ["maximize", "minimize", "minimize"]


def monte_carlo(points, directions, reference, samples=200_000, seed=0):
    """Share of random samples in the box [best corner, reference] that some point dominates."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    pts, ref = np.asarray(points, float) * sign, np.asarray(reference, float) * sign
    low = pts.min(axis=0)
    x = np.random.default_rng(seed).uniform(low, ref, size=(samples, len(ref)))  # (S, d)
    covered = np.any(np.all(pts[None] <= x[:, None], axis=2), axis=1)
    return covered.mean() * np.prod(ref - low)


def test_hand_computed_2d_bnnx_directions():
    # accuracy up, latency down; reference (0, 10): rectangles 0.5x8 and 0.9x5 overlap 0.5x5
    points = [(0.5, 2.0), (0.9, 5.0)]
    assert hypervolume(points, BNNX, (0.0, 10.0)) == pytest.approx(0.5 * 8 + 0.9 * 5 - 0.5 * 5)


def test_dominated_duplicates_and_points_beyond_reference_add_nothing():
    front = [(0.5, 2.0), (0.9, 5.0)]
    extra = [(0.4, 3.0), (0.5, 2.0), (0.9, 5.0), (0.95, 12.0), (0.0, 1.0), (0.8, 10.0),
             (float("nan"), 1.0)]
    assert hypervolume(front + extra, BNNX, (0.0, 10.0)) == hypervolume(front, BNNX, (0.0, 10.0))
    assert hypervolume([(0.95, 12.0)], BNNX, (0.0, 10.0)) == 0.0
    assert hypervolume([], BNNX, (0.0, 10.0)) == 0.0


def test_hand_computed_3d():
    # minimize all; reference (4, 4, 4): two boxes 3x1x2 and 1x3x3 overlapping 1x1x2
    points = [(1, 3, 2), (3, 1, 1)]
    assert hypervolume(points, ["minimize"] * 3, (4, 4, 4)) == pytest.approx(6 + 9 - 2)
    assert hypervolume([(1, 1, 1)], ["minimize"] * 3, (4, 4, 4)) == pytest.approx(27)


@pytest.mark.parametrize("dims", [2, 3])
def test_matches_monte_carlo_on_random_points(dims):
    rng = np.random.default_rng(dims)
    directions = BNNX if dims == 2 else BNNX3
    points = np.column_stack([rng.uniform(0.3, 1.0, 25), *rng.uniform(0.1, 9.0, (dims - 1, 25))])
    points = np.vstack([points, points[:3]])  # duplicates
    reference = (0.0, *[8.0] * (dims - 1))  # some points lie beyond it
    exact = hypervolume(points, directions, reference)
    assert exact == pytest.approx(monte_carlo(points, directions, reference), rel=0.02)


def test_3d_with_a_constant_third_objective_is_the_2d_area():
    points = [(0.5, 2.0, 1.0), (0.9, 5.0, 1.0), (0.4, 3.0, 1.0)]
    area = hypervolume([p[:2] for p in points], BNNX, (0.0, 10.0))
    assert hypervolume(points, BNNX3, (0.0, 10.0, 3.0)) == pytest.approx(2.0 * area)


def test_history_is_the_front_hypervolume_after_each_trial():
    values = [(0.5, 2.0), (0.4, 3.0), (0.9, 5.0), (0.95, 12.0), (0.9, 1.0)]
    history = hypervolume_history(values, BNNX, (0.0, 10.0))
    expected = [hypervolume(values[: i + 1], BNNX, (0.0, 10.0)) for i in range(len(values))]
    assert history == pytest.approx(expected)
    assert history[1] == history[0] and history[3] == history[2] < history[4]
    assert hypervolume_history([], BNNX, (0.0, 10.0)) == []


def test_history_3d_matches_recomputing():
    rng = np.random.default_rng(7)
    values = np.column_stack([rng.uniform(0, 1, 30), rng.uniform(0, 5, 30), rng.uniform(0, 5, 30)])
    history = hypervolume_history(values, BNNX3, (0.0, 4.0, 4.0))
    assert history == pytest.approx(
        [hypervolume(values[: i + 1], BNNX3, (0.0, 4.0, 4.0)) for i in range(30)])
    assert np.all(np.diff(history) >= 0)


def test_default_reference_budget_or_first_completed_trial():
    completed = [(0.6, 1.5, 20.0), (0.9, 0.5, 8.0)]
    two = [v[:2] for v in completed]
    assert default_reference(3.0, two) == (0.0, 3.0)
    assert default_reference(None, two) == (0.0, 3.0)  # 2 x the first trial's 1.5 ms
    assert default_reference(None, two, size_budget_kb=50.0) == (0.0, 3.0)  # size: no objective
    assert default_reference(None, completed, objectives=3) == (0.0, 3.0, 40.0)
    assert default_reference(5.0, completed, objectives=3) == (0.0, 5.0, 40.0)
    assert default_reference(None, completed, 50.0, objectives=3) == (0.0, 3.0, 50.0)
    assert default_reference(5.0, []) == (0.0, 5.0)
    assert default_reference(5.0, [], 50.0, objectives=3) == (0.0, 5.0, 50.0)
    with pytest.raises(ValueError, match="no completed trial"):
        default_reference(None, [])
    with pytest.raises(ValueError, match="no completed trial"):
        default_reference(5.0, [], objectives=3)
    with pytest.raises(ValueError, match="budgets"):
        default_reference(0.0, two)
    with pytest.raises(ValueError, match="3 objectives each"):
        default_reference(None, two, objectives=3)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        hypervolume([(1, 2, 3, 4)], ["minimize"] * 4, (5, 5, 5, 5))
    with pytest.raises(ValueError, match="directions"):
        hypervolume([(1, 2)], ["maximize", "smaller"], (0, 5))
    with pytest.raises(ValueError):
        hypervolume([(1, 2, 3)], BNNX, (0, 5))
