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

import numpy as np
import plotly.graph_objects as go

from .data import StudyView, TrialRow, is_number, knee_point
from .references import Reference

ALL_COLOR = "#64748b"
FRONT_COLOR = "#ea580c"
PRUNED_COLOR = "#0ea5e9"
INFEASIBLE_COLOR = "#cbd5e1"
SELECTED_COLOR = "#2563eb"
ACCENT_COLOR = "#0f766e"
KNEE_COLOR = "#9333ea"
REFERENCE_COLOR = "#b45309"
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


def value_colors(values: list[Any], title: str) -> tuple[list[Any], dict[str, Any]]:
    """Marker colours for `values` and the marker settings of their scale: continuous for
    numbers, one colour per value otherwise; the colour bar is named `title`."""
    bar = {"title": {"text": title, "side": "right"}}
    if all(is_number(v) for v in values):
        scale = {"colorscale": "Viridis", "cmin": min(values), "cmax": max(values)}
        return values, {**scale, "colorbar": bar}
    labels = sorted(set(values), key=sort_key)
    n = len(labels)
    scale = []
    for i in range(n):
        color = KNOB_COLORS[i % len(KNOB_COLORS)]
        scale += [[i / n, color], [(i + 1) / n, color]]
    code = {label: i for i, label in enumerate(labels)}
    bar.update(tickvals=list(range(n)), ticktext=[str(v) for v in labels])
    return [code[v] for v in values], {
        "colorscale": scale,
        "cmin": -0.5,
        "cmax": n - 0.5,
        "colorbar": bar,
    }


def knob_colors(rows: list[TrialRow], param: str) -> tuple[list[Any], dict[str, Any]]:
    """value_colors of `rows` by their value of `param` ('–' where not sampled)."""
    return value_colors([r.params.get(param, "–") for r in rows], param)


# what colours the trials by default where size is an objective: the objective not on an axis
SIZE_COLOR_TITLE, ACCURACY_COLOR_TITLE = "packed size (KB)", "val accuracy"
PROJECTIONS = ("accuracy", "size")  # a 3-objective study's y axis: accuracy or size


def default_colors(rows: list[TrialRow], projection: str) -> tuple[list[Any], dict[str, Any]]:
    """A 3-objective study's colours when no knob is picked: size on the accuracy view,
    accuracy (a percent colour bar) on the size view."""
    if projection == "size":
        colors, scale = value_colors([r.val_accuracy for r in rows], ACCURACY_COLOR_TITLE)
        scale["colorbar"]["tickformat"] = ".0%"
        return colors, scale
    return value_colors([r.size_kb for r in rows], SIZE_COLOR_TITLE)


def _empty_hint(view: StudyView, pruned_hidden: int) -> str:
    failed = view.counts.get("failed", 0) + view.counts.get("stopped", 0)
    if pruned_hidden:
        return f"{pruned_hidden} pruned trials, none complete yet: tick 'Show pruned'."
    if view.counts.get("running"):
        return "Waiting for the first trial to finish…"
    if failed:
        return f"No completed trials: {failed} failed (see the search log)."
    return "No completed trials."


# A point trace with more points draws with WebGL: 5,000 SVG markers cost the browser about
# 0.3 s of a page load (bench/explorer.py); hover and clicks work alike. Smaller traces (the
# front among them) stay SVG, drawn above the WebGL canvas.
WEBGL_POINTS = 1000


def _points(
    name: str,
    lines: str,
    rows: list[TrialRow],
    params: list[str],
    marker: dict[str, Any],
    floor: float | None = None,
    size_axis: bool = False,
    **trace: Any,
) -> dict[str, Any]:
    """A hoverable point trace; trials without an accuracy sit at `floor`. On the size axis
    the accuracy moves from y to each point's text. Traces are dicts that go.Figure validates
    once (a go.Scatter would be validated and copied again)."""
    template = hovertemplate(lines, params)
    if size_axis:
        y = [r.size_kb for r in rows]
        template = template.replace("%{y:.2%}", "%{text}")
        trace["text"] = ["–" if r.val_accuracy is None else f"{r.val_accuracy:.2%}" for r in rows]
    else:
        y = [floor if r.val_accuracy is None else r.val_accuracy for r in rows]
    # numpy arrays: plotly validates them as a whole, where it walks a list element by element
    # (most of the figure's cost at 5,000 trials); None becomes NaN, which plotly leaves out
    return {
        "type": "scattergl" if len(rows) > WEBGL_POINTS else "scatter",
        "name": name,
        "mode": "markers",
        "x": np.array([r.latency_ms for r in rows], dtype=float),
        "y": np.array(y, dtype=float),
        "customdata": np.array(hover_customdata(rows, params), dtype=object),
        "hovertemplate": template,
        "marker": {"size": MARKER_SIZE, **marker},
        **trace,
    }


