"""Explorer logic without a browser: storage → rows, front, figures, form, paths, jobs, export."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial
from stand_ins import SIGNALLED_SEARCH

from explorer import actions, callbacks, data, figures, forms, jobs, panels, paths, table, urlstate
from explorer.actions import Explorer
from explorer.callbacks import clicked_row, clicked_trial

REPO = Path(__file__).resolve().parents[1]

DISTRIBUTIONS = {
    "width": CategoricalDistribution([8, 16, 32, 64]),
    "depth": IntDistribution(1, 3),
    "blocks_per_stage": IntDistribution(1, 2),
    "input_quantizer": CategoricalDistribution(["ste", "clipped_ste", "approx_sign"]),
    "weight_quantizer": CategoricalDistribution(["sign", "xnor"]),
    "lr": FloatDistribution(1e-3, 3e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64]),
}


def complete_trial(acc: float, latency: float, width: int = 16) -> optuna.trial.FrozenTrial:
    """A COMPLETE trial carrying every user attr the search writes."""
    params = {
        "width": width,
        "depth": 2,
        "blocks_per_stage": 1,
        "input_quantizer": "clipped_ste",
        "weight_quantizer": "sign",
        "lr": 0.01,
        "batch_size": 32,
    }
    metrics = {
        "val_accuracy": acc,
        "test_accuracy": acc - 0.01,
        "latency_ms": latency,
        "params_binary": 12_345,
        "params_float": 678,
        "packed_bytes": 2_048,
        "fp32_bytes": 52_000,
        "binary_macs": 1_500_000,
        "float_macs": 20_000,
        "train_seconds": 3.2,
    }
    return create_trial(
        state=TrialState.COMPLETE,
        values=[acc, latency],
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs={
            "config": {"arch": {"family": "plain", "width": width}, "quant": {}, "train": {}},
            "metrics": metrics,
            "learning_curve": [
                {"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.5, "val_loss": 1.0,
                 "val_accuracy": acc * e / 2}
                for e in (1, 2)
            ],
            "layer_latency": [
                {"name": "conv1", "kind": "bconv3x3", "ms": latency * 0.7},
                {"name": "fc", "kind": "float:linear", "ms": latency * 0.3},
            ],
            "isa": "avx2",
        },
    )  # fmt: skip


PARAMS = complete_trial(0.5, 1.0).params
BEFORE = {
    "latency_before_training_ms": 0.8,
    "packed_kb_before_training": 3.5,
    "measured_on": {"cpu": "Test CPU", "isa": "avx2", "threads": 1},
    "config": {"arch": {"family": "plain"}},
}


def failed_trial(reason: str = "RuntimeError: boom") -> optuna.trial.FrozenTrial:
    """Failed after sampling (its params and config recorded), as the objective leaves it."""
    attrs = {"fail_reason": reason, "config": BEFORE["config"]}
    return create_trial(
        state=TrialState.FAIL, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs=attrs
    )


def infeasible_trial(latency: float = 7.5, trained_acc: float | None = None):
    """Over the latency budget: untrained (values[0] = 0) unless `trained_acc` is given."""
    attrs = {
        **BEFORE,
        "infeasible": f"latency {latency:.4g} ms > budget 5 ms",
        "metrics": {"val_accuracy": 0.0, "latency_ms": latency, "packed_kb": 4.0},
    }
    if trained_acc is not None:  # trained, then measured over the budget
        attrs["metrics"] = {**attrs["metrics"], "val_accuracy": trained_acc, "test_accuracy": 0.9}
        attrs["learning_curve"] = [{"epoch": 1, "val_accuracy": trained_acc}]
    return create_trial(
        state=TrialState.COMPLETE,
        values=[trained_acc or 0.0, latency],
        params=PARAMS,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
    )


def pruned_trial(rungs: dict[str, float], latency: float = 0.8):
    epoch = max(rungs, key=int)
    attrs = {
        **BEFORE,
        "latency_before_training_ms": latency,
        "rungs": rungs,
        "pruned_at_epoch": int(epoch),
        "prune_reason": f"epoch {epoch}: val 40.0% below the top third (60.0%) of 3 trials",
    }
    return create_trial(
        state=TrialState.PRUNED, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs=attrs
    )


@pytest.fixture
def storage(tmp_path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(tmp_path / "bnnx.journal")))


def make_study(storage, name: str, points: list[tuple[float, float]], failed: int = 0, **settings):
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"]
    )
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val_accuracy", "latency_ms"])
    study.set_user_attr(
        "bnnx",
        {"dataset": "digits", "space": "quick", "trials": 9, "epochs": 2, "seed": 0, **settings},
    )
    for acc, latency in points:
        study.add_trial(complete_trial(acc, latency))
    for _ in range(failed):
        study.add_trial(failed_trial())
    return study


# -- pareto front ------------------------------------------------------------------------------


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = [(0, 0.90, 1.0), (1, 0.95, 2.0), (2, 0.80, 1.5), (3, 0.70, 0.5), (4, 0.95, 3.0)]
    assert data.pareto_front(points) == {0, 1, 3}


def test_pareto_front_ties() -> None:
    # exact duplicates both stay; equal accuracy at higher latency and equal latency at lower
    # accuracy are dominated
    points = [(0, 0.9, 1.0), (1, 0.9, 1.0), (2, 0.9, 2.0), (3, 0.8, 1.0)]
    assert data.pareto_front(points) == {0, 1}
    assert data.pareto_front([]) == set()


# -- storage → rows --------------------------------------------------------------------------


def test_study_view_rows_front_and_counts(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)], failed=2)
    view = data.load_study_view(storage, "s1")
    assert view is not None
    assert [r.number for r in view.rows] == [0, 1, 2, 3, 4]  # every trial, failed included
    assert [r.number for r in view.of_kind("complete")] == [0, 1, 2]
    assert [r.number for r in view.front] == [0, 1]  # by latency
    assert view.counts == {"complete": 3, "failed": 2}
    assert view.rows[0].params["width"] == 16
    assert view.rows[0].size_kb is None and view.rows[0].train_seconds == 3.2
    assert view.rows[3].reason == "RuntimeError: boom" and not view.rows[3].plotted
    assert view.settings["dataset"] == "digits"
    assert data.load_study_view(storage, "missing") is None


def test_running_trials_are_counted_not_plotted(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    study.ask()  # a RUNNING trial, as while a search runs
    view = data.load_study_view(storage, "s1")
    assert view.counts == {"complete": 1, "running": 1}
    assert [(r.kind, r.plotted) for r in view.rows] == [("complete", True), ("running", False)]


def test_rows_of_every_kind(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    for trial in (
        infeasible_trial(),
        infeasible_trial(latency=6.0, trained_acc=0.97),
        pruned_trial({"1": 0.3, "3": 0.4}),
        failed_trial("stopped"),
        failed_trial("budget reached"),
        create_trial(state=TrialState.PRUNED, params=PARAMS, distributions=DISTRIBUTIONS),
    ):
        study.add_trial(trial)
    study.enqueue_trial({"width": 8})
    rows = data.load_study_view(storage, "s1").rows
    kinds = [r.kind for r in rows]
    assert kinds == [
        "complete",
        "infeasible",
        "infeasible",
        "pruned",
        "stopped",
        "stopped",
        "pruned",
        "waiting",
    ]
    untrained, trained, pruned = rows[1:4]
    assert untrained.val_accuracy is None and untrained.latency_ms == 7.5  # no accuracy of 0
    assert untrained.size_kb == 4.0 and untrained.reason.startswith("latency 7.5 ms > budget")
    assert untrained.plotted and trained.val_accuracy == 0.97  # drawn in the floor band
    assert not trained.on_front  # infeasible: never on the front, however good
    assert (pruned.val_accuracy, pruned.rung_epoch, pruned.latency_ms) == (0.4, 3, 0.8)
    assert pruned.size_kb == 3.5 and pruned.reason.startswith("epoch 3: val 40.0%")
    assert rows[4].reason == "stopped" and rows[5].reason == "budget reached"
    assert not rows[6].plotted  # pruned without rungs: in the table, not on the plot


def test_signature_changes_with_any_trial_state(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    trial = study.ask()
    first = data.load_study_view(storage, "s1").signature()
    assert data.load_study_view(storage, "s1").signature() == first  # nothing new: no redraw
    study.tell(trial, state=TrialState.PRUNED)  # same count of trials, another state
    second = data.load_study_view(storage, "s1").signature()
    assert second != first and len(second) == 24  # a short digest, sent back on every poll


def test_param_names_in_first_suggested_order(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    extra = {**DISTRIBUTIONS, "bop_threshold": FloatDistribution(1e-8, 1e-4, log=True)}
    study.add_trial(
        create_trial(
            state=TrialState.FAIL, params={**PARAMS, "bop_threshold": 1e-6}, distributions=extra
        )
    )
    assert data.load_study_view(storage, "s1").param_names == [*DISTRIBUTIONS, "bop_threshold"]


def _row(number: int, acc: float, latency: float) -> data.TrialRow:
    return data.TrialRow(number, "complete", acc, latency, None, None, {}, on_front=True)


def test_knee_point() -> None:
    # accuracy saturates after trial 1: far from the line joining trials 0 and 3
    front = [_row(0, 0.5, 1.0), _row(1, 0.9, 2.0), _row(2, 0.92, 6.0), _row(3, 0.93, 10.0)]
    assert data.knee_point(front).number == 1
    assert data.knee_point(front[:2]) is None
    assert data.knee_point([_row(0, 0.5, 1.0), _row(1, 0.6, 2.0), _row(2, 0.7, 3.0)]) is None


def test_list_studies_newest_first(storage) -> None:
    make_study(storage, "old", [])
    make_study(storage, "new", [])
    infos = data.list_studies(storage)
    assert [i.name for i in infos] == ["new", "old"]
    assert infos[0].dataset == "digits"


def test_trial_detail(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)], failed=1)
    detail = data.load_trial_detail(storage, "s1", 0)
    assert detail.metrics["packed_bytes"] == 2048
    assert detail.learning_curve[1]["epoch"] == 2
    assert detail.layer_latency[0]["name"] == "conv1"
    assert detail.isa == "avx2" and detail.kind == "complete" and detail.trained
    failed = data.load_trial_detail(storage, "s1", 1)
    assert (failed.kind, failed.reason, failed.trained) == ("failed", "RuntimeError: boom", False)
    assert data.load_trial_detail(storage, "s1", 7) is None
    assert data.load_trial_detail(storage, "s1", "0") is None
    assert data.load_trial_detail(storage, "nope", 0) is None


def test_pick_export_trial(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)])
    view = data.load_study_view(storage, "s1")
    assert data.pick_export_trial(view, None) == 1  # most accurate on the front
    assert data.pick_export_trial(view, 2) == 2
    assert data.pick_export_trial(view, 99) == 1
    assert data.pick_export_trial(None, None) is None


# -- figures ---------------------------------------------------------------------------------


def _hoverable(fig) -> list:
    return [t for t in fig.data if t.hoverinfo != "skip"]


def test_pareto_figure_highlights_front(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0), (0.8, 1.5)], failed=1)
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"), selected=2)
    assert [t.name for t in fig.data] == ["trials", "Pareto front", "trial 2"]
    dominated, front, chosen = fig.data
    assert list(dominated.x) == [1.5]  # each trial in one trace: the front is not repeated
    assert list(front.x) == [1.0, 2.0] and list(front.y) == [0.9, 0.95]
    assert front.mode == "lines+markers" and front.line.shape == "hv"  # a step line
    assert front.marker.color != dominated.marker.color
    assert [c[0] for c in front.customdata] == [0, 1]  # trial numbers for click and hover
    assert chosen.x == (1.5,) and chosen.hoverinfo == "skip"
    assert "1 failed" in fig.layout.title.text
    assert "ms" in fig.layout.xaxis.title.text
    assert "accuracy" in fig.layout.yaxis.title.text.lower()


def test_hover_lists_the_study_params_on_a_light_box(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    extra = {**DISTRIBUTIONS, "bop_threshold": FloatDistribution(1e-8, 1e-4, log=True)}
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            values=[0.8, 2.0],
            distributions=extra,
            params={**PARAMS, "bop_threshold": 1e-6},
        )
    )
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    trace = fig.data[0]
    params = [*DISTRIBUTIONS, "bop_threshold"]
    assert trace.hovertemplate == figures.hovertemplate("complete", params)
    assert "val accuracy %{y:.2%}" in trace.hovertemplate
    assert "bop_threshold: %{customdata[10]}" in trace.hovertemplate  # number, size, note first
    assert trace.customdata[0][10] == "1e-06" and trace.customdata[0][1] == "size –"
    assert fig.data[1].customdata[0][10] == "–"  # a param this trial never sampled
    assert "on the Pareto front" in fig.data[1].hovertemplate
    label = fig.layout.hoverlabel
    assert label.bgcolor.lower() in ("#ffffff", "white") and label.font.color == "#0f172a"
    for t in fig.data:  # no trace brings back its own (trace-coloured) box
        assert t.hoverlabel.bgcolor is None and t.hoverlabel.font.color is None


def _even(ticks) -> bool:
    gaps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    return len(gaps) == 1


@pytest.mark.parametrize(
    "values",
    [[0.9], [1.0], [0.0], [0.99, 1.0], [0.0, 1.0], [0.12, 0.97], [0.85, 0.86, 0.87], []],
)
def test_percent_axis_within_0_100_with_even_ticks(values) -> None:
    axis = figures.percent_axis(values)
    ticks, (low, high) = axis["tickvals"], axis["range"]
    assert 0 <= ticks[0] and ticks[-1] <= 1 and len(ticks) >= 3 and _even(ticks)
    assert all(ticks[0] <= v <= ticks[-1] for v in values)
    assert low < ticks[0] and high > ticks[-1] and high - ticks[-1] < 0.05  # room, not 150%
    assert len(ticks) <= 7


def test_accuracy_axes_fit_the_data(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)])  # one trial: the axis once reached 150%
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    assert fig.layout.yaxis.range[1] < 1.0 and 0.85 <= fig.layout.yaxis.range[0] < 0.9
    assert fig.layout.yaxis.autorange is None
    curve = figures.learning_curve_figure([{"epoch": 1, "val_accuracy": 0.8}])
    assert curve.layout.yaxis.range[1] < 1.0 and list(curve.layout.yaxis.tickvals)[-1] <= 0.82
    assert [t.name for t in curve.data] == ["val accuracy"]  # no loss recorded: no loss trace


def test_latency_axis_log_when_spread_and_by_toggle(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0)])
    make_study(storage, "wide", [(0.9, 0.1), (0.95, 5.0)])
    narrow, wide = data.load_study_view(storage, "s1"), data.load_study_view(storage, "wide")
    assert figures.pareto_figure(narrow).layout.xaxis.type == "linear"
    assert figures.pareto_figure(wide).layout.xaxis.type == "log"  # 50x apart
    assert figures.pareto_figure(narrow, latency_scale="log").layout.xaxis.type == "log"
    assert figures.pareto_figure(wide, latency_scale="linear").layout.xaxis.type == "linear"
    revisions = {
        figures.pareto_figure(narrow, latency_scale=s).layout.uirevision
        for s in "log linear".split()
    }
    assert len(revisions) == 2  # a zoom kept across polls is dropped when the scale changes


def test_infeasible_pruned_budget_and_knee(storage) -> None:
    study = make_study(
        storage, "s1", [(0.5, 1.0), (0.9, 2.0), (0.92, 3.0), (0.93, 4.0)], max_latency_ms=5
    )
    study.add_trial(infeasible_trial())  # 4: never trained
    study.add_trial(infeasible_trial(latency=6.0, trained_acc=0.97))  # 5
    study.add_trial(pruned_trial({"1": 0.3, "3": 0.4}))  # 6
    view = data.load_study_view(storage, "s1")
    fig = figures.pareto_figure(view)
    names = [t.name for t in fig.data]
    assert names == ["infeasible (over budget)", "Pareto front", "knee (trial 1)"]
    infeasible = fig.data[0]
    assert infeasible.marker.color == figures.INFEASIBLE_COLOR
    assert [c[0] for c in infeasible.customdata] == [4, 5]
    floor, trained = infeasible.y
    assert trained == 0.97 and fig.layout.yaxis.range[0] < floor < min(fig.layout.yaxis.tickvals)
    assert infeasible.customdata[0][2] == "never trained: latency 7.5 ms &gt; budget 5 ms"
    assert infeasible.customdata[1][2] == "val accuracy 97.00%: latency 6 ms &gt; budget 5 ms"
    assert infeasible.customdata[0][1] == "4 KB"
    assert fig.data[2].hoverinfo == "skip" and fig.data[2].x == (2.0,)
    (budget,) = fig.layout.shapes
    assert (budget.x0, budget.x1, budget.yref) == (5, 5, "paper")
    assert budget.name == "latency budget 5 ms" and budget.showlegend
    assert "1 pruned" in fig.layout.title.text and "2 infeasible" in fig.layout.title.text

    shown = figures.pareto_figure(view, show_pruned=True)
    pruned = next(t for t in shown.data if t.name.startswith("pruned"))
    assert (pruned.x, pruned.y) == ((0.8,), (0.4,))  # last rung, latency before training
    assert pruned.customdata[0][2] == 3 and "at epoch %{customdata[2]}" in pruned.hovertemplate


def test_only_pruned_trials_hint_at_the_toggle(storage) -> None:
    study = make_study(storage, "s1", [])
    study.add_trial(pruned_trial({"1": 0.3}))
    view = data.load_study_view(storage, "s1")
    assert "Show pruned" in figures.pareto_figure(view).layout.annotations[0].text
    assert figures.pareto_figure(view, show_pruned=True).data[0].name == "pruned (last rung)"


def test_color_by_a_knob(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0)])
    study.add_trial(complete_trial(0.8, 1.5, width=64))
    view = data.load_study_view(storage, "s1")
    fig = figures.pareto_figure(view, color_by="width")  # numbers: one continuous scale
    dominated, front = fig.data
    assert list(dominated.marker.color) == [64] and list(front.marker.color) == [16, 16]
    assert dominated.marker.showscale and (dominated.marker.cmin, dominated.marker.cmax) == (16, 64)
    assert (front.marker.cmin, front.marker.cmax) == (16, 64)
    assert dominated.marker.colorbar.title.text == "width"
    fig = figures.pareto_figure(view, color_by="input_quantizer")  # names: one colour each
    assert list(fig.data[0].marker.colorbar.ticktext) == ["clipped_ste"]
    assert figures.pareto_figure(view, color_by="nope").data[0].marker.color == figures.ALL_COLOR
    make_study(storage, "over", []).add_trial(infeasible_trial())  # nothing to colour
    only = figures.pareto_figure(data.load_study_view(storage, "over"), color_by="width")
    assert [t.name for t in only.data] == ["infeasible (over budget)"]


def _plotly_pick(fig, cursor: tuple[float, float], width: float = 800, height: float = 400):
    """The trial plotly.js 4 hands to a click at `cursor` (data coordinates), following its
    'closest' rule (fx/hover.js, scatter/hover.js): traces in order, hoverinfo 'skip' left out,
    a point's distance is max(d - r, 1 - 3 / r) px for marker radius r = max(3, size / 2), and
    a later point at an equal distance replaces the earlier one."""
    xs = [x for t in fig.data for x in t.x]
    x0, x1 = min(xs), max(xs)
    y0, y1 = fig.layout.yaxis.range

    def px(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * width, (y - y0) / (y1 - y0) * height

    cx, cy = px(*cursor)
    best, picked = 20.0, None  # hoverdistance
    for trace in fig.data:
        if trace.hoverinfo == "skip" or "markers" not in trace.mode:
            continue
        radius = max(3.0, trace.marker.size / 2)
        for x, y, custom in zip(trace.x, trace.y, trace.customdata, strict=True):
            px_x, px_y = px(x, y)
            distance = max(math.hypot(px_x - cx, px_y - cy) - radius, 1 - 3 / radius)
            if distance <= best:
                best, picked = distance, custom[0]
    return picked


def test_click_opens_the_trial_under_the_cursor(storage) -> None:
    # dominated trial 1 sits 3 px right of front trial 0 (latency 0..2 ms on 800 px); the old
    # figure handed a click on trial 0 to trial 1: its smaller marker won plotly's tie
    points = [(0.9, 1.0), (0.899, 1.0075), (0.5, 0.0), (0.95, 2.0)]
    make_study(storage, "s1", points + [(0.6, 1.0 + i / 1000) for i in range(2, 40)])
    view = data.load_study_view(storage, "s1")
    for selected in (None, 1, 0):
        fig = figures.pareto_figure(view, selected)
        assert _plotly_pick(fig, (1.0, 0.9)) == 0
        assert _plotly_pick(fig, (1.0175, 0.899)) == 1  # 4 px right of trial 1: only its marker
    traces = _hoverable(fig)
    numbers = [c[0] for t in traces for c in t.customdata]
    assert sorted(numbers) == list(range(len(points) + 38))  # every trial exactly once
    assert {t.marker.size for t in traces} == {figures.MARKER_SIZE}  # no size wins a tie
    assert clicked_trial({"points": [{"customdata": list(traces[-1].customdata[0])}]}) == 2


def test_pareto_figure_without_points(storage) -> None:
    study = make_study(storage, "s1", [])
    study.ask()
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    assert not fig.data
    assert "Waiting" in fig.layout.annotations[0].text


def test_detail_figures(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)])
    detail = data.load_trial_detail(storage, "s1", 0)
    curve = figures.learning_curve_figure(detail.learning_curve)
    assert [t.name for t in curve.data] == ["val accuracy", "train loss"]
    assert curve.data[1].yaxis == "y2"
    bars = figures.layer_latency_figure(detail.layer_latency)
    assert [t.name for t in bars.data] == ["binary (packed bits)", "float (fp32)"]
    assert all(t.showlegend for t in bars.data)  # a lone group still names its colour
    assert bars.data[0].y == ("conv1 · bconv3x3",)
    assert "ms" in bars.layout.xaxis.title.text
    assert figures.learning_curve_figure([]).layout.annotations


@pytest.mark.parametrize(("kind", "group"), [
    ("bconv3x3", "binary (packed bits)"), ("bconv7x7s2+bn+maxpool2d", "binary (packed bits)"),
    ("binary_linear", "binary (packed bits)"), ("bireal_block", "binary (packed bits)"),
    ("float:linear", "float (fp32)"), ("float:normalize", "float (fp32)"),
    ("pack", "packing / other"), ("rprelu", "packing / other"),
])
def test_layer_groups_tell_binary_from_float(kind: str, group: str) -> None:
    assert figures.layer_group(kind) == group


# -- panels ----------------------------------------------------------------------------------


def test_metric_rows_have_units() -> None:
    rows = dict(panels.metric_rows(complete_trial(0.9, 0.25).user_attrs["metrics"], "avx2"))
    assert rows["Validation accuracy"] == "90.00%"
    assert rows["Latency per image"] == "0.25 ms"
    assert rows["Packed model size"].startswith("2 KiB")
    assert "×25.4" in rows["Packed model size"]
    assert rows["Binary MACs"] == "1.5 M"
    assert rows["Kernel path"] == "avx2"


def _text(component) -> str:
    return str(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component)


@pytest.mark.parametrize(
    ("trial", "kind", "expected"),
    [
        (failed_trial(), "failed", ["Failed: RuntimeError: boom", "arch.family"]),
        (failed_trial("stopped"), "stopped", ["Stopped: stopped"]),
        (
            create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "budget reached"}),
            "stopped",
            ["Stopped: budget reached", "Not recorded: the trial ended before it was sampled"],
        ),
        (
            pruned_trial({"1": 0.3, "3": 0.4}),
            "pruned",
            [
                "Stopped early: epoch 3: val 40.0%",
                "Val accuracy at epoch 3",
                "40.00%",
                "Pruned at epoch",
                "Latency before training",
                "0.8 ms",
                "arch.family",
            ],
        ),
        (
            infeasible_trial(),
            "infeasible",
            [
                "Over budget, never trained: latency 7.5 ms > budget 5 ms",
                "3.5 KB",
                "Test CPU · avx2 · 1 thr",
                "arch.family",
            ],
        ),
    ],
)
def test_detail_of_untrained_trials(storage, trial, kind: str, expected: list[str]) -> None:
    make_study(storage, "s1", []).add_trial(trial)
    detail = data.load_trial_detail(storage, "s1", 0)
    text = _text(panels.detail_children(detail, False))
    assert f"badge state-{kind}" in text
    for piece in expected:
        assert piece in text
    assert "Test accuracy" not in text  # no metrics table for a trial that was never trained
    graphs = "learning-curve" in text
    assert graphs == (kind == "pruned")  # its rungs make its learning curve
    assert "layer-latency" not in text


def test_trials_table_rows_and_columns(storage) -> None:
    study = make_study(storage, "s1", [(0.9, 1.0)])
    study.add_trial(pruned_trial({"1": 0.3, "3": 0.4}))
    study.add_trial(failed_trial())
    view = data.load_study_view(storage, "s1")
    rows = table.table_rows(view)
    assert [(r["id"], r["state"]) for r in rows] == [
        ("0", "complete"),
        ("1", "pruned"),
        ("2", "failed"),
    ]
    assert rows[0]["accuracy"] == 90.0 and rows[0]["latency_ms"] == 1.0
    assert rows[0]["train_s"] == 3.2 and rows[0]["p0"] == 16  # width: the first param
    assert rows[1]["accuracy"] == 40.0 and rows[1]["size_kb"] == 3.5
    assert rows[2]["reason"] == "RuntimeError: boom" and "accuracy" not in rows[2]
    columns = {c["field"]: c for c in table.column_defs(view)}
    assert list(columns)[:6] == ["number", "state", "accuracy", "latency_ms", "size_kb", "train_s"]
    assert list(columns)[-1] == "reason"
    assert (columns["p0"]["headerName"], columns["p3"]["headerName"]) == (
        "width",
        "input_quantizer",
    )
    assert columns["p0"]["filter"] == "agNumberColumnFilter"
    assert columns["p3"]["filter"] == "agTextColumnFilter"
    assert all(c.get("filter") for c in columns.values())  # every column filterable
    grid = table.trials_grid(rows, list(columns.values()))
    assert grid.id == table.GRID_ID and grid.rowData == rows
    assert grid.getRowId == "params.data.id"
    assert grid.dashGridOptions["rowSelection"]["mode"] == "multiRow"  # Ctrl-click: compare
    assert grid.dashGridOptions["suppressFieldDotNotation"]  # a param name may have dots


def test_short_floats() -> None:
    assert figures.short(0.020962473050155146) == "0.02096"
    assert figures.short(32) == 32 and figures.short("sign") == "sign"


def test_flatten_config() -> None:
    assert panels.flatten({"arch": {"width": 8}, "seed": 1}) == [("arch.width", 8), ("seed", 1)]


# -- form and paths --------------------------------------------------------------------------


def _form(**overrides):
    return {**forms.default_form(), **overrides}


def test_default_form_is_valid() -> None:
    request, errors = forms.validate_search_form(_form(), ["digits"], set())
    assert errors == {}
    assert (request.dataset, request.trials, request.epochs, request.workers) == ("digits", 4, 2, 1)
    assert request.study.startswith("digits-")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trials", 0),
        ("trials", None),
        ("trials", 2.5),
        ("trials", "abc"),
        ("trials", True),
        ("epochs", -1),
        ("epochs", 10_000),
        ("workers", 0),
        ("seed", -3),
        ("dataset", "imagenet"),
        ("study", ""),
        ("study", "../x"),
        ("study", "a/b"),
        ("study", ".."),
        ("study", "x" * 65),
        ("study", "has space"),
        ("study", "taken"),
    ],
)
def test_form_rejects(field: str, value: object) -> None:
    request, errors = forms.validate_search_form(_form(**{field: value}), ["digits"], {"taken"})
    assert request is None
    assert list(errors) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sampler", "cmaes"),
        ("sampler", None),
        ("early_stop", "hyperband"),
        ("float_parts", "folded"),
        ("max_latency_ms", 0),
        ("max_latency_ms", -2),
        ("max_latency_ms", "abc"),
        ("max_latency_ms", float("inf")),
        ("max_size_kb", float("nan")),
        ("max_size_kb", True),
        ("timeout", "0"),
    ],
)
def test_form_rejects_bad_search_settings(field: str, value: object) -> None:
    request, errors = forms.validate_search_form(_form(**{field: value}), ["digits"], ())
    assert request is None
    assert list(errors) == [field]


def test_form_search_settings() -> None:
    request, _ = forms.validate_search_form(_form(), ["digits"], ())
    assert (request.sampler, request.early_stop, request.float_parts) == (
        "tpe", "halving", "exact")  # app.py's defaults
    assert (request.max_latency_ms, request.max_size_kb, request.timeout) == (None, None, None)
    values = _form(
        sampler="nsga2", early_stop="off", max_latency_ms="2.5", max_size_kb=64, timeout=" "
    )
    request, errors = forms.validate_search_form(values, ["digits"], ())
    assert errors == {}
    assert (request.sampler, request.early_stop) == ("nsga2", "off")
    assert (request.max_latency_ms, request.max_size_kb, request.timeout) == (2.5, 64.0, None)
    assert set(forms.FIELDS) >= set(forms.ADVANCED)


def test_form_accepts_numeric_strings() -> None:
    request, _ = forms.validate_search_form(_form(trials="7", study="ok_1.b-2"), ["digits"], ())
    assert request.trials == 7 and request.study == "ok_1.b-2"


@pytest.mark.parametrize("name", ["../x", "a/b", "", "x" * 65, ".", "..", ".hidden", "a\\b"])
def test_study_name_rejected(name: str) -> None:
    assert paths.study_name_error(name) is not None


def test_export_and_log_paths_stay_under_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert paths.export_dir(runs, "s1", 3) == (runs / "exports" / "s1" / "trial-3").resolve()
    for hostile in ["../../etc", "/abs/path", "..", "a/../../b", ""]:
        out = paths.export_dir(runs, hostile, 0)
        assert out.is_relative_to((runs / "exports").resolve())
        assert paths.log_path(runs, hostile).parent == (runs / "logs").resolve()
    with pytest.raises(ValueError):
        paths.export_dir(runs, "s1", -1)
    with pytest.raises(ValueError):
        paths.inside(runs, runs / ".." / "x")


# -- jobs ------------------------------------------------------------------------------------


def test_search_command() -> None:
    request = forms.SearchRequest("digits", 2, 1, 3, "s1", 7)
    command = jobs.search_command(request, "runs/bnnx.journal")
    assert command[:3] == [sys.executable, str(REPO / "app.py"), "search"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args == {
        "--dataset": "digits",
        "--space": "quick",
        "--trials": "2",
        "--epochs": "1",
        "--workers": "3",
        "--storage": "runs/bnnx.journal",
        "--study": "s1",
        "--seed": "7",
        "--sampler": "tpe",
        "--early-stop": "halving",
        "--float-parts": "exact",
    }
    request = forms.SearchRequest("digits", 2, 1, 3, "s1", 7, "random", "off", 2.5, 64.0, 600.0,
                                  float_parts="fast")
    args = dict(zip(*[iter(jobs.search_command(request, "j")[3:])] * 2, strict=True))
    assert (args["--sampler"], args["--early-stop"], args["--float-parts"]) == (
        "random", "off", "fast")
    assert (args["--max-latency-ms"], args["--max-size-kb"], args["--timeout"]) == (
        "2.5",
        "64.0",
        "600.0",
    )


def test_search_command_parses_in_app_py() -> None:
    """Every flag the form passes is one `app.py search` accepts, with the same meaning."""
    import app

    request = forms.SearchRequest("digits", 2, 1, 1, "s1", 7, "gp", "off", 2.5, 64.0, 600.0,
                                  "survey", "fast")
    args = app.build_parser().parse_args(jobs.search_command(request, "x.journal")[2:])
    assert (args.space, args.float_parts) == ("survey", "fast")
    assert (args.sampler, args.early_stop, args.max_latency_ms, args.max_size_kb, args.timeout) == (
        "gp",
        "off",
        2.5,
        64.0,
        600.0,
    )


def test_last_line_skips_blank_and_bracket_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text('start\n[I] trial 3 finished\n{\n  "a": 1\n}\n\n')
    assert jobs.last_line(log) == '"a": 1'
    log.write_text("trial 1\n}\n")
    assert jobs.last_line(log) == "trial 1"
    assert jobs.last_line(tmp_path / "missing.log") == ""


def test_job_manager_runs_and_reports(tmp_path: Path, monkeypatch) -> None:
    script = "import sys; print('trial 0 done'); print('bye', file=sys.stderr); sys.exit({})"
    codes = iter([0, 3])
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", script.format(next(codes))]
    )
    manager = jobs.JobManager("unused.journal", tmp_path)
    ok = manager.start(forms.SearchRequest("digits", 1, 1, 1, "good", 0))
    bad = manager.start(forms.SearchRequest("digits", 1, 1, 1, "bad", 0))
    ok.process.wait(30)
    bad.process.wait(30)
    assert (ok.status, bad.status) == ("finished", "failed")
    assert ok.last_log_line() == "bye"
    assert ok.log == (tmp_path / "logs" / "good.log").resolve()
    assert manager.study_names() == {"good", "bad"}
    assert manager.running_studies() == set()
    assert [j.study for j in manager.jobs()] == ["bad", "good"]


def test_stop_all_terminates_running(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    manager = jobs.JobManager("unused.journal", tmp_path)
    job = manager.start(forms.SearchRequest("digits", 1, 1, 1, "slow", 0))
    assert job.status == "running"
    started = time.monotonic()
    manager.stop_all(timeout=5)
    assert job.status == "stopped" and time.monotonic() - started < 10  # killed as asked





def _wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(("how", "sent"), [("finish", "SIGINT"), ("now", "SIGTERM")])
def test_stop_sends_the_search_its_signal(tmp_path: Path, monkeypatch, how, sent) -> None:
    command = [sys.executable, "-c", SIGNALLED_SEARCH]
    monkeypatch.setattr(jobs, "search_command", lambda r, s: command)
    manager = jobs.JobManager("unused.journal", tmp_path)
    job = manager.start(forms.SearchRequest("digits", 1, 1, 1, "s1", 0))
    _wait_for(lambda: job.last_log_line() == "ready")
    assert [b.children for b in panels.stop_buttons(job)] == ["Finish running trials", "Stop now"]
    assert manager.stop("s1", how) and job.status in ("stopping", "stopped")
    assert job.process.wait(20) == 130
    assert job.last_log_line() == f"got {sent}"
    assert job.status == "stopped" and panels.stop_buttons(job) == []
    assert not manager.stop("s1", how) and not manager.stop("other", how)
    with pytest.raises(ValueError):
        manager.stop("s1", "kill")


def test_stopping_job_offers_only_stop_now(tmp_path: Path) -> None:
    process = types.SimpleNamespace(poll=lambda: None, returncode=None)
    job = jobs.Job("s1", [], tmp_path / "x.log", process, time.time(), stop_requested="finish")
    assert job.status == "stopping"
    buttons = panels.stop_buttons(job)
    assert [b.id for b in buttons] == [{"type": "job-stop", "study": "s1", "how": "now"}]


def test_failed_search_shows_its_log_tail(tmp_path: Path, monkeypatch) -> None:
    script = "import sys; print('loading'); print('error: no such dataset'); sys.exit(2)"
    monkeypatch.setattr(jobs, "search_command", lambda r, s: [sys.executable, "-c", script])
    manager = jobs.JobManager("unused.journal", tmp_path)
    assert panels.start_error_children(None) == []
    job = manager.start(forms.SearchRequest("digits", 1, 1, 1, "bad", 0))
    job.process.wait(30)
    assert manager.find("bad") is job and manager.find("other") is None
    title, tail = panels.start_error_children(job)
    assert "exit code 2" in title.children
    assert tail.children == "loading\nerror: no such dataset"
    assert jobs.last_lines(job.log, 1) == ["error: no such dataset"]


# -- callback logic ----------------------------------------------------------------------------


@pytest.fixture
def explorer_state(storage, tmp_path: Path, monkeypatch) -> Explorer:
    monkeypatch.setattr(
        jobs, "search_command", lambda r, s: [sys.executable, "-c", "print('started')"]
    )
    return Explorer("spec", storage, tmp_path / "runs", jobs.JobManager("spec", tmp_path / "runs"),
                    ["digits"])  # fmt: skip


def test_start_search_validates_then_starts(explorer_state, storage) -> None:
    make_study(storage, "taken", [])
    errors, study = explorer_state.start_search(_form(study="taken", trials=0))
    assert study is None and set(errors) == {"study", "trials"}
    assert explorer_state.jobs.jobs() == []
    errors, study = explorer_state.start_search(_form(study="fresh"))
    assert (errors, study) == ({}, "fresh")
    explorer_state.jobs.jobs()[0].process.wait(30)
    # a name a job is still creating counts as taken
    assert explorer_state.start_search(_form(study="fresh"))[1] is None


def test_choose_study(explorer_state, storage, monkeypatch) -> None:
    assert explorer_state.choose_study(None, None) == ([], None)
    make_study(storage, "a", [])
    make_study(storage, "b", [])
    options, value = explorer_state.choose_study(None, None)
    assert [o["value"] for o in options] == ["b", "a"] and value == "b"  # newest
    assert explorer_state.choose_study("a", None)[1] == "a"  # keeps the user's choice
    explorer_state.jobs.start(forms.SearchRequest("digits", 1, 1, 1, "c", 0))
    monkeypatch.setattr(jobs.Job, "running", True)
    options, value = explorer_state.choose_study("a", "c")
    assert value == "c" and options[0] == {"label": "c  (starting)", "value": "c"}
    monkeypatch.setattr(jobs.Job, "running", False)  # died before creating its study
    assert explorer_state.choose_study("c", None) == (options[1:], "b")


def test_clicked_trial() -> None:
    assert clicked_trial({"points": [{"customdata": [4, 16, 2]}]}) == 4
    assert clicked_trial({"points": [{"x": 1}]}) is None
    assert clicked_trial({"points": []}) is None
    assert clicked_trial({"points": [{"customdata": [True]}]}) is None


def test_clicked_row() -> None:
    assert clicked_row({"rowId": "12", "colId": "state", "timestamp": 1}) == 12
    for bad in ({}, {"rowId": None}, {"rowId": "-1"}, {"rowId": "1.5"}, {"rowId": 3}):
        assert clicked_row(bad) is None


def test_stop_job_from_button_id(explorer_state, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(explorer_state.jobs, "stop", lambda s, h: calls.append((s, h)) or True)
    assert explorer_state.stop_job({"type": "job-stop", "study": "s1", "how": "now"})
    assert not explorer_state.stop_job(None) and not explorer_state.stop_job({"study": 3})
    assert calls == [("s1", "now")]


def _fake_export_module(calls: list) -> types.ModuleType:
    def export_trial(spec: str, study: str, number: int, out_dir: Path,
                     formats: tuple[str, ...] = ("bnnx",)) -> Path:
        calls.append((spec, study, number, out_dir, formats))
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "weights.safetensors", "model.bnnx", "README.md"):
            (out_dir / name).write_text(json.dumps({"trial": number}))
        return out_dir

    module = types.ModuleType("search.export")
    module.export_trial = export_trial
    return module


def test_export_zips_the_trial_folder(explorer_state, storage, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "search.export", _fake_export_module(calls))
    assert explorer_state.export(None, None) == (None, "Nothing to export yet.")
    make_study(storage, "s1", [(0.9, 1.0), (0.95, 2.0)])
    archive, message = explorer_state.export("s1", None)
    out_dir = explorer_state.runs_dir / "exports" / "s1" / "trial-1"
    assert [call[:3] for call in calls] == [("spec", "s1", 1)]
    assert calls[0][3].name == "trial-1" and calls[0][3].parent.parent == out_dir.parent.resolve()
    assert archive == out_dir.with_suffix(".zip").resolve()
    assert [p.name for p in out_dir.parent.iterdir()] == ["trial-1.zip"]  # no temporary left
    names = [n for n in zipfile.ZipFile(archive).namelist() if not n.endswith("/")]
    assert sorted(names) == [
        "trial-1/README.md",
        "trial-1/config.json",
        "trial-1/model.bnnx",
        "trial-1/weights.safetensors",
    ]
    assert "trial 1" in message
    assert calls[0][4] == ("bnnx",)  # the packed model alone unless formats are ticked
    assert explorer_state.export("s1", 0, ["bnnx", "onnx"])[0].name == "trial-0.zip"
    assert calls[-1][4] == ("bnnx", "onnx")
    storage_study = optuna.load_study(storage=storage, study_name="s1")
    storage_study.add_trial(pruned_trial({"1": 0.3}))
    assert explorer_state.export("s1", 2) == (
        None,
        "Trial 2 is pruned: it has no trained model to export.",
    )


def test_export_failure_is_reported(explorer_state, storage, monkeypatch) -> None:
    module = types.ModuleType("search.export")

    def export_trial(*_args, **_kwargs):
        raise ValueError("weights missing")

    module.export_trial = export_trial
    monkeypatch.setitem(sys.modules, "search.export", module)
    make_study(storage, "s1", [(0.9, 1.0)])
    archive, message = explorer_state.export("s1", None)
    assert archive is None and "weights missing" in message


# -- the app --------------------------------------------------------------------------------


def _ids(component) -> set[str]:
    found = set()
    stack = [component]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
            continue
        if getattr(node, "id", None):
            found.add(node.id)
        children = getattr(node, "children", None)
        if children is not None and not isinstance(children, str):
            stack.append(children)
    return found


def test_create_app_layout_has_stable_ids(tmp_path: Path, storage, monkeypatch) -> None:
    from explorer import app as app_module

    make_study(storage, "s1", [(0.9, 1.0)])
    monkeypatch.setattr(app_module, "open_storage", lambda spec: storage)
    app = app_module.create_app("spec", tmp_path / "runs")
    layout = app.layout()
    expected = {
        "search-form",
        "start-search",
        "pareto-graph",
        "trial-detail",
        "export-button",
        "trials-table",
        "latency-scale",
        "show-pruned",
        "color-by",
        "form-advanced",
        "form-job-error",
        *(f"form-{name}" for name in forms.FIELDS),
        "form-space",
        "form-sampler",
        "latency-log",
        "stop-search",
        "resume-search",
        "search-progress",
        "search-log",
        "compare-view",
        "analysis-view",
        "theme-toggle",
        "enqueue-button",
        "url",
    }
    assert expected <= _ids(layout)
    assert isinstance(app.server.extensions["bnnx_jobs"], jobs.JobManager)
    assert (tmp_path / "runs").is_dir()
    client = app.server.test_client()
    assert client.get("/").status_code == 200


def test_web_process_stays_light() -> None:
    code = (
        "import sys, explorer, explorer.app, explorer.callbacks, search.storage, search.datasets;"
        "heavy = {'torch', 'lightning', 'pytorch_lightning'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_callbacks_module_registers(storage, tmp_path: Path) -> None:
    import dash

    app = dash.Dash(__name__)
    state = Explorer("spec", storage, tmp_path, jobs.JobManager("spec", tmp_path), ["digits"])
    callbacks.register_callbacks(app, state)
    outputs = " ".join(app.callback_map)
    for target in (
        "pareto-graph.figure",
        "trial-detail.children",
        "export-download.data",
        "trials-table.children",
        '"name":["ALL"],"type":"trials-grid"}.rowData',
        "selected-trial.data",
        "form-job-error.children",
        "url.search",
        "url-request.data",
        "analysis-body.children",
        "search-progress.children",
        "search-log.children",
        "search-message.children",
        "compare-view.children",
        "compare-trials.data",
        "enqueue-status.children",
        "space-knobs.children",
        "form-space.options",
        "page.className",
    ):
        assert target in outputs


def test_empty_figure_explains_failures(storage) -> None:
    make_study(storage, "s1", [], failed=2)
    fig = figures.pareto_figure(data.load_study_view(storage, "s1"))
    assert "2 failed" in fig.layout.annotations[0].text


def test_stats_count_failed_and_budget(storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)], failed=1)
    study = make_study(storage, "s2", [(0.9, 1.0)], failed=1, sampler="nsga2",
                       float_parts="fast")
    study.add_trial(failed_trial("stopped"))
    study.add_trial(infeasible_trial())
    text = str(panels.stats_children(data.load_study_view(storage, "s1"), "s1"))
    assert "'failed'" in text and "digits · 9 trials · 2 epochs" in text
    assert "float parts" not in text  # exact, the default, goes unsaid
    children = panels.stats_children(data.load_study_view(storage, "s2"), "s2")
    chips = {
        c.children[1].children: c.children[0].children
        for c in children
        if c.className.startswith("chip")
    }
    assert chips == {
        "complete": "1",
        "running": "0",
        "failed": "2",
        "on front": "1",
        "infeasible": "1",
    }  # failed + stopped; infeasible counted apart
    assert children[-1].children.endswith("nsga2 sampler · fast float parts")


def test_header_masks_database_password() -> None:
    from explorer.layout import display_spec

    assert display_spec("postgresql://bob:s3cr:t@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert display_spec("runs/bnnx.journal") == "runs/bnnx.journal"
    assert display_spec("sqlite:///runs/x.db") == "sqlite:///runs/x.db"


def test_stats_warn_when_latencies_span_cpu_models(storage) -> None:
    study = make_study(storage, "cpus", [])
    for cpu, latency in (("AMD EPYC", 1.0), ("Intel Xeon", 2.0), ("AMD EPYC", 3.0)):
        trial = complete_trial(0.9, latency)
        study.add_trial(optuna.trial.create_trial(
            state=trial.state, values=trial.values, params=trial.params,
            distributions=trial.distributions,
            user_attrs={**trial.user_attrs, "measured_on": {"cpu": cpu, "threads": 1}}))
    view = data.load_study_view(storage, "cpus")
    assert view.cpus == ["AMD EPYC", "Intel Xeon"]
    assert "latencies from 2 CPU models" in str(panels.stats_children(view, "cpus"))
    one = make_study(storage, "one", [(0.9, 1.0)])
    assert "CPU models" not in str(panels.stats_children(data.load_study_view(storage, "one"),
                                                         one.study_name))


# -- URL state ---------------------------------------------------------------------------------


def test_parse_query_and_query_for() -> None:
    assert urlstate.parse_query("?study=s1&trial=3") == urlstate.UrlRequest("s1", 3)
    assert urlstate.parse_query("") == urlstate.UrlRequest()
    assert urlstate.parse_query(None) == urlstate.UrlRequest()
    assert urlstate.parse_query("?study=a%20b") == urlstate.UrlRequest("a b")
    bad = urlstate.parse_query("?study=s1&trial=-2")
    assert (bad.study, bad.trial) == ("s1", None) and "not a trial number" in bad.error
    assert "needs a study" in urlstate.parse_query("?trial=2").error
    assert urlstate.query_for("s 1", 4) == "?study=s+1&trial=4"
    assert urlstate.query_for("s1", None) == "?study=s1"
    assert urlstate.query_for(None, 4) == ""
    for study, trial in [("s1", 0), ("x.y-z", 12), ("a&b=c", None)]:
        assert urlstate.parse_query(urlstate.query_for(study, trial)) == urlstate.UrlRequest(
            study, trial
        )


def test_url_request_checks_the_study(explorer_state, storage) -> None:
    make_study(storage, "s1", [(0.9, 1.0)])
    assert explorer_state.url_request("?study=s1&trial=7") == ({"study": "s1", "trial": 7}, "")
    request, message = explorer_state.url_request("?study=nope&trial=1")
    assert request == {"study": None, "trial": None} and "No study named 'nope'" in message
    request, message = explorer_state.url_request("?study=s1&trial=x")
    assert request == {"study": "s1", "trial": None} and "'x'" in message


def test_missing_trial_says_so() -> None:
    text = _text(panels.missing_trial_children("s1", 99))
    assert "Study 's1' has no trial 99" in text


# -- analysis ----------------------------------------------------------------------------------


def analysed_study(storage, name: str = "a1", count: int = 12):
    """`count` trained trials whose accuracy grows with width, each with its stored
    hypervolume, plus an infeasible and a failed one the analysis leaves out."""
    study = make_study(storage, name, [])
    study.set_user_attr("hv_reference", [0.0, 4.0])
    widths = [8, 16, 32, 64]
    for i in range(count):
        width = widths[i % 4]
        trial = complete_trial(0.5 + width / 200, 0.5 + 0.1 * i, width=width)
        noise = {"lr": 1e-3 * (1 + i * 7 % 29), "depth": 1 + i * 5 % 3,
                 "blocks_per_stage": 1 + i * 3 % 2}  # fmt: skip
        trial.params = {**trial.params, **noise}  # knobs the objectives ignore
        trial.set_user_attr("hypervolume", 0.1 * (i + 1))
        study.add_trial(trial)
    study.add_trial(infeasible_trial())
    study.add_trial(failed_trial())
    return study


def test_study_trials_keep_trained_feasible_ones(storage) -> None:
    from explorer import analysis

    analysed_study(storage)
    trials = analysis.load_study_trials(storage, "a1")
    assert [t.number for t in trials.trained] == list(range(12))
    assert trials.metric_names == ["val_accuracy", "latency_ms"]
    assert trials.directions == ["maximize", "minimize"]
    assert trials.hv_reference == [0.0, 4.0]
    points = analysis.hypervolume_points(trials)
    assert points[0] == (0, 0.1) and len(points) == 12
    assert analysis.load_study_trials(storage, "nope") is None
    assert analysis.best_so_far([3, 1, 4, 1], "maximize") == [3, 3, 4, 4]
    assert analysis.best_so_far([3, 1, 4, 0], "minimize") == [3, 1, 1, 0]
    assert analysis.categorical_knobs(trials) == ["width", "input_quantizer", "weight_quantizer",
                                                  "batch_size"]


def test_hypervolume_and_history_figures(storage) -> None:
    from explorer import analysis, analysis_figures

    analysed_study(storage)
    trials = analysis.load_study_trials(storage, "a1")
    fig = analysis_figures.hypervolume_figure(trials)
    assert list(fig.data[0].y) == pytest.approx([0.1 * (i + 1) for i in range(12)])
    assert "reference point (val_accuracy 0, latency_ms 4)" in fig.layout.title.text
    fig = analysis_figures.history_figure(trials)
    assert [t.name for t in fig.data] == ["trial", "best so far"] * 2
    assert list(fig.data[3].y) == [0.5] * 12  # latency's best so far: the first, lowest
    assert fig.layout.yaxis.tickformat == ".0%"  # accuracy on a percent axis
    empty = analysis.StudyTrials("e", [], ["val_accuracy", "latency_ms"],
                                 ["maximize", "minimize"], None)
    for build in (analysis_figures.hypervolume_figure, analysis_figures.history_figure,
                  analysis_figures.parallel_figure):
        assert build(empty).layout.annotations, build  # a message, not empty axes


def test_param_importance_per_objective_cached(storage, monkeypatch) -> None:
    from explorer import analysis, analysis_figures

    analysed_study(storage, "few", count=analysis.MIN_IMPORTANCE_TRIALS - 1)
    few = analysis.param_importances(analysis.load_study_trials(storage, "few"))
    assert isinstance(few, str) and f"at least {analysis.MIN_IMPORTANCE_TRIALS}" in few
    assert few in analysis_figures.importance_figure(few).layout.annotations[0].text

    study = analysed_study(storage, "many", count=24)
    trials = analysis.load_study_trials(storage, "many")
    importances = analysis.param_importances(trials)
    assert set(importances) == {"val_accuracy", "latency_ms"}
    for per in importances.values():
        assert set(per) == set(PARAMS) and sum(per.values()) == pytest.approx(1.0)
    targets = []  # the evaluator minimizes its target: accuracy goes in negated

    def capture(shadow, target):
        targets.append([target(t) for t in shadow.get_trials()])
        return {}

    monkeypatch.setattr(optuna.importance, "get_param_importances", capture)
    analysis.param_importances(trials)
    accuracy, latency = targets
    assert accuracy == [-t.values[0] for t in trials.trained]
    assert latency == [t.values[1] for t in trials.trained]
    monkeypatch.undo()
    fig = analysis_figures.importance_figure(importances)
    assert [t.name for t in fig.data] == ["val_accuracy", "latency_ms"]
    assert "width" in fig.data[0].y

    calls = []
    real = analysis.param_importances
    monkeypatch.setattr(analysis, "param_importances", lambda s: calls.append(s) or real(s))
    cache = analysis.ImportanceCache()
    assert cache.get(trials) == cache.get(trials) and len(calls) == 1  # once per trial count
    study.add_trial(complete_trial(0.9, 0.2))
    assert cache.get(analysis.load_study_trials(storage, "many")) and len(calls) == 2


def test_parallel_and_marginal_figures(storage) -> None:
    from explorer import analysis, analysis_figures

    analysed_study(storage)
    trials = analysis.load_study_trials(storage, "a1")
    fig = analysis_figures.parallel_figure(trials)
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert list(dims)[-2:] == ["val_accuracy", "latency_ms"] and "lr" in dims
    assert list(dims["input_quantizer"].ticktext) == ["clipped_ste"]  # coded categories
    assert analysis_figures.latency_bands([5, 1, 3, 2, 4, 6]) == [
        "slowest third", "fastest third", "middle third", "fastest third", "middle third",
        "slowest third"]  # fmt: skip
    fig = analysis_figures.marginal_figure(trials, "width")
    assert [t.name for t in fig.data] == list(analysis_figures.LATENCY_BANDS)
    assert list(fig.layout.xaxis.categoryarray) == ["8", "16", "32", "64"]
    assert sorted(x for t in fig.data for x in t.x) == sorted(
        str(t.params["width"]) for t in trials.trained)


def test_explorer_analysis_computes_only_the_open_view(explorer_state, storage) -> None:
    analysed_study(storage)
    children, knobs, knob = explorer_state.analysis("a1", None, None)
    assert knobs == [] and actions.ANALYSIS_HINT in _text(children)
    children, knobs, knob = explorer_state.analysis("a1", "history", None)
    assert [c.id for c in children] == ["hypervolume-graph", "history-graph"]
    children, _, _ = explorer_state.analysis("a1", "importance", None)
    assert [c.id for c in children] == ["importance-graph"]
    assert [t.name for t in children[0].figure.data] == ["val_accuracy", "latency_ms"]
    children, _, _ = explorer_state.analysis("a1", "parallel", None)
    assert [c.id for c in children] == ["parallel-graph"]
    children, knobs, knob = explorer_state.analysis("a1", "marginals", "nope")
    assert [c.id for c in children] == ["marginal-graph"] and knob == knobs[0] == "width"
    assert explorer_state.analysis("a1", "marginals", "batch_size")[2] == "batch_size"
    assert "no trials yet" in _text(explorer_state.analysis("gone", "history", None)[0])


# -- a running search: progress, log, stop, resume ---------------------------------------------


def test_search_progress_counts_budget_and_eta(storage) -> None:
    from explorer import progress

    study = make_study(storage, "p1", [(0.9, 1.0), (0.8, 0.5)], failed=1, trials=10)
    study.add_trial(pruned_trial({"1": 0.5}))
    study.add_trial(infeasible_trial())
    study.add_trial(create_trial(state=TrialState.RUNNING, params=PARAMS,
                                 distributions=DISTRIBUTIONS))  # fmt: skip
    view = data.load_study_view(storage, "p1")
    assert len(view.finished_at) == 4  # complete (infeasible included) and pruned
    state = progress.search_progress(view)
    assert (state.budget, state.finished) == (10, 4)
    assert state.counts == {"complete": 2, "pruned": 1, "infeasible": 1, "running": 1,
                            "failed": 1}  # fmt: skip
    assert state.share("complete") == 0.2 and state.share("failed") == 0.1
    text = _text(panels.progress_children(state))
    assert "4/10 finished · 2 complete · 1 infeasible · 1 pruned · 1 running · 1 failed" in text
    assert progress.eta_seconds([0.0, 10.0, 20.0], 3, 10) == 70.0  # 10 s a trial, 7 left
    assert progress.eta_seconds(list(map(float, range(0, 200, 10))), 20, 30) == 100.0
    assert progress.eta_seconds([0.0], 1, 10) is None
    assert progress.eta_seconds([0.0, 5.0], 10, 10) is None  # nothing left
    assert progress.duration(3725) == "1h 02m" and progress.duration(65.9) == "1m 05s"
    assert progress.duration(7) == "7s"


def test_progress_bar_widths_and_no_eta_when_idle(storage) -> None:
    from explorer import progress

    make_study(storage, "idle", [(0.9, 1.0)], trials=4)
    state = progress.search_progress(data.load_study_view(storage, "idle"))
    assert state.eta_s is None  # nothing running: no ETA
    bar = panels.progress_children(state)[0]
    assert [(p.className, p.style["width"]) for p in bar.children] == [
        ("progress-part part-complete", "25.00%")]
    assert "No trials yet" in _text(panels.progress_children(None))


def test_log_text_shows_the_tail(tmp_path: Path) -> None:
    from explorer import progress

    log = tmp_path / "s.log"
    log.write_bytes(b"a\r\nb\rc\n")
    assert progress.log_text(log) == "a\nb\nc\n"
    log.write_bytes(b"x" * 3000 + b"\nend\n")
    text = progress.log_text(log, limit=1024)
    assert text.startswith("[first 1 KB not shown") and text.endswith("end\n")
    assert progress.log_text(tmp_path / "missing.log") is None


def test_validate_resume() -> None:
    assert forms.validate_resume(12, 10, 0) == (12, None)
    assert forms.validate_resume("15", 10, 0) == (15, None)
    assert "from 11" in forms.validate_resume(10, 10, 0)[1]  # must raise past finished trials
    assert "whole number" in forms.validate_resume(None, 3, 0)[1]
    assert "2 running trials" in forms.validate_resume(20, 3, 2)[1]


def test_resume_command_parses_in_app_py() -> None:
    import app

    command = jobs.resume_command("s1", 25, "x.journal")
    assert command[:3] == [sys.executable, str(REPO / "app.py"), "search"]
    args = app.build_parser().parse_args(command[2:])
    assert (args.study, args.resume, args.trials, args.storage) == ("s1", True, 25, "x.journal")


def test_resume_appends_to_the_log_and_refuses_a_running_search(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "search_command",
                        lambda r, s: [sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(jobs, "resume_command",
                        lambda study, n, s: [sys.executable, "-c", f"print('resumed to {n}')"])
    manager = jobs.JobManager("unused.journal", tmp_path)
    first = manager.start(forms.SearchRequest("digits", 1, 1, 1, "s1", 0))
    with pytest.raises(ValueError, match="still running"):
        manager.resume("s1", 5)
    first.stop("now")
    first.process.wait(30)
    first.log.write_text("first run\n")
    again = manager.resume("s1", 5)
    again.process.wait(30)
    assert again.log.read_text() == "first run\nresumed to 5\n"
    assert manager.find("s1") is again and again.status == "finished"


def test_search_control_stop_and_resume(explorer_state, storage, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(explorer_state.jobs, "resume", lambda s, n: calls.append((s, n)))
    assert explorer_state.search_control("resume-search", None, 5) == ("Select a study first.",
                                                                       False)
    message, ok = explorer_state.search_control("stop-search", "s1", None)
    assert not ok and "No search of 's1'" in message
    message, ok = explorer_state.search_control("resume-search", "s1", 5)
    assert not ok and "does not exist" in message
    make_study(storage, "s1", [(0.9, 1.0), (0.8, 0.5)], trials=2)
    message, ok = explorer_state.search_control("resume-search", "s1", 2)
    assert not ok and "from 3" in message and calls == []
    assert explorer_state.search_control("resume-search", "s1", 6) == (
        "Resumed 's1' up to 6 finished trials.", True)
    assert calls == [("s1", 6)]
    stops = []
    monkeypatch.setattr(explorer_state.jobs, "stop", lambda s, how: stops.append(how) or True)
    assert explorer_state.search_control("stop-search", "s1", None)[1]
    assert explorer_state.search_control("stop-search-now", "s1", None)[1]
    assert stops == ["finish", "now"]


# -- compare -----------------------------------------------------------------------------------


def test_selected_numbers_from_a_box_selection() -> None:
    from explorer import compare

    points = {"points": [{"customdata": [3, "1 KB", ""]}, {"x": 1.0}, {"customdata": [1]},
                         {"customdata": [3]}, {"customdata": [True]}]}  # fmt: skip
    assert compare.selected_numbers(points) == [3, 1]
    assert compare.selected_numbers(None) == [] and compare.selected_numbers({}) == []


def test_compare_diff_curves_and_layers(storage) -> None:
    from explorer import compare

    study = make_study(storage, "c1", [(0.9, 1.0)])
    study.add_trial(complete_trial(0.8, 0.5, width=32))
    study.add_trial(pruned_trial({"1": 0.6, "2": 0.7}))
    details = [data.load_trial_detail(storage, "c1", n) for n in (0, 1, 2)]
    rows, same = compare.config_diff(details)
    assert rows == [("arch.width", [16, 32, "–"])]  # the pruned trial's config has no width
    assert same == 1  # arch.family; empty sections hold no settings
    headline = dict(compare.headline_rows(details))
    assert headline["state"] == ["complete", "complete", "pruned"]
    assert headline["Validation accuracy"][:2] == ["90.00%", "80.00%"]
    fig = compare.curves_figure(details)
    assert [t.name for t in fig.data] == ["trial 0", "trial 1", "trial 2"]
    assert list(fig.data[2].y) == [0.6, 0.7]  # a pruned trial's rungs
    fig = compare.layer_latency_compare_figure(details)
    assert [t.name for t in fig.data] == ["trial 0 (1 ms)", "trial 1 (0.5 ms)"]
    assert list(fig.layout.yaxis.categoryarray) == ["fc · float:linear", "conv1 · bconv3x3"]


def test_compare_view_needs_two_to_four(explorer_state, storage) -> None:
    make_study(storage, "c1", [(0.9, 1.0), (0.8, 0.5), (0.7, 0.4), (0.6, 0.3), (0.5, 0.2)])
    for numbers in ([], [1], [0, 1, 2, 3, 4]):
        text = _text(explorer_state.compare("c1", numbers))
        assert f"{len(numbers)} trial" in text and "compare takes 2 to 4" in text
    view = explorer_state.compare("c1", [0, 3])
    text = _text(view)
    assert "Trial 0" in text and "Trial 3" in text and "The configs are identical." in text
    assert {"compare-curves", "compare-latency"} <= _ids(view)


# -- enqueue into another study ----------------------------------------------------------------


def test_enqueue_command_parses_in_app_py(tmp_path: Path) -> None:
    import app
    from explorer import enqueue

    command = enqueue.enqueue_command("fm", tmp_path / "c.json", "x.journal")
    assert command[:3] == [sys.executable, str(REPO / "app.py"), "enqueue"]
    args = app.build_parser().parse_args(command[2:])
    assert (args.study, args.config, args.storage) == ("fm", [str(tmp_path / "c.json")],
                                                      "x.journal")
    path = enqueue.write_config(tmp_path / "runs", "../a b", 3, {"arch": {"width": 8}})
    assert path == (tmp_path / "runs" / "enqueue" / "_a_b" / "trial-3.json").resolve()
    assert json.loads(path.read_text()) == {"arch": {"width": 8}}


def test_enqueue_checks_then_queues(explorer_state, storage, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(actions, "enqueue_trial",
                        lambda *args: calls.append(args) or ("queued", True))
    study = make_study(storage, "src", [(0.9, 1.0)], failed=1)
    study.add_trial(create_trial(state=TrialState.FAIL))  # 2: ended before sampling
    make_study(storage, "dst", [])
    selected = {"study": "src", "number": 0}
    assert "Select a trial" in explorer_state.enqueue("src", None, "dst")[0]
    assert "Select a trial" in explorer_state.enqueue("dst", selected, "dst")[0]  # other study's
    assert "existing study" in explorer_state.enqueue("src", selected, "nope")[0]
    assert "no configuration" in explorer_state.enqueue("src", {"study": "src", "number": 2},
                                                        "dst")[0]
    assert calls == []
    assert explorer_state.enqueue("src", {"study": "src", "number": 1}, "dst") == ("queued", True)
    spec, runs, source, number, config, target = calls[0]
    assert (spec, source, number, target) == ("spec", "src", 1, "dst")
    assert config == BEFORE["config"]  # a failed trial that recorded its config can be queued


@pytest.mark.slow  # two `app.py enqueue` processes, each importing torch
def test_enqueue_runs_app_py(explorer_state, storage, tmp_path: Path) -> None:
    """The real `app.py enqueue` on the explorer's storage: a trial's config lands in another
    study as a waiting trial; a bad one comes back as the CLI's one-line error."""
    from spaces import Config

    spec = str(tmp_path / "bnnx.journal")
    explorer_state.storage_spec = spec
    journal = JournalStorage(JournalFileBackend(spec))
    source = make_study(journal, "src", [(0.9, 1.0)])
    trial = complete_trial(0.8, 0.5)
    trial.set_user_attr("config", Config().to_dict())
    source.add_trial(trial)  # 1: a real config
    bad = complete_trial(0.7, 0.4)
    bad.set_user_attr("config", {"arch": {"family": "no_such_family"}})
    source.add_trial(bad)  # 2
    make_study(journal, "dst", [])
    explorer_state.storage = journal
    message, ok = explorer_state.enqueue("src", {"study": "src", "number": 1}, "dst")
    assert ok, message
    assert message.startswith("Queued trial 1 of 'src' as trial 0 of 'dst'")
    waiting = optuna.load_study(study_name="dst", storage=journal).get_trials()
    assert [t.state for t in waiting] == [TrialState.WAITING]
    message, ok = explorer_state.enqueue("src", {"study": "src", "number": 2}, "dst")
    assert not ok and message.startswith("Could not queue trial 2 in 'dst': error:"), message
    assert "no_such_family" in message


