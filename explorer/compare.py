"""Two to four trials side by side: what differs in their configs, their learning curves on one
plot and their per-layer latency as grouped bars. Built from data.TrialDetail objects."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

from .data import TrialDetail
from .figures import KNOB_COLORS, base_layout, empty_figure, percent_axis, short
from .panels import GRAPH_CONFIG, flatten, metric_rows

COMPARE_MIN, COMPARE_MAX = 2, 4
HEADLINE_METRICS = ("Validation accuracy", "Latency per image", "Packed model size")
MISSING = "–"


def selected_numbers(points: dict | None) -> list[int]:
    """Trial numbers of a box or lasso selection on the Pareto plot (customdata[0] of each
    point; decorations carry none), in selection order, without repeats."""
    numbers = []
    for point in (points or {}).get("points") or []:
        data = point.get("customdata")
        number = data[0] if isinstance(data, list) and data else None
        if isinstance(number, int) and not isinstance(number, bool):
            numbers.append(number)
    return list(dict.fromkeys(numbers))


def config_diff(details: list[TrialDetail]) -> tuple[list[tuple[str, list[Any]]], int]:
    """(rows of the settings whose values differ, count of identical settings hidden): each
    row is a dotted config key and one value per trial ('–' where a trial has none)."""
    configs = [dict(flatten(d.config or d.params)) for d in details]
    keys = list(dict.fromkeys(k for config in configs for k in config))
    rows, same = [], 0
    for key in keys:
        values = [config.get(key, MISSING) for config in configs]
        if all(v == values[0] for v in values):
            same += 1
        else:
            rows.append((key, [short(v) for v in values]))
    return rows, same


def headline_rows(details: list[TrialDetail]) -> list[tuple[str, list[str]]]:
    """State, accuracy, latency and size per trial, formatted as the detail panel does."""
    per_trial = [dict(metric_rows(d.metrics, d.isa)) for d in details]
    rows = [("state", [d.kind for d in details])]
    rows += [(name, [m[name] for m in per_trial]) for name in HEADLINE_METRICS]
    return rows


def curves_figure(details: list[TrialDetail]) -> go.Figure:
    """Each trial's validation accuracy per epoch, overlaid (a pruned trial's rungs when it
    has no curve)."""
    fig = go.Figure()
    accuracies: list[float | None] = []
    for i, d in enumerate(details):
        curve = d.learning_curve or [{"epoch": e, "val_accuracy": a}
                                     for e, a in sorted(d.rungs.items())]
        if not curve:
            continue
        ys = [p.get("val_accuracy") for p in curve]
        accuracies += ys
        fig.add_trace(go.Scatter(
            name=f"trial {d.number}", x=[p.get("epoch") for p in curve], y=ys,
            mode="lines+markers", line={"width": 2, "color": KNOB_COLORS[i % len(KNOB_COLORS)]},
            hovertemplate=f"epoch %{{x}}: %{{y:.2%}}<extra>trial {d.number}</extra>",
        ))
    if not fig.data:
        return empty_figure("None of these trials recorded a learning curve.")
    return base_layout(
        fig, title={"text": "Validation accuracy per epoch", "font": {"size": 14}, "x": 0.01},
        xaxis={"title": "Epoch", "dtick": 1}, yaxis=percent_axis(accuracies),
        legend={"orientation": "h", "y": -0.25, "x": 0.5, "xanchor": "center"}, height=320,
    )


def layer_latency_compare_figure(details: list[TrialDetail]) -> go.Figure:
    """Per-layer latency as grouped bars, a colour per trial, layers in network order."""
    fig = go.Figure()
    layers: list[str] = []
    for i, d in enumerate(details):
        if not d.layer_latency:
            continue
        names = [f"{layer.get('name')} · {layer.get('kind')}" for layer in d.layer_latency]
        layers += names
        total = sum(float(layer.get("ms") or 0) for layer in d.layer_latency)
        fig.add_trace(go.Bar(
            name=f"trial {d.number} ({total:.3g} ms)", orientation="h", y=names,
            x=[layer.get("ms") for layer in d.layer_latency],
            marker_color=KNOB_COLORS[i % len(KNOB_COLORS)],
            hovertemplate=f"%{{y}}: %{{x:.4g}} ms<extra>trial {d.number}</extra>",
        ))
    if not fig.data:
        return empty_figure("None of these trials recorded per-layer latency.")
    order = list(dict.fromkeys(layers))
    return base_layout(
        fig, title={"text": "Latency per layer", "font": {"size": 14}, "x": 0.01},
        barmode="group", xaxis={"title": "Latency (ms)"},
        yaxis={"categoryorder": "array", "categoryarray": order[::-1], "automargin": True},
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center"},
        height=max(320, 90 + 14 * len(order) * len(fig.data)),
    )


def _table(header: list[str], rows: list[tuple[str, list[Any]]]) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(h) for h in header])),
            html.Tbody([html.Tr([html.Th(key), *(html.Td(str(v)) for v in values)])
                        for key, values in rows]),
        ],
        className="kv compare-table",
    )


def compare_children(details: list[TrialDetail], selected: int) -> list[Any]:
    """The compare panel for the chosen trials, or what to do to get one."""
    if selected < COMPARE_MIN or selected > COMPARE_MAX:
        return [html.Div(
            f"{selected} trial{'s' if selected != 1 else ''} selected; compare takes "
            f"{COMPARE_MIN} to {COMPARE_MAX}: draw a box or lasso on the plot (its toolbar), or "
            "Ctrl/Shift-click rows of the table.",
            className="placeholder",
        )]
    header = ["", *(f"Trial {d.number}" for d in details)]
    diff, same = config_diff(details)
    note = f"{same} identical settings not shown." if same else ""
    return [
        _table(header, headline_rows(details)),
        html.H4("Configuration differences", className="compare-title"),
        _table(header, diff) if diff else html.Div("The configs are identical.",
                                                   className="muted"),
        html.Div(note, className="muted compare-note"),
        html.Div(
            [
                dcc.Graph(id="compare-curves", figure=curves_figure(details),
                          config=GRAPH_CONFIG),
                dcc.Graph(id="compare-latency", figure=layer_latency_compare_figure(details),
                          config=GRAPH_CONFIG),
            ],
            className="detail-grid",
        ),
    ]
