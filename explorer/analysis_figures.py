"""Figures of the analysis views, from analysis.py data: pure functions, tests read the traces."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .analysis import StudyTrials, best_so_far, hypervolume_points
from .data import is_number
from .figures import (
    ACCENT_COLOR,
    ALL_COLOR,
    FRONT_COLOR,
    KNOB_COLORS,
    base_layout,
    empty_figure,
    percent_axis,
    short,
    sort_key,
)

TOO_FEW = "No trained trials yet: the analysis fills in as trials complete."
LATENCY_BANDS = ("fastest third", "middle third", "slowest third")


def _is_accuracy(name: str) -> bool:
    return "accuracy" in name


def _title(text: str) -> dict[str, Any]:
    return {"text": text, "font": {"size": 14}, "x": 0.01}


def hypervolume_figure(study: StudyTrials) -> go.Figure:
    """The front's hypervolume after each trained trial, as the search stored it, with the
    reference point it is measured against."""
    points = hypervolume_points(study)
    if not points:
        return empty_figure("No hypervolume recorded yet (it is stored with each trained, "
                            "feasible trial).")
    reference = ", ".join(
        f"{name} {short(float(v))}" for name, v in zip(study.metric_names, study.hv_reference or [],
                                                       strict=False)
    )
    fig = go.Figure(go.Scatter(
        x=list(range(1, len(points) + 1)),
        y=[hv for _, hv in points],
        customdata=[[n] for n, _ in points],
        mode="lines+markers",
        line={"shape": "hv", "color": ACCENT_COLOR, "width": 2},
        marker={"size": 6},
        name="hypervolume",
        hovertemplate="after trial %{customdata[0]}: %{y:.4g}<extra></extra>",
    ))
    return base_layout(
        fig,
        title=_title(f"Hypervolume of the front · reference point ({reference or 'not stored'})"),
        xaxis={"title": "Trained trials, in completion order", "rangemode": "tozero"},
        yaxis={"title": "Hypervolume (higher is better)", "rangemode": "tozero"},
        height=340,
    )


def history_figure(study: StudyTrials) -> go.Figure:
    """One panel per objective: each trained trial's value by trial number and the best so
    far."""
    if not study.trained:
        return empty_figure(TOO_FEW)
    count = len(study.metric_names)
    fig = make_subplots(rows=1, cols=count, subplot_titles=study.metric_names,
                        horizontal_spacing=0.1)
    numbers = [t.number for t in study.trained]
    for i, (name, direction) in enumerate(zip(study.metric_names, study.directions,
                                              strict=True)):
        values = study.objective(i)
        fmt = ".2%" if _is_accuracy(name) else ".4g"
        fig.add_trace(go.Scatter(
            x=numbers, y=values, mode="markers", name="trial",
            marker={"size": 6, "color": ALL_COLOR, "opacity": 0.7}, showlegend=i == 0,
            legendgroup="trial", hovertemplate=f"trial %{{x}}: %{{y:{fmt}}}<extra>{name}</extra>",
        ), row=1, col=i + 1)
        fig.add_trace(go.Scatter(
            x=numbers, y=best_so_far(values, direction), mode="lines", name="best so far",
            line={"shape": "hv", "color": FRONT_COLOR, "width": 2}, showlegend=i == 0,
            legendgroup="best", hovertemplate=f"best %{{y:{fmt}}}<extra>{direction}</extra>",
        ), row=1, col=i + 1)
        axis = percent_axis(values) if _is_accuracy(name) else {}
        fig.update_yaxes(axis, row=1, col=i + 1)
        fig.update_xaxes(title_text="Trial", row=1, col=i + 1)
    return base_layout(
        fig, title=_title("Optimisation history per objective"), height=340,
        legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center"},
        margin={"l": 64, "r": 24, "t": 60, "b": 80},
    )


def importance_figure(importances: dict[str, dict[str, float]] | str) -> go.Figure:
    """Horizontal bars of each knob's importance, one colour per objective; a message when
    there is none."""
    if isinstance(importances, str):
        return empty_figure(importances)
    knobs = list(dict.fromkeys(k for per in importances.values() for k in per))
    order = sorted(knobs, key=lambda k: max(per.get(k, 0.0) for per in importances.values()))
    fig = go.Figure([
        go.Bar(
            name=objective, orientation="h", y=order, x=[per.get(k, 0.0) for k in order],
            marker_color=KNOB_COLORS[i % len(KNOB_COLORS)],
            hovertemplate=f"%{{y}}: %{{x:.3f}}<extra>{objective}</extra>",
        )
        for i, (objective, per) in enumerate(importances.items())
    ])
    return base_layout(
        fig,
        title=_title("Parameter importance per objective (Optuna PED-ANOVA, normalised)"),
        barmode="group",
        xaxis={"title": "Importance", "rangemode": "tozero"},
        yaxis={"automargin": True},
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"},
        height=max(320, 90 + 26 * len(order) * max(1, len(importances))),
    )


def _dimension(label: str, values: list[Any]) -> dict[str, Any]:
    """A parallel-coordinates axis: numbers as they are, anything else as coded categories."""
    if all(is_number(v) for v in values):
        return {"label": label, "values": values}
    labels = sorted(set(values), key=sort_key)
    code = {v: i for i, v in enumerate(labels)}
    return {"label": label, "values": [code[v] for v in values],
            "tickvals": list(range(len(labels))), "ticktext": [str(v) for v in labels]}


def parallel_figure(study: StudyTrials) -> go.Figure:
    """Every trained trial as a line through its knobs and objectives, coloured by the first
    objective. A categorical knob a trial did not sample reads '–'; a numeric one is left
    out (the axis would need a value)."""
    if not study.trained:
        return empty_figure(TOO_FEW)
    knobs = list(dict.fromkeys(k for t in study.trained for k in t.params))
    dims, left_out = [], []
    for knob in knobs:
        values = [t.params.get(knob, "–") for t in study.trained]
        numeric = [v for v in values if v != "–"]
        if "–" in values and numeric and all(is_number(v) for v in numeric):
            left_out.append(knob)
            continue
        dims.append(_dimension(knob, values))
    for i, name in enumerate(study.metric_names):
        dims.append({"label": name, "values": study.objective(i)})
    first = study.objective(0)
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line={"color": first, "colorscale": "Viridis", "showscale": True,
              "colorbar": {"title": {"text": study.metric_names[0], "side": "right"}}},
    ))
    note = f" · not sampled by every trial, left out: {', '.join(left_out)}" if left_out else ""
    return base_layout(fig, title=_title(f"Knobs and objectives of {len(first)} trained "
                                          f"trials{note}"),
                        margin={"l": 80, "r": 80, "t": 80, "b": 40}, height=420)


def latency_bands(latencies: list[float]) -> list[str]:
    """Each latency's third of the study (by rank), so groups compare at similar latency."""
    order = sorted(range(len(latencies)), key=lambda i: latencies[i])
    bands = [""] * len(latencies)
    for rank, i in enumerate(order):
        bands[i] = LATENCY_BANDS[min(2, 3 * rank // max(1, len(latencies)))]
    return bands


def marginal_figure(study: StudyTrials, knob: str | None) -> go.Figure:
    """Accuracy by each value of a categorical knob, in boxes per latency third: does one
    family (quantizer, trick) win at the same speed?"""
    if not study.trained:
        return empty_figure(TOO_FEW)
    if not knob:
        return empty_figure("No categorical knob in this study's trials.")
    acc_i = next((i for i, n in enumerate(study.metric_names) if _is_accuracy(n)), 0)
    lat_i = next((i for i, n in enumerate(study.metric_names) if "latency" in n), None)
    trials = study.trained
    raw = [t.params.get(knob, "–") for t in trials]
    values = [str(v) for v in raw]
    accuracies = study.objective(acc_i)
    bands = (latency_bands(study.objective(lat_i)) if lat_i is not None
             else ["all trials"] * len(trials))
    fig = go.Figure()
    for band, color in zip((*LATENCY_BANDS, "all trials"), (ACCENT_COLOR, FRONT_COLOR,
                                                            "#9333ea", ALL_COLOR), strict=True):
        mine = [i for i, b in enumerate(bands) if b == band]
        if not mine:
            continue
        fig.add_trace(go.Box(
            name=band, x=[values[i] for i in mine], y=[accuracies[i] for i in mine],
            customdata=[[trials[i].number] for i in mine], marker_color=color,
            boxpoints="all", jitter=0.4, pointpos=0,
            hovertemplate=f"trial %{{customdata[0]}}: %{{y:.2%}}<extra>{band}</extra>",
        ))
    order = [str(v) for v in sorted(set(raw), key=sort_key)]
    return base_layout(
        fig, title=_title(f"{study.metric_names[acc_i]} by {knob}, per latency third"),
        boxmode="group", xaxis={"title": knob, "categoryorder": "array", "categoryarray": order},
        yaxis={"title": study.metric_names[acc_i], **percent_axis(accuracies)},
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"}, height=380,
    )