def test_form_space_presets_are_the_search_spaces() -> None:
    from spaces import SearchSpace

    assert forms.SPACES == SearchSpace.PRESETS
    request, errors = forms.validate_search_form(_form(space="survey"), ["digits"], set())
    assert errors == {} and request.space == "survey"
    request, errors = forms.validate_search_form(_form(space="../x.json"), ["digits"], set())
    assert request is None and errors == {"space": "Choose one of: quick, survey."}


# -- the search-space editor -------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab() -> list[dict]:
    from explorer import space_probe

    return space_probe.describe()  # in this process: tests may import torch


def test_space_probe_describes_every_knob(vocab) -> None:
    by_path = {k["path"]: k for k in vocab}
    assert by_path["arch.family"]["choices"][:2] == ["plain", "resnet"]
    assert by_path["train.lr"]["range"] == [1e-06, 1.0] and by_path["arch.width"]["type"] == "int"
    assert "train.epochs" not in by_path and "seed" not in by_path  # set by the budget


def test_space_controls_round_trip_the_presets(vocab, tmp_path: Path) -> None:
    from explorer import space_editor

    choices = {k["path"]: k["choices"] for k in vocab}
    for preset in forms.SPACES:
        knobs = space_editor.read_space(tmp_path, preset)
        controls = space_editor.controls_from_space(vocab, knobs)
        again, errors = space_editor.space_from_controls(vocab, controls)
        assert errors == {} and set(again) == set(knobs), preset
        for path, spec in knobs.items():
            if isinstance(spec, dict) and spec.get("choices") == "all":
                allowed = [c for c in choices[path] if c not in spec.get("exclude", [])]
                assert again[path] == {"choices": allowed}, path
            elif isinstance(spec, dict) and "low" in spec:
                assert again[path] == {"log": False, **spec}, path
            else:
                assert again[path] == spec, path
    survey = space_editor.controls_from_space(vocab, space_editor.read_space(tmp_path, "survey"))
    assert "none" not in survey["quant.input_quantizer"]["checked"]  # its exclude
    assert survey["train.lr"] == {"low": 0.0001, "high": 0.1, "log": True}
    assert survey["arch.width"] == {"values": "16, 32, 64, 128"}  # numbers from a list


