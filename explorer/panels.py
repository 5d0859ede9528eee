"""HTML fragments rendered from data.py objects: the dynamic parts of the page."""

from __future__ import annotations

import time
from typing import Any

from dash import dcc, html

from .data import StudyView, TrialDetail
from .figures import layer_latency_figure, learning_curve_figure, short
from .jobs import Job

GRAPH_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


def _chip(label: str, value: object, tone: str = "") -> html.Span:
    return html.Span(
        [html.Span(str(value), className="chip-value"), html.Span(label, className="chip-label")],
        className=f"chip {tone}".strip(),
    )


def stats_children(view: StudyView | None, study_name: str | None) -> list[Any]:
    """Counts by state (failed trials are counted here, not plotted) and the study's budget."""
    if not study_name:
        return [html.Span("No study yet: start a search on the left.", className="muted")]
    if view is None:
        return [
            html.Span(
                "Starting search… the study appears once the search opens it.", className="muted"
            )
        ]
    counts = view.counts
    chips = [
        _chip("complete", counts.get("complete", 0)),
        _chip("running", counts.get("running", 0), "tone-run"),
        _chip("failed", counts.get("fail", 0), "tone-fail" if counts.get("fail") else ""),
        _chip("on front", len(view.front), "tone-front"),
    ]
    if counts.get("pruned"):
        chips.append(_chip("pruned", counts["pruned"]))
    settings = view.settings
    if settings:
        parts = [str(settings.get("dataset", ""))]
        parts += [_plural(settings[k], k[:-1]) for k in ("trials", "epochs") if k in settings]
        chips.append(html.Span(" · ".join(p for p in parts if p), className="study-budget"))
    return chips


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "–"


def _count(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    for scale, suffix in ((2**20, "MiB"), (2**10, "KiB")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:g} B"


def _number(value: Any, unit: str, digits: int = 4) -> str:
    return f"{value:.{digits}g} {unit}" if isinstance(value, (int, float)) else "–"


def metric_rows(metrics: dict[str, Any], isa: str | None) -> list[tuple[str, str]]:
    """(label, formatted value) pairs for the metrics table, units included."""
    packed, fp32 = metrics.get("packed_bytes"), metrics.get("fp32_bytes")
    ratio = f"  (×{fp32 / packed:.1f} smaller than fp32)" if packed and fp32 else ""
    return [
        ("Validation accuracy", _pct(metrics.get("val_accuracy"))),
        ("Test accuracy", _pct(metrics.get("test_accuracy"))),
        ("Latency per image", _number(metrics.get("latency_ms"), "ms")),
        ("Binary parameters", _count(metrics.get("params_binary"))),
        ("Float parameters", _count(metrics.get("params_float"))),
        ("Packed model size", _bytes(packed) + ratio),
        ("fp32 model size", _bytes(fp32)),
        ("Binary MACs", _count(metrics.get("binary_macs"))),
        ("Float MACs", _count(metrics.get("float_macs"))),
        ("Training time", _number(metrics.get("train_seconds"), "s", 3)),
        ("Kernel path", isa or "–"),
    ]


def flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested config as dotted keys, the way the CLI and config.json spell them."""
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _table(rows: list[tuple[str, Any]], class_name: str) -> html.Table:
    return html.Table(
        html.Tbody([html.Tr([html.Th(k), html.Td(str(v))]) for k, v in rows]),
        className=f"kv {class_name}",
    )


def detail_children(detail: TrialDetail | None, on_front: bool) -> list[Any]:
    """The trial panel: metrics, configuration, learning curve and per-layer latency."""
    if detail is None:
        return [
            html.Div("Click a point on the plot to inspect that trial.", className="placeholder")
        ]
    badges = [html.Span(detail.state, className=f"badge state-{detail.state}")]
    if on_front:
        badges.append(html.Span("Pareto front", className="badge front"))
    header = html.Div([html.H3(f"Trial {detail.number}"), *badges], className="detail-header")
    if detail.fail_reason:
        header.children.append(html.Div(detail.fail_reason, className="fail-reason"))
    return [
        header,
        html.Div(
            [
                html.Div(
                    [html.H4("Metrics"), _table(metric_rows(detail.metrics, detail.isa), "")],
                    className="detail-col",
                ),
                html.Div(
                    [
                        html.H4("Configuration"),
                        _table([(k, short(v)) for k, v in flatten(detail.config)], "config"),
                    ],
                    className="detail-col",
                ),
            ],
            className="detail-grid",
        ),
        html.Div(
            [
                dcc.Graph(
                    id="learning-curve",
                    figure=learning_curve_figure(detail.learning_curve),
                    config=GRAPH_CONFIG,
                ),
                dcc.Graph(
                    id="layer-latency",
                    figure=layer_latency_figure(detail.layer_latency),
                    config=GRAPH_CONFIG,
                ),
            ],
            className="detail-grid",
        ),
    ]


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def jobs_children(jobs: list[Job], now: float | None = None) -> list[Any]:
    """One line per search this explorer started: status, age and the last log line."""
    if not jobs:
        return [html.Div("No searches started from this window yet.", className="muted")]
    now = time.time() if now is None else now
    return [
        html.Div(
            [
                html.Div(
                    [
                        html.Span(job.status, className=f"badge job-{job.status}"),
                        html.Span(job.study, className="job-study"),
                        html.Span(_elapsed((job.ended or now) - job.started), className="job-age"),
                    ],
                    className="job-head",
                ),
                html.Div(job.last_log_line() or "…", className="job-log", title=str(job.log)),
            ],
            className="job",
        )
        for job in jobs
    ]
