"""Plotly figures built from data.py rows; pure functions, so tests inspect traces directly."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .data import HOVER_PARAMS, StudyView, TrialRow

ALL_COLOR = "#94a3b8"
FRONT_COLOR = "#ea580c"
SELECTED_COLOR = "#2563eb"
ACCENT_COLOR = "#0f766e"
FONT = "Inter, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


def _base_layout(fig: go.Figure, **layout: Any) -> go.Figure:
    defaults = {
        "template": "plotly_white",
        "font": {"family": FONT, "size": 13, "color": "#1e293b"},
        "margin": {"l": 64, "r": 24, "t": 36, "b": 56},
        "hoverlabel": {"font": {"family": FONT}, "bgcolor": "white", "bordercolor": "#cbd5e1"},
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
    return _base_layout(fig)


def short(value: Any) -> Any:
    """Floats to 4 significant digits (a sampled lr has 17), everything else unchanged."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _customdata(rows: list[TrialRow]) -> list[list[Any]]:
    return [[r.number, *(short(r.params.get(k, "–")) for k in HOVER_PARAMS)] for r in rows]


def _hovertemplate() -> str:
    lines = [
        "<b>Trial %{customdata[0]}</b>",
        "val accuracy: %{y:.2%}",
        "latency: %{x:.4g} ms",
        *(f"{k}: %{{customdata[{i}]}}" for i, k in enumerate(HOVER_PARAMS, start=1)),
    ]
    return "<br>".join(lines) + "<extra></extra>"


def pareto_figure(view: StudyView, selected: int | None = None) -> go.Figure:
    """Accuracy vs latency of every completed trial, front drawn as an orange staircase."""
    if not view.rows:
        failed = view.counts.get("fail", 0)
        if view.counts.get("running"):
            hint = "Waiting for the first trial to finish…"
        elif failed:
            hint = f"No completed trials: {failed} failed (see the search log)."
        else:
            hint = "No completed trials."
        return empty_figure(hint)
    fig = go.Figure()
    hover = _hovertemplate()
    rows = view.rows
    fig.add_trace(
        go.Scatter(
            name="all trials",
            x=[r.latency_ms for r in rows],
            y=[r.val_accuracy for r in rows],
            mode="markers",
            customdata=_customdata(rows),
            hovertemplate=hover,
            marker={
                "size": 10,
                "color": ALL_COLOR,
                "opacity": 0.8,
                "line": {"width": 1, "color": "white"},
            },
        )
    )
    front = view.front
    fig.add_trace(
        go.Scatter(
            name="Pareto front",
            x=[r.latency_ms for r in front],
            y=[r.val_accuracy for r in front],
            mode="lines+markers",
            line={"color": FRONT_COLOR, "width": 2, "shape": "hv"},
            marker={"size": 12, "color": FRONT_COLOR, "line": {"width": 1.5, "color": "white"}},
            customdata=_customdata(front),
            hovertemplate=hover,
        )
    )
    chosen = [r for r in rows if r.number == selected]
    if chosen:
        fig.add_trace(
            go.Scatter(
                name=f"trial {selected}",
                x=[chosen[0].latency_ms],
                y=[chosen[0].val_accuracy],
                mode="markers",
                customdata=_customdata(chosen),
                hovertemplate=hover,
                showlegend=False,
                marker={
                    "size": 18,
                    "color": "rgba(0,0,0,0)",
                    "line": {"width": 3, "color": SELECTED_COLOR},
                },
            )
        )
    failed = view.counts.get("fail", 0)
    title = f"{len(rows)} completed · {len(front)} on the front"
    if failed:
        title += f" · {failed} failed (not plotted)"
    _base_layout(
        fig,
        title={"text": title, "font": {"size": 14, "color": "#475569"}, "x": 0.01},
        xaxis_title="Latency per image (ms, bnnx packed-bit CPU kernels) — lower is better",
        yaxis_title="Validation accuracy — higher is better",
        legend={"orientation": "h", "y": -0.2, "x": 0.5, "xanchor": "center", "yanchor": "top"},
        margin={"l": 64, "r": 24, "t": 36, "b": 88},
        uirevision=view.name,
        hovermode="closest",
        clickmode="event",
    )
    fig.update_yaxes(tickformat=".0%", zeroline=False)
    fig.update_xaxes(zeroline=False, rangemode="tozero")
    return fig


def learning_curve_figure(curve: list[dict[str, Any]]) -> go.Figure:
    """Validation accuracy (left axis) and training loss (right axis) per epoch."""
    if not curve:
        return empty_figure("No learning curve recorded.")
    epochs = [p.get("epoch") for p in curve]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            name="val accuracy",
            x=epochs,
            y=[p.get("val_accuracy") for p in curve],
            mode="lines+markers",
            line={"color": ACCENT_COLOR, "width": 2},
            hovertemplate="epoch %{x}: %{y:.2%}<extra>val accuracy</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            name="train loss",
            x=epochs,
            y=[p.get("train_loss") for p in curve],
            yaxis="y2",
            mode="lines+markers",
            line={"color": FRONT_COLOR, "width": 2, "dash": "dot"},
            hovertemplate="epoch %{x}: %{y:.4f}<extra>train loss</extra>",
        )
    )
    return _base_layout(
        fig,
        title={"text": "Learning curve", "font": {"size": 14}, "x": 0.01},
        xaxis={"title": "Epoch", "dtick": 1},
        yaxis={"title": "Validation accuracy", "tickformat": ".0%"},
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
    return _base_layout(
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