@pytest.mark.parametrize(("knob", "values", "error"), [
    ("arch.width", {"low": 8, "high": None}, "both low and high"),
    ("arch.width", {"low": 8.5, "high": 16}, "Whole numbers"),
    ("arch.width", {"low": 2, "high": 16}, "Within 4 to 1024"),
    ("arch.width", {"low": 32, "high": 16}, "must not exceed"),
    ("quant.clip", {"low": 0.0, "high": 1.0, "log": True}, "Within 0.1 to 4"),
    ("train.weight_decay", {"low": 0.0, "high": 0.1, "log": True}, "log range needs low"),
    ("arch.family", {"checked": ["plain", "nope"]}, "Not a choice: 'nope'"),
    ("arch.width", {"values": "16, x"}, "Not a number: 'x'"),
    ("arch.width", {"values": "16, 2048"}, "Within 4 to 1024"),
    ("arch.width", {"values": "16, 24.5"}, "Whole numbers"),
    ("arch.width", {"values": "16, 32", "low": 8, "high": 64}, "not both"),
])  # fmt: skip
def test_space_editor_inline_errors(vocab, knob: str, values: dict, error: str) -> None:
    from explorer import space_editor

    controls = {"arch.family": {"checked": ["plain", "bireal"]}, knob: values}
    _, errors = space_editor.space_from_controls(vocab, controls)
    assert error in errors[knob]