def _decoration(name: str, row: TrialRow, marker: dict[str, Any], size_axis: bool = False,
                **trace: Any) -> dict:
    """A marker drawn around a point that hover and clicks pass through."""
    return {
        "type": "scatter",
        "name": name,
        "mode": "markers",
        "x": [row.latency_ms],
        "y": [row.size_kb if size_axis else row.val_accuracy],
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


def add_references(fig: go.Figure, references: list[Reference]) -> None:
    """Each published accuracy as a dotted horizontal line across the plot, labelled at its
    right end; the label's hover gives the source and says why there is no latency. Shapes
    and annotations take no clicks, so a click still opens the trial under the cursor."""
    for i, ref in enumerate(references):
        fig.add_shape(
            type="line", xref="paper", yref="y", x0=0, x1=1, y0=ref.accuracy, y1=ref.accuracy,
            layer="below", line={"color": REFERENCE_COLOR, "width": 1.2, "dash": "dot"},
            name="published results (no latency on our kernels)", showlegend=i == 0,
        )
        hover = (f"<b>{html.escape(ref.label)}</b>: {ref.accuracy:.2%} test accuracy<br>"
                 f"{html.escape(ref.note)}<br>{html.escape(ref.source)}<br>"
                 "Published accuracy only: it has no latency on bnnx's kernels, so it is a "
                 "line, not a point.")
        fig.add_annotation(
            x=1, xref="paper", xanchor="right", y=ref.accuracy, yref="y", yanchor="bottom",
            text=f"{html.escape(ref.label)} {ref.accuracy:.1%}", showarrow=False,
            font={"size": 11, "color": REFERENCE_COLOR}, hovertext=hover,
            hoverlabel={"bgcolor": "#ffffff", "font": {"color": "#0f172a"}},
        )


def pareto_figure(
    view: StudyView,
    selected: int | None = None,
    *,
    latency_scale: str = "auto",
    show_pruned: bool = False,
    color_by: str | None = None,
    projection: str = "accuracy",
    references: list[Reference] | None = None,
) -> go.Figure:
    """Accuracy vs latency: infeasible trials grey, pruned ones (when shown) at their last
    rung, the rest with the front as an orange staircase, its knee and the latency budget.

    Where size is an objective too, the front is the 3-objective one: its points are outlined
    (no staircase: it is not monotonic in two of three objectives), the trials are coloured
    by size unless a knob is picked, and `projection="size"` puts size on the y axis instead
    (coloured by accuracy). `references` (None: not shown): published accuracies drawn as
    horizontal lines on the accuracy view (references.py)."""
    size_axis = view.with_size and projection == "size"
    infeasible = view.of_kind("infeasible")
    pruned = view.of_kind("pruned")
    shown_pruned = pruned if show_pruned else []
    front = view.front
    dominated = [r for r in view.of_kind("complete") if not r.on_front]
    if size_axis:  # a trial without a size has no place on this view
        infeasible, shown_pruned, front, dominated = (
            [r for r in rows if r.size_kb is not None]
            for rows in (infeasible, shown_pruned, front, dominated))
    if not (infeasible or shown_pruned or front):
        return empty_figure(_empty_hint(view, len(pruned)))
    params = view.param_names
    plotted = [*infeasible, *shown_pruned, *dominated, *front]
    references = None if size_axis else references
    axis = percent_axis([*(r.val_accuracy for r in plotted),
                         *(ref.accuracy for ref in references or ())])
    floor = None
    if not size_axis and any(r.val_accuracy is None for r in infeasible):
        low, high = axis["range"]  # a band under the lowest tick
        floor = low - 0.04 * (high - low)
        axis["range"] = [low - 0.08 * (high - low), high]

    traces = []
    if infeasible:
        marker = {"color": INFEASIBLE_COLOR, "symbol": "x"}
        traces.append(_points("infeasible (over budget)", "infeasible", infeasible, params,
                              marker, floor, size_axis))
    if shown_pruned:
        marker = {"color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": PRUNED_COLOR}}
        traces.append(_points("pruned (last rung)", "pruned", shown_pruned, params, marker,
                              size_axis=size_axis))
    colored = dominated + front
    colors, scale = None, {}
    if colored and color_by in params:
        colors, scale = knob_colors(colored, color_by)
    elif colored and view.with_size:
        colors, scale = default_colors(colored, projection)
    trial_marker = {"color": ALL_COLOR, "opacity": 0.75, "line": {"width": 1, "color": "white"}}
    front_marker = {"color": FRONT_COLOR, "line": {"width": 1, "color": "white"}}
    if colors is not None:
        bar = scale.pop("colorbar")
        trial_marker.update(color=colors[: len(dominated)], **scale)
        outline = {"width": 2, "color": FRONT_COLOR}  # the front keeps its colour as outline
        front_marker.update(color=colors[len(dominated) :], line=outline, **scale)
        (trial_marker if dominated else front_marker).update(showscale=True, colorbar=bar)
    if dominated:
        traces.append(_points("trials", "complete", dominated, params, trial_marker,
                              size_axis=size_axis))
    if front and view.with_size:
        traces.append(_points("Pareto front (accuracy, latency, size)", "front", front, params,
                              front_marker, size_axis=size_axis))
    elif front:
        step = {"color": FRONT_COLOR, "width": 2, "shape": "hv"}
        front_trace = _points("Pareto front", "front", front, params, front_marker, line=step)
        traces.append({**front_trace, "mode": "lines+markers"})
    knee = None if view.with_size else knee_point(front)  # a knee is a 2-objective idea
    if knee is not None:
        # mid-tone purple: seen on the light and the dark theme alike
        marker = {"size": 22, "symbol": "diamond-open", "color": KNEE_COLOR, "line": {"width": 2}}
        traces.append(_decoration(f"knee (trial {knee.number})", knee, marker))
    chosen = [r for r in plotted
              if r.number == selected and (size_axis or r.val_accuracy is not None)]
    if chosen:
        ring = {"size": 20, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": SELECTED_COLOR}}
        traces.append(_decoration(f"trial {selected}", chosen[0], ring, size_axis,
                                  showlegend=False))
    fig = go.Figure(data=traces)
    budget = view.settings.get("max_latency_ms")
    budget = budget if is_number(budget) and budget > 0 else None
    if budget is not None:
        _budget_line(fig, budget)
    if references:
        add_references(fig, references)
    counts = view.counts
    parts = [f"{counts.get('complete', 0)} complete", f"{len(front)} on the front"]
    for kind in ("infeasible", "pruned"):
        if counts.get(kind):
            parts.append(f"{counts[kind]} {kind}")
    failed = counts.get("failed", 0) + counts.get("stopped", 0)
    if failed:
        parts.append(f"{failed} failed (not plotted)")
    if view.with_size:
        parts.append("front in 3 objectives")
    if references == []:
        parts.append(f"no published results for {view.settings.get('dataset', 'this dataset')}")
    latencies = [r.latency_ms for r in plotted] + ([budget] if budget else [])
    axis_type = latency_axis_type(latencies, latency_scale)
    base_layout(
        fig,
        title={"text": " · ".join(parts), "font": {"size": 14, "color": "#475569"}, "x": 0.01},
        xaxis_title="Latency per image (ms, bnnx packed-bit CPU kernels) — lower is better",
        yaxis_title=("Packed model size (KB) — lower is better" if size_axis
                     else "Validation accuracy — higher is better"),
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center", "yanchor": "top"},
        margin={"l": 64, "r": 24, "t": 36, "b": 88},
        uirevision=f"{view.name}:{axis_type}:{projection}",  # a zoom survives polls only
        hovermode="closest",
        clickmode="event",
    )
    if size_axis:
        sizes = [r.size_kb for r in plotted]
        fig.update_yaxes(zeroline=False, type=latency_axis_type(sizes), rangemode="tozero")
    else:
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


# legend name -> colour: packed-bit ops and the blocks built of them, fp32 ops, the rest
LAYER_GROUPS = {
    "binary (packed bits)": ACCENT_COLOR,
    "float (fp32)": "#8b5cf6",
    "packing / other": "#94a3b8",
}
BINARY, FLOAT, OTHER = LAYER_GROUPS


def layer_group(kind: str) -> str:
    """The LAYER_GROUPS name of a kernel kind: `float:...` fp32 ops; packed-bit convs (`b...`),
    binary linear layers and units, and the blocks of binary convs (`..._block`); the rest
    (bit packing, say)."""
    if kind.startswith("float"):
        return FLOAT
    if kind.startswith(("b", "binary")) or kind.endswith("_block"):
        return BINARY
    return OTHER


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
                    showlegend=True,  # even alone: the colour needs its name
                    hovertemplate=f"%{{y}}: %{{x:.4g}} ms<extra>{group}</extra>",
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
