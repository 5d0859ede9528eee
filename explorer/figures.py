"""Plotly figures built from data.py rows; pure functions, so tests inspect traces directly.

Clicks: plotly picks the point whose marker edge is nearest the cursor, and every marker that
covers the cursor ties at 1 - 3/radius px, so a smaller marker beats a bigger one it overlaps
and the later of equal ones wins. So each trial sits in exactly one hoverable trace, all of them
draw markers of one size in the order they are stacked on screen, and the decorations (knee,
selection ring) are skipped by hover: a click opens the marker drawn under the cursor.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go

from .data import StudyView, TrialRow, is_number, knee_point

ALL_COLOR = "#64748b"
FRONT_COLOR = "#ea580c"
PRUNED_COLOR = "#0ea5e9"
INFEASIBLE_COLOR = "#cbd5e1"
SELECTED_COLOR = "#2563eb"
ACCENT_COLOR = "#0f766e"
KNEE_COLOR = "#9333ea"
KNOB_COLORS = (
    "#2563eb",
    "#ea580c",
    "#16a34a",
    "#9333ea",
    "#dc2626",
    "#0891b2",
    "#ca8a04",
    "#db2777",
    "#4b5563",
    "#65a30d",
)
FONT = "Inter, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
MARKER_SIZE = 10  # every hoverable marker (see the module docstring)
LATENCY_SCALES = ("auto", "linear", "log")
LOG_SPAN = 10.0  # "auto" turns the latency axis logarithmic beyond this max/min ratio
_PERCENT_STEPS = (1, 2, 5, 10, 20, 25)  # accuracy tick spacing, in percent points


def base_layout(fig: go.Figure, **layout: Any) -> go.Figure:
    defaults = {
        "template": "plotly_white",
        "font": {"family": FONT, "size": 13, "color": "#1e293b"},
        "margin": {"l": 64, "r": 24, "t": 36, "b": 56},
        # explicit: unset, plotly colours the box by trace and picks the text colour by contrast
        "hoverlabel": {
            "bgcolor": "#ffffff",
            "bordercolor": "#94a3b8",
            "font": {"family": FONT, "size": 12, "color": "#0f172a"},
            "align": "left",
        },
    }
    fig.update_layout({**defaults, **layout})
    return fig


def empty_figure(message: str) -> go.Figure:
    """A blank plot carrying a centred hint instead of empty axes."""
    fig = go.Figure()
    fig.add_annotation(
        text=message,
        showarrow=False,
        font={"size": 15, "color": "#64748b"},
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig)


def short(value: Any) -> Any:
    """Floats to 4 significant digits (a sampled lr has 17), everything else unchanged."""
    return f"{value:.4g}" if isinstance(value, float) else value


def percent_axis(values: Iterable[float | None], max_intervals: int = 6) -> dict[str, Any]:
    """An accuracy axis fitted to `values` inside 0-100%: bounds on round percents, evenly
    spaced ticks, and a little room so markers on the bounds are not cut."""
    finite = [min(1.0, max(0.0, v)) for v in values if v is not None and math.isfinite(v)]
    lo, hi = (round(100 * min(finite), 6), round(100 * max(finite), 6)) if finite else (0, 100)
    for step in _PERCENT_STEPS:
        bottom, top = math.floor(lo / step), math.ceil(hi / step)
        while top - bottom < 2:  # at least two intervals, inside 0..100
            if bottom > 0:
                bottom -= 1
            elif top * step < 100:
                top += 1
            else:
                break
        top = min(top, math.floor(100 / step))
        if top - bottom <= max_intervals:
            break
    ticks = [k * step / 100 for k in range(bottom, top + 1)]
    room = 0.03 * (ticks[-1] - ticks[0])
    return {"range": [ticks[0] - room, ticks[-1] + room], "tickvals": ticks, "tickformat": ".0%"}


def latency_axis_type(latencies: Iterable[float], scale: str = "auto") -> str:
    """'log' when asked, or in 'auto' when the latencies span more than LOG_SPAN times."""
    if scale in ("linear", "log"):
        return scale
    positive = [v for v in latencies if v > 0]
    return "log" if positive and max(positive) > LOG_SPAN * min(positive) else "linear"


# Per point trace: its headline, accuracy and latency hover lines. Each point's customdata is
# [trial number (what a click reads), size, note, *its param values]; the note is a pruned
# trial's rung epoch, or an infeasible trial's accuracy and reason.
HOVER_LINES = {
    "complete": ("complete", "val accuracy %{y:.2%}", "latency %{x:.4g} ms"),
    "front": ("complete · on the Pareto front", "val accuracy %{y:.2%}", "latency %{x:.4g} ms"),
    "pruned": (
        "pruned",
        "val accuracy %{y:.2%} at epoch %{customdata[2]}",
        "latency before training %{x:.4g} ms",
    ),
    "infeasible": ("infeasible (over budget)", "%{customdata[2]}", "latency %{x:.4g} ms"),
}


def _note(row: TrialRow) -> Any:
    if row.kind == "pruned":
        return row.rung_epoch
    if row.kind == "infeasible":
        trained = row.val_accuracy is not None
        accuracy = f"val accuracy {row.val_accuracy:.2%}" if trained else "never trained"
        return f"{accuracy}: {html.escape(row.reason or '')}"
    return ""


def _escaped(value: Any) -> Any:
    if isinstance(value, str) and ("<" in value or ">" in value or "&" in value):
        return html.escape(value)
    return value


def hover_customdata(rows: list[TrialRow], params: list[str]) -> list[list[Any]]:
    """customdata of a point trace (see HOVER_LINES); '–' for a param a trial never sampled."""
    return [
        [
            r.number,
            f"{r.size_kb:.4g} KB" if r.size_kb is not None else "size –",
            _note(r),
            *(_escaped(short(r.params.get(p, "–"))) for p in params),
        ]
        for r in rows
    ]


def hovertemplate(lines: str, params: list[str]) -> str:
    """The hover text of a point trace: the HOVER_LINES named `lines`, then the params."""
    headline, accuracy, latency = HOVER_LINES[lines]
    rows = [
        f"<b>Trial %{{customdata[0]}}</b> · {headline}",
        accuracy,
        f"{latency} · %{{customdata[1]}}",
        *(f"{html.escape(p)}: %{{customdata[{i}]}}" for i, p in enumerate(params, start=3)),
    ]
    return "<br>".join(rows) + "<extra></extra>"


def sort_key(value: Any) -> tuple:
    return (0, value, "") if is_number(value) else (1, 0, str(value))


def knob_colors(rows: list[TrialRow], param: str) -> tuple[list[Any], dict[str, Any]]:
    """Marker colours of `rows` by their value of `param` and the marker settings of the
    scale: continuous for numbers, one colour per value otherwise ('–' where not sampled)."""
    values = [r.params.get(param, "–") for r in rows]
    title = {"title": {"text": param, "side": "right"}}
    if all(is_number(v) for v in values):
        scale = {"colorscale": "Viridis", "cmin": min(values), "cmax": max(values)}
        return values, {**scale, "colorbar": title}
    labels = sorted(set(values), key=sort_key)
    n = len(labels)
    scale = []
    for i in range(n):
        color = KNOB_COLORS[i % len(KNOB_COLORS)]
        scale += [[i / n, color], [(i + 1) / n, color]]
    code = {label: i for i, label in enumerate(labels)}
    bar = {**title, "tickvals": list(range(n)), "ticktext": [str(v) for v in labels]}
    return [code[v] for v in values], {
        "colorscale": scale,
        "cmin": -0.5,
        "cmax": n - 0.5,
        "colorbar": bar,
    }


def _empty_hint(view: StudyView, pruned_hidden: int) -> str:
    failed = view.counts.get("failed", 0) + view.counts.get("stopped", 0)
    if pruned_hidden:
        return f"{pruned_hidden} pruned trials, none complete yet: tick 'Show pruned'."
    if view.counts.get("running"):
        return "Waiting for the first trial to finish…"
    if failed:
        return f"No completed trials: {failed} failed (see the search log)."
    return "No completed trials."


def _points(
    name: str,
    lines: str,
    rows: list[TrialRow],
    params: list[str],
    marker: dict[str, Any],
    floor: float | None = None,
    **trace: Any,
) -> dict[str, Any]:
    """A hoverable point trace; trials without an accuracy sit at `floor`. Traces are dicts
    that go.Figure validates once (a go.Scatter would be validated and copied again)."""
    return {
        "type": "scatter",
        "name": name,
        "mode": "markers",
        "x": [r.latency_ms for r in rows],
        "y": [floor if r.val_accuracy is None else r.val_accuracy for r in rows],
        "customdata": hover_customdata(rows, params),
        "hovertemplate": hovertemplate(lines, params),
        "marker": {"size": MARKER_SIZE, **marker},
        **trace,
    }


def _decoration(name: str, row: TrialRow, marker: dict[str, Any], **trace: Any) -> dict:
    """A marker drawn around a point that hover and clicks pass through."""
    return {
        "type": "scatter",
        "name": name,
        "mode": "markers",
        "x": [row.latency_ms],
        "y": [row.val_accuracy],
        "hoverinfo": "skip",
        "marker": marker,
        **trace,
    }


def _budget_line(fig: go.Figure, budget: float) -> None:
    """The study's latency budget as a dashed vertical line, named in the legend (a label on
    the plot would hide behind the front): trials right of it are infeasible."""
    fig.add_shape(
        type="line",
        xref="x",
        yref="paper",
        x0=budget,
        x1=budget,
        y0=0,
        y1=1,
        layer="below",
        line={"color": "#dc2626", "width": 1.5, "dash": "dash"},
        name=f"latency budget {budget:g} ms",
        showlegend=True,
    )


def pareto_figure(
    view: StudyView,
    selected: int | None = None,
    *,
    latency_scale: str = "auto",
    show_pruned: bool = False,
    color_by: str | None = None,
) -> go.Figure:
    """Accuracy vs latency: infeasible trials grey, pruned ones (when shown) at their last
    rung, the rest with the front as an orange staircase, its knee and the latency budget."""
    infeasible = view.of_kind("infeasible")
    pruned = view.of_kind("pruned")
    shown_pruned = pruned if show_pruned else []
    front = view.front
    dominated = [r for r in view.of_kind("complete") if not r.on_front]
    if not (infeasible or shown_pruned or front):
        return empty_figure(_empty_hint(view, len(pruned)))
    params = view.param_names
    plotted = [*infeasible, *shown_pruned, *dominated, *front]
    axis = percent_axis(r.val_accuracy for r in plotted)
    floor = None
    if any(r.val_accuracy is None for r in infeasible):  # a band under the lowest tick
        low, high = axis["range"]
        floor = low - 0.04 * (high - low)
        axis["range"] = [low - 0.08 * (high - low), high]

    traces = []
    if infeasible:
        marker = {"color": INFEASIBLE_COLOR, "symbol": "x"}
        traces.append(
            _points("infeasible (over budget)", "infeasible", infeasible, params, marker, floor)
        )
    if shown_pruned:
        marker = {"color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": PRUNED_COLOR}}
        traces.append(_points("pruned (last rung)", "pruned", shown_pruned, params, marker))
    colored = dominated + front
    colors, scale = knob_colors(colored, color_by) if colored and color_by in params else (None, {})
    trial_marker = {"color": ALL_COLOR, "opacity": 0.75, "line": {"width": 1, "color": "white"}}
    front_marker = {"color": FRONT_COLOR, "line": {"width": 1, "color": "white"}}
    if colors is not None:
        bar = scale.pop("colorbar")
        trial_marker.update(color=colors[: len(dominated)], **scale)
        outline = {"width": 2, "color": FRONT_COLOR}  # the front keeps its colour as outline
        front_marker.update(color=colors[len(dominated) :], line=outline, **scale)
        (trial_marker if dominated else front_marker).update(showscale=True, colorbar=bar)
    if dominated:
        traces.append(_points("trials", "complete", dominated, params, trial_marker))
    if front:
        step = {"color": FRONT_COLOR, "width": 2, "shape": "hv"}
        front_trace = _points("Pareto front", "front", front, params, front_marker, line=step)
        traces.append({**front_trace, "mode": "lines+markers"})
    knee = knee_point(front)
    if knee is not None:
        # mid-tone purple: seen on the light and the dark theme alike
        marker = {"size": 22, "symbol": "diamond-open", "color": KNEE_COLOR, "line": {"width": 2}}
        traces.append(_decoration(f"knee (trial {knee.number})", knee, marker))
    chosen = [r for r in plotted if r.number == selected and r.val_accuracy is not None]
    if chosen:
        ring = {"size": 20, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": SELECTED_COLOR}}
        traces.append(_decoration(f"trial {selected}", chosen[0], ring, showlegend=False))
    fig = go.Figure(data=traces)
    budget = view.settings.get("max_latency_ms")
    budget = budget if is_number(budget) and budget > 0 else None
    if budget is not None:
        _budget_line(fig, budget)
    counts = view.counts
    parts = [f"{counts.get('complete', 0)} complete", f"{len(front)} on the front"]
    for kind in ("infeasible", "pruned"):
        if counts.get(kind):
            parts.append(f"{counts[kind]} {kind}")
    failed = counts.get("failed", 0) + counts.get("stopped", 0)
    if failed:
        parts.append(f"{failed} failed (not plotted)")
    latencies = [r.latency_ms for r in plotted] + ([budget] if budget else [])
    axis_type = latency_axis_type(latencies, latency_scale)
    base_layout(
        fig,
        title={"text": " · ".join(parts), "font": {"size": 14, "color": "#475569"}, "x": 0.01},
        xaxis_title="Latency per image (ms, bnnx packed-bit CPU kernels) — lower is better",
        yaxis_title="Validation accuracy — higher is better",
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center", "yanchor": "top"},
        margin={"l": 64, "r": 24, "t": 36, "b": 88},
        uirevision=f"{view.name}:{axis_type}",  # keeps a zoom across polls, not across scales
        hovermode="closest",
        clickmode="event",
    )
    fig.update_yaxes(zeroline=False, **axis)
    fig.update_xaxes(zeroline=False, type=axis_type, rangemode="tozero")
    return fig


def _curve(name: str, x: list, y: list, line: dict[str, Any], fmt: str,
           **extra: Any) -> go.Scatter:
    """One per-epoch line of the learning curve, its value formatted with `fmt` on hover."""
    return go.Scatter(name=name, x=x, y=y, mode="lines+markers", line={"width": 2, **line},
                      hovertemplate=f"epoch %{{x}}: %{{y:{fmt}}}<extra>{name}</extra>", **extra)


def learning_curve_figure(curve: list[dict[str, Any]]) -> go.Figure:
    """Validation accuracy (left axis) and, when recorded, training loss (right axis) per
    epoch."""
    if not curve:
        return empty_figure("No learning curve recorded.")
    epochs = [p.get("epoch") for p in curve]
    accuracies = [p.get("val_accuracy") for p in curve]
    losses = [p.get("train_loss") for p in curve]
    fig = go.Figure(_curve("val accuracy", epochs, accuracies, {"color": ACCENT_COLOR}, ".2%"))
    if any(loss is not None for loss in losses):
        fig.add_trace(_curve("train loss", epochs, losses,
                             {"color": FRONT_COLOR, "dash": "dot"}, ".4f", yaxis="y2"))
    return base_layout(
        fig,
        title={"text": "Learning curve", "font": {"size": 14}, "x": 0.01},
        xaxis={"title": "Epoch", "dtick": 1},
        yaxis={"title": "Validation accuracy", **percent_axis(accuracies)},
        yaxis2={
            "title": "Training loss",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickformat": ".2f",
        },
        legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center"},
        margin={"l": 64, "r": 64, "t": 40, "b": 72},
        height=320,
    )


LAYER_GROUPS = {"binary": ACCENT_COLOR, "float": "#8b5cf6", "other": "#94a3b8"}


def layer_group(kind: str) -> str:
    """Colour group of a kernel kind: `b...` packed-bit ops, `float:...` fp32 ops, the rest."""
    if kind.startswith("float"):
        return "float"
    return "binary" if kind.startswith("b") else "other"


def layer_latency_figure(layers: list[dict[str, Any]]) -> go.Figure:
    """Per-layer latency as horizontal bars in network order, coloured binary/float/other."""
    if not layers:
        return empty_figure("No per-layer latency recorded.")
    labels = [f"{layer.get('name')} · {layer.get('kind')}" for layer in layers]
    fig = go.Figure()
    for group, color in LAYER_GROUPS.items():
        mine = [
            (label, layer)
            for label, layer in zip(labels, layers, strict=True)
            if layer_group(str(layer.get("kind"))) == group
        ]
        if mine:
            fig.add_trace(
                go.Bar(
                    name=group,
                    orientation="h",
                    x=[layer.get("ms") for _, layer in mine],
                    y=[label for label, _ in mine],
                    marker_color=color,
                    hovertemplate="%{y}: %{x:.4g} ms<extra></extra>",
                )
            )
    total = sum(float(layer.get("ms") or 0) for layer in layers)
    return base_layout(
        fig,
        title={
            "text": f"Latency per layer (total {total:.3g} ms)",
            "font": {"size": 14},
            "x": 0.01,
        },
        xaxis={"title": "Latency (ms)"},
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1], "automargin": True},
        legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center"},
        barmode="overlay",
        margin={"l": 64, "r": 24, "t": 40, "b": 72},
        height=max(320, 72 + 22 * len(layers)),
    )