def test_space_editor_fixes_single_values_and_needs_a_searched_knob(vocab) -> None:
    from explorer import space_editor

    knobs, errors = space_editor.space_from_controls(vocab, {
        "arch.family": {"checked": ["bireal"]}, "arch.width": {"low": 16, "high": 16},
        "train.lr": {"low": 0.001, "high": 0.1, "log": True},
        "train.batch_size": {"values": "32, 64, 32"}, "arch.depth": {"values": "3"}})  # fmt: skip
    assert errors == {}
    assert knobs == {"arch.family": "bireal", "arch.width": 16, "arch.depth": 3,
                     "train.lr": {"low": 0.001, "high": 0.1, "log": True},
                     "train.batch_size": {"choices": [32, 64]}}  # fmt: skip
    _, errors = space_editor.space_from_controls(vocab, {"arch.family": {"checked": ["plain"]}})
    assert "Search at least one knob" in errors[""]


def test_space_files_stay_in_runs_spaces(tmp_path: Path) -> None:
    from explorer import space_editor

    assert paths.space_file(tmp_path, "mine") == (tmp_path / "spaces" / "mine.json").resolve()
    for bad in ("../x", ".hidden", "a/b", "", "x" * 65):
        with pytest.raises(ValueError, match="space name"):
            paths.space_file(tmp_path, bad)
    temp, target = space_editor.write_space(tmp_path, "mine", {"arch.width": 16})
    assert temp.parent == target.parent and json.loads(temp.read_text()) == {"arch.width": 16}
    temp.rename(target)
    assert space_editor.saved_spaces(tmp_path) == ["mine"]
    choices = space_editor.space_choices(tmp_path)
    assert choices == {"quick": "quick", "survey": "survey", "mine.json": str(target)}
    assert space_editor.space_options(tmp_path)[-1] == {"label": "mine (saved)",
                                                        "value": "mine.json"}
    assert space_editor.read_space(tmp_path, "mine.json") == {"arch.width": 16}
    request, errors = forms.validate_search_form(_form(space="mine.json"), ["digits"], set(),
                                                 choices)
    assert errors == {} and request.space == str(target)


def test_save_space_checks_with_the_probe(explorer_state, vocab, monkeypatch) -> None:
    from explorer import space_editor

    verdicts = iter([{"error": "knob arch.width: bad"}, {"ok": True, "knobs": 2}])
    monkeypatch.setattr(actions, "run_probe", lambda *args: next(verdicts))
    explorer_state.vocab = vocab
    controls = {"arch.family": {"checked": ["plain", "bireal"]},
                "arch.width": {"low": 16, "high": 16}}  # fmt: skip
    assert explorer_state.save_space("s", {}) == ("Load a space first.", False)
    assert explorer_state.save_space("../s", controls)[0].startswith("space name '../s'")
    message, ok = explorer_state.save_space("s", {"arch.width": {"low": 1, "high": 2}})
    assert not ok and "red" in message
    assert explorer_state.save_space("s", controls) == ("Not saved: knob arch.width: bad", False)
    assert space_editor.saved_spaces(explorer_state.runs_dir) == []  # nothing left behind
    message, ok = explorer_state.save_space("s", controls)
    assert ok and message.startswith("Saved 's' (1 knobs searched, 1 fixed)")
    assert space_editor.read_space(explorer_state.runs_dir, "s.json") == {
        "arch.family": {"choices": ["plain", "bireal"]}, "arch.width": 16}
    assert list((explorer_state.runs_dir / "spaces").iterdir()) == [
        (explorer_state.runs_dir / "spaces" / "s.json")]


@pytest.mark.slow  # the probe imports torch in its own process
def test_space_probe_check_runs_spaces(tmp_path: Path) -> None:
    from explorer import space_probe

    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"arch.family": {"choices": ["plain", "bireal"]}}))
    bad.write_text(json.dumps({"arch.family": {"choices": ["nope"]}}))
    assert space_probe.run_probe("check", str(good)) == {"ok": True, "knobs": 1}
    assert "'nope' is not allowed" in space_probe.run_probe("check", str(bad))["error"]
    assert len(space_probe.run_probe("describe")) > 20


# -- trial detail: knobs, architecture, latency by machine ------------------------------------

SUMMARY = {  # spaces.summary's to_dict() of a float stem, a binary conv and a binary head
    "layers": [
        {"name": "stem.0", "kind": "Conv2d", "input_precision": 32, "output_shape": [16, 8, 8],
         "params": {"32": 160}, "binary_macs": 0, "float_macs": 9216, "memory_bits": 5120},
        {"name": "body.0.conv1", "kind": "BinaryConv2d", "input_precision": 1,
         "output_shape": [16, 8, 8], "params": {"1": 2304}, "binary_macs": 147456,
         "float_macs": 0, "memory_bits": 2304},
        {"name": "head.1", "kind": "BinaryLinear", "input_precision": 1, "output_shape": [10],
         "params": {"1": 160, "32": 10}, "binary_macs": 160, "float_macs": 0,
         "memory_bits": 480},
    ],
    "params": {"1": 2464, "32": 170}, "memory_bits": 7904,
}


def test_architecture_rows_precision_shape_bits_and_bops() -> None:
    from explorer import architecture
    from spaces.summary import FLOAT_BITS

    assert architecture.FLOAT_BITS == FLOAT_BITS
    rows = architecture.architecture_rows(SUMMARY)
    assert rows[0] == ["stem.0", "Conv2d", "32/32", "16×8×8", "160", "5,120", "9,437,184"]
    assert rows[1] == ["body.0.conv1", "BinaryConv2d", "1/1", "16×8×8", "2,304", "2,304",
                       "147,456"]
    assert rows[2][2:] == ["1/1", "10", "170", "480", "160"]  # the 32-bit bias: weights 1-bit
    assert rows[3] == ["Total", "", "", "", "2,634", "7,904", f"{9437184 + 147456 + 160:,}"]
    assert architecture.architecture_rows({}) == []
    assert "No architecture summary" in _text(architecture.architecture_table({}))


def test_knob_status_marks_what_was_sampled() -> None:
    params = {"family": "plain", "train.lr": 0.01}
    space = {"arch.family": {"choices": ["plain", "bireal"]}, "train.lr": {"low": 1e-3},
             "train.bop_threshold": {"low": 1e-9, "high": 1e-5}, "arch.stem": "float"}
    status = {key: panels.knob_status(key, params, space)
              for key in ("arch.family", "train.lr", "train.bop_threshold", "arch.stem", "seed")}
    assert status == {"arch.family": "sampled", "train.lr": "sampled",
                      "train.bop_threshold": "unsampled", "arch.stem": "fixed", "seed": "fixed"}
    assert panels.knob_status("train.bop_threshold", params, {}) == "unsampled"


def test_detail_marks_knobs_and_shows_architecture_and_latency_by_machine(storage) -> None:
    from search.remeasure import LATENCY_ATTR

    assert data.REMEASURED_ATTR == LATENCY_ATTR  # the explorer spells it without torch
    study = make_study(storage, "s1", [(0.9, 1.0)],
                       space_knobs={"arch.family": {"choices": ["plain"]},
                                    "arch.width": {"choices": [8, 16]},
                                    "arch.depth": {"low": 1, "high": 3}})
    study.set_user_attr(LATENCY_ATTR, {"0": {"Other CPU | avx2 | 1 threads": {
        "latency_ms": 0.75, "iqr_ms": 0.01, "measured_at": "2026-12-06T08:00:00+00:00"}}})
    trial = complete_trial(0.8, 0.5)
    trial.set_user_attr("summary", SUMMARY)
    trial.set_user_attr("config", {"arch": {"family": "plain", "width": 16, "depth": 2}})
    study.add_trial(trial)
    detail = data.load_trial_detail(storage, "s1", 1)
    assert detail.summary == SUMMARY and detail.space_knobs["arch.depth"]["high"] == 3
    assert data.load_trial_detail(storage, "s1", 0).remeasured["Other CPU | avx2 | 1 threads"]
    text = _text(panels.detail_children(detail, False, "s1"))
    assert "knob-sampled" in text and "knob-unsampled" in text  # width sampled; family not
    assert "architecture-table" in text and "BinaryConv2d" in text and "147,456" in text
    assert "Not re-measured yet" in text and "remeasure-button" in text
    first = data.load_trial_detail(storage, "s1", 0)
    text = _text(panels.detail_children(first, True, "s1", ("Trial 0: 0.7 ms", True)))
    assert "Other CPU | avx2 | 1 threads" in text and "0.75 ms" in text
    assert "remeasure-message ok" in text and "Trial 0: 0.7 ms" in text
    untrained = _text(panels.detail_children(dataclasses.replace(first, metrics={}), False, "s1"))
    assert "remeasure-button" not in untrained and "architecture-table" not in untrained


def test_remeasure_command_parses_in_app_py() -> None:
    import app
    from explorer import remeasure

    command = remeasure.remeasure_command("s", 4, "x.journal")
    assert command[:3] == [sys.executable, str(REPO / "app.py"), "remeasure"]
    args = app.build_parser().parse_args(command[2:])
    assert (args.study, args.trial, args.storage, args.func) == ("s", [4], "x.journal",
                                                                 app.cmd_remeasure)


def test_remeasure_reads_the_cli_answer(monkeypatch) -> None:
    from explorer import remeasure

    answers = iter([
        ({"machine": "M | avx2 | 1 threads",
          "trials": [{"trial": 3, "stored_ms": 0.5, "latency_ms": 0.6}]}, [], None),
        (None, ["error: no trial 3"], "error: no trial 3"),
        ({"trials": []}, [], None),
    ])
    monkeypatch.setattr(remeasure, "run_app", lambda command, timeout: next(answers))
    assert remeasure.remeasure_trial("x", "s", 3) == (
        "Trial 3: 0.6 ms on M | avx2 | 1 threads (stored 0.5 ms, ×1.20).", True)
    assert remeasure.remeasure_trial("x", "s", 3) == (
        "Could not re-measure trial 3: error: no trial 3", False)
    assert remeasure.remeasure_trial("x", "s", 3)[1] is False


def test_explorer_remeasure_refuses_untrained_trials(explorer_state, storage, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(actions, "remeasure_trial",
                        lambda *args: calls.append(args) or ("measured", True))
    make_study(storage, "s1", [(0.9, 1.0)], failed=1)
    assert "no trial 7" in explorer_state.remeasure("s1", 7)[0]
    assert "no trial" in explorer_state.remeasure(None, 0)[0]
    assert explorer_state.remeasure("s1", 1) == (
        "Trial 1 is failed: it has no trained weights to time.", False)
    assert explorer_state.remeasure("s1", 0) == ("measured", True)
    assert calls == [("spec", "s1", 0)]


def test_child_run_app_reports_errors(tmp_path: Path) -> None:
    from explorer.child import run_app

    ok = [sys.executable, "-c", "import json,sys; print('note: hi', file=sys.stderr);"
          "print(json.dumps({'a': [1]}, indent=2))"]
    assert run_app(ok, 30) == ({"a": [1]}, ["note: hi"], None)
    bad = [sys.executable, "-c", "import sys; sys.exit('error: bad name')"]
    assert run_app(bad, 30) == (None, ["error: bad name"], "error: bad name")
    assert run_app([sys.executable, "-c", "print('x')"], 30)[2] == "its answer was unreadable"
    assert run_app([sys.executable, "-c", "import time; time.sleep(5)"], 0.5)[2] == \
        "no answer in 0.5 s"


# -- a study with three objectives (accuracy, latency, size) ------------------------------------


def sized_trial(acc: float, latency: float, size_kb: float) -> optuna.trial.FrozenTrial:
    """A complete trial of an `--objectives acc,latency,size` search."""
    trial = complete_trial(acc, latency)
    metrics = {**trial.user_attrs["metrics"], "packed_kb": size_kb}
    return create_trial(state=TrialState.COMPLETE, values=[acc, latency, size_kb],
                        params=trial.params, distributions=DISTRIBUTIONS,
                        user_attrs={**trial.user_attrs, "metrics": metrics})


def sized_study(storage, name: str, points: list[tuple[float, float, float]]):
    study = optuna.create_study(storage=storage, study_name=name,
                                directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("bnnx", {"dataset": "digits", "space": "quick", "trials": 9,
                                 "objectives": ["acc", "latency", "size"]})
    for point in points:
        study.add_trial(sized_trial(*point))
    return study


def test_pareto_front_3_matches_brute_force() -> None:
    import random

    rng = random.Random(3)
    points = [(i, rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([1.0, 2.0, 3.0]),
               rng.choice([10.0, 20.0, 30.0])) for i in range(60)]
    points.append((60, *points[0][1:]))  # a duplicate: on the front with its twin or not at all

    def dominated(p):
        return any(q[1] >= p[1] and q[2] <= p[2] and q[3] <= p[3] and q[1:] != p[1:]
                   for q in points)

    expected = {p[0] for p in points if not dominated(p)}
    assert data.pareto_front_3(points) == expected and expected
    assert (0 in expected) == (60 in expected)
    assert data.pareto_front_3([]) == set()


POINTS_3 = [(0.9, 1.0, 40.0), (0.95, 2.0, 50.0), (0.8, 1.5, 5.0), (0.7, 3.0, 60.0)]


def test_three_objective_front_keeps_small_models(storage) -> None:
    sized_study(storage, "s3", POINTS_3)
    view = data.load_study_view(storage, "s3")
    assert view.with_size and view.objectives == ["acc", "latency", "size"]
    # trial 2 is dominated in accuracy and latency, but it is the smallest: on the front
    assert {r.number for r in view.front} == {0, 1, 2}
    assert not data.load_study_view(storage, "s3").rows[3].on_front
    make_study(storage, "s2", [(0.9, 1.0), (0.8, 1.5)])
    assert not data.load_study_view(storage, "s2").with_size


def test_three_objective_figure_colours_by_size_and_projects_size(storage) -> None:
    sized_study(storage, "s3", POINTS_3)
    view = data.load_study_view(storage, "s3")
    fig = figures.pareto_figure(view, selected=2)
    trials, front = (t for t in fig.data if t.name in ("trials", "Pareto front (accuracy, "
                                                                 "latency, size)"))
    assert front.mode == "markers"  # no staircase: the front is not monotonic in 2 of 3
    assert list(trials.marker.color) == [60.0] and sorted(front.marker.color) == [5.0, 40.0, 50.0]
    assert trials.marker.colorbar.title.text == figures.SIZE_COLOR_TITLE
    assert "%{customdata[1]}" in front.hovertemplate and "5 KB" in {c[1] for c in front.customdata}
    assert not any(str(t.name).startswith("knee") for t in fig.data)
    assert "front in 3 objectives" in fig.layout.title.text
    assert fig.data[-1].y == (0.8,)  # the selection ring, on the accuracy axis
    knob = figures.pareto_figure(view, color_by="width")  # a picked knob wins over size
    assert knob.data[0].marker.colorbar.title.text == "width"

    sized = figures.pareto_figure(view, selected=2, projection="size")
    trials, front = sized.data[0], sized.data[1]
    assert list(front.y) == [r.size_kb for r in view.front] and list(trials.y) == [60.0]
    assert "%{text}" in front.hovertemplate and "%{y:.2%}" not in front.hovertemplate
    assert list(front.text) == [f"{r.val_accuracy:.2%}" for r in view.front]
    assert trials.marker.colorbar.title.text == figures.ACCURACY_COLOR_TITLE
    assert sized.layout.yaxis.title.text.startswith("Packed model size (KB)")
    assert sized.layout.yaxis.type == "log"  # 5 KB to 60 KB spans more than 10x
    assert sized.data[-1].y == (5.0,)

    make_study(storage, "s2", [(0.9, 1.0), (0.95, 2.0), (0.8, 0.5)])
    two = figures.pareto_figure(data.load_study_view(storage, "s2"), projection="size")
    assert two.data[-1].mode == "lines+markers" or any(t.mode == "lines+markers" for t in two.data)
    assert two.layout.yaxis.title.text.startswith("Validation accuracy")  # no size axis here


# -- published reference results on the Pareto view --------------------------------------------


def test_reference_table_is_cited_per_known_dataset() -> None:
    from explorer import references
    from search.datasets import DATASETS

    assert set(references.REFERENCES) <= set(DATASETS)
    assert references.references_for("digits") == [] and references.references_for(None) == []
    assert [r.label for r in references.references_for("mnist")] == ["BinaryNet MLP",
                                                                      "Larq binary CNN"]
    assert len(references.references_for("cifar10")) == 4
    for refs in references.REFERENCES.values():
        for ref in refs:
            assert 0.5 < ref.accuracy < 1 and ref.url.startswith("https://") and ref.source


def test_references_are_lines_with_cited_hover_not_points(storage) -> None:
    from explorer.references import references_for

    make_study(storage, "m", [(0.9, 1.0), (0.95, 2.0)], dataset="mnist")
    view = data.load_study_view(storage, "m")
    plain = figures.pareto_figure(view)
    refs = references_for("mnist")
    fig = figures.pareto_figure(view, references=refs)
    assert [t.name for t in fig.data] == [t.name for t in plain.data]  # clicks see no change
    lines = [s for s in fig.layout.shapes if s.line.dash == "dot"]
    assert sorted(s.y0 for s in lines) == sorted(r.accuracy for r in refs)
    assert all(s.xref == "paper" for s in lines) and sum(bool(s.showlegend) for s in lines) == 1
    labels = {a.text: a.hovertext for a in fig.layout.annotations}
    hover = labels["BinaryNet MLP 99.0%"]
    assert "arXiv:1602.02830" in hover and "no latency on bnnx's kernels" in hover
    assert max(fig.layout.yaxis.tickvals) >= 0.9904  # the axis reaches the highest reference
    note = _text(panels.references_children(refs, "mnist"))
    assert "https://arxiv.org/abs/1602.02830" in note and "99.04%" in note

    make_study(storage, "d", [(0.9, 1.0)])  # digits: none published
    none = figures.pareto_figure(data.load_study_view(storage, "d"), references=[])
    assert "no published results for digits" in none.layout.title.text
    assert not none.layout.shapes and "No published" in _text(panels.references_children([],
                                                                                         "digits"))
    assert panels.references_children(None, "digits") == []
    sized_study(storage, "s3", POINTS_3)
    sized = figures.pareto_figure(data.load_study_view(storage, "s3"), projection="size",
                                  references=refs)
    assert not sized.layout.shapes  # accuracy lines have no place on the size axis


def test_dataset_choices_say_whether_they_load_offline(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BNNX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    options = data.dataset_options(["digits", "mnist"])
    assert options == [{"label": "digits (offline)", "value": "digits"},
                       {"label": "mnist (downloads once)", "value": "mnist"}]
