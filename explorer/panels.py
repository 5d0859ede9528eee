"""HTML fragments rendered from data.py objects: the dynamic parts of the page."""

from __future__ import annotations

import time
from typing import Any

from dash import dcc, html

from .architecture import architecture_table
from .data import StudyView, TrialDetail, is_number
from .figures import layer_latency_figure, learning_curve_figure, short
from .jobs import Job, last_lines
from .progress import BAR_KINDS, SearchProgress, duration
from .references import Reference

GRAPH_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
PARETO_CONFIG = {"displaylogo": False}  # keeps box and lasso select: they pick trials to compare
ERROR_LINES = 6  # log lines shown for a search that failed


def _chip(label: str, value: object, tone: str = "") -> html.Span:
    return html.Span(
        [html.Span(str(value), className="chip-value"), html.Span(label, className="chip-label")],
        className=f"chip {tone}".strip(),
    )


def stats_children(view: StudyView | None, study_name: str | None) -> list[Any]:
    """Counts by kind (failed and stopped trials are counted here, not plotted) and the
    study's budget."""
    if not study_name:
        return [html.Span("No study yet: start a search on the left.", className="muted")]
    if view is None:
        return [
            html.Span(
                "Starting search… the study appears once the search opens it.", className="muted"
            )
        ]
    counts = view.counts
    failed = counts.get("failed", 0) + counts.get("stopped", 0)
    chips = [
        _chip("complete", counts.get("complete", 0)),
        _chip("running", counts.get("running", 0), "tone-run"),
        _chip("failed", failed, "tone-fail" if failed else ""),
        _chip("on front", len(view.front), "tone-front"),
    ]
    chips += [_chip(kind, counts[kind]) for kind in ("pruned", "infeasible") if counts.get(kind)]
    if len(view.cpus) > 1:  # latencies of different CPUs do not compare
        chips.append(html.Span(
            f"latencies from {len(view.cpus)} CPU models: compare within one "
            "('bnnx remeasure' times them all on one machine)",
            title="; ".join(view.cpus), className="chip tone-fail"))
    settings = view.settings
    if settings:
        parts = [str(settings.get("dataset", ""))]
        parts += [_plural(settings[k], k[:-1]) for k in ("trials", "epochs") if k in settings]
        parts += [f"{settings['sampler']} sampler"] if settings.get("sampler") else []
        # latencies of the fast path (search --float-parts fast) do not compare with exact ones
        parts += ["fast float parts"] if settings.get("float_parts") == "fast" else []
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
    """(label, formatted value) pairs for the metrics table of a trained trial, units
    included."""
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


def untrained_rows(detail: TrialDetail) -> list[tuple[str, str]]:
    """What a trial that never finished training measured: its latency and size before
    training, the machine, and the accuracy at each epoch rung it reached."""
    on = detail.measured_on
    machine = " · ".join(
        str(part)
        for part in (on.get("cpu"), on.get("isa"), on.get("threads") and f"{on['threads']} thr")
        if part
    )
    rows = [
        ("Latency before training", _number(detail.latency_before_ms, "ms")),
        ("Packed size before training", _number(detail.size_before_kb, "KB")),
        ("Measured on", machine or "–"),
    ]
    rows += [(f"Val accuracy at epoch {e}", _pct(a)) for e, a in sorted(detail.rungs.items())]
    if detail.pruned_at_epoch is not None:
        rows.append(("Pruned at epoch", str(detail.pruned_at_epoch)))
    return rows


def flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested config as dotted keys, the way the CLI and config.json spell them."""
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


# how a config key came to its value: what the sampler chose, a knob of the space whose
# condition did not hold for this trial (so it kept its default, unused), or not searched
KNOB_STATUS = {
    "sampled": "sampled",
    "unsampled": "not sampled: its condition did not hold (default kept)",
    "fixed": "fixed (not searched)",
}


def knob_status(key: str, params: dict[str, Any], space_knobs: dict[str, Any]) -> str:
    """A KNOB_STATUS key for dotted config key `key`. A param is named by its field's leaf
    name, or its whole path where another section shares the leaf (spaces.space.param_name)."""
    if key in params or key.rsplit(".", 1)[-1] in params:
        return "sampled"
    if not space_knobs:  # a study that did not store its space: searched or not is unknown
        return "unsampled"
    return "unsampled" if isinstance(space_knobs.get(key), dict) else "fixed"


def config_table(detail: TrialDetail) -> html.Table | html.Div:
    """The trial's configuration; keys the sampler did not choose are tagged (not sampled:
    its condition did not hold, fixed: not searched) and greyed."""
    config = flatten(detail.config or detail.params)
    if not config:
        return html.Div("Not recorded: the trial ended before it was sampled.", className="muted")
    rows = []
    for key, value in config:
        status = knob_status(key, detail.params, detail.space_knobs)
        tag = ([] if status == "sampled" else  # the rule: only the exceptions are tagged
               [html.Span(status.replace("unsampled", "not sampled"),
                          className=f"knob-tag tag-{status}")])
        rows.append(html.Tr([html.Th(key), html.Td(str(short(value))),
                             html.Td(tag, title=KNOB_STATUS[status])],
                            className=f"knob-{status}"))
    return html.Table(html.Tbody(rows), className="kv config")


def remeasure_section(study: str, detail: TrialDetail, message: tuple[str, bool] | None
                      ) -> list[Any]:
    """Latencies measured again per machine (`app.py remeasure`), a button that re-times this
    trial's stored weights on this machine, and the last such run's message."""
    rows = [
        (machine, f"{r['latency_ms']:.4g} ms" + (f" ± {r['iqr_ms']:.2g} (IQR)"
                                                 if is_number(r.get("iqr_ms")) else "")
         + f" · {r.get('measured_at', '')}")
        for machine, r in sorted(detail.remeasured.items())
        if isinstance(r, dict) and is_number(r.get("latency_ms"))
    ]
    table = (_table(rows, "remeasured") if rows else
             html.Div("Not re-measured yet: the latency above is the one the search took.",
                      className="muted"))
    button = html.Button(
        "Re-measure latency here", id={"type": "remeasure-button", "study": study,
                                       "number": detail.number},
        n_clicks=0, className="btn small",
        title="Profile this trial's stored weights again on this machine (a child process)")
    children = [html.H4("Latency by machine"), table, html.Div(button, className="job-actions")]
    if message is not None:
        text, ok = message
        children.append(html.Div(text, className=f"remeasure-message {'ok' if ok else 'error'}"))
    return [html.Div(children, id="remeasure-section", className="detail-col")]


def _table(rows: list[tuple[str, Any]], class_name: str) -> html.Table:
    return html.Table(
        html.Tbody([html.Tr([html.Th(k), html.Td(str(v))]) for k, v in rows]),
        className=f"kv {class_name}",
    )


REASON_LABELS = {
    "infeasible": "Over budget, never trained: ",
    "pruned": "Stopped early: ",
    "stopped": "Stopped: ",
    "failed": "Failed: ",
}


def _graphs(detail: TrialDetail) -> list[Any]:
    """The learning curve (a pruned trial's rungs when it has no full curve) and the per-layer
    latency, for whichever the trial recorded."""
    curve = detail.learning_curve or [
        {"epoch": e, "val_accuracy": a} for e, a in sorted(detail.rungs.items())
    ]
    graphs = []
    if curve:
        figure = learning_curve_figure(curve)
        graphs.append(dcc.Graph(id="learning-curve", figure=figure, config=GRAPH_CONFIG))
    if detail.layer_latency:
        figure = layer_latency_figure(detail.layer_latency)
        graphs.append(dcc.Graph(id="layer-latency", figure=figure, config=GRAPH_CONFIG))
    return [html.Div(graphs, className="detail-grid")] if graphs else []


def detail_children(detail: TrialDetail | None, on_front: bool, study: str = "",
                    remeasured: tuple[str, bool] | None = None) -> list[Any]:
    """The trial panel, for a trial of any state: its state and why, its metrics (or what it
    measured before training), its configuration, learning curve and per-layer latency; for a
    trained one also its architecture and latency by machine (with `remeasured`, the message
    of the last re-measure)."""
    if detail is None:
        return [
            html.Div(
                "Click a point on the plot, or a row of the table, to inspect that trial.",
                className="placeholder",
            )
        ]
    badges = [html.Span(detail.kind, className=f"badge state-{detail.kind}")]
    if on_front:
        badges.append(html.Span("Pareto front", className="badge front"))
    header = html.Div([html.H3(f"Trial {detail.number}"), *badges], className="detail-header")
    if detail.kind in REASON_LABELS:
        reason = REASON_LABELS[detail.kind] + (detail.reason or "no reason recorded")
        header.children.append(html.Div(reason, className=f"trial-reason reason-{detail.kind}"))
    if detail.trained:
        measured = [html.H4("Metrics"), _table(metric_rows(detail.metrics, detail.isa), "")]
    else:
        measured = [html.H4("Measured"), _table(untrained_rows(detail), "")]
    trained = []
    if detail.trained:
        trained = [
            html.Div([html.H4("Architecture"), architecture_table(detail.summary)],
                     className="detail-wide"),
            html.Div(remeasure_section(study, detail, remeasured), className="detail-grid"),
        ]
    return [
        header,
        html.Div(
            [
                html.Div(measured, className="detail-col"),
                html.Div([html.H4("Configuration"), config_table(detail)], className="detail-col"),
            ],
            className="detail-grid",
        ),
        *_graphs(detail),
        *trained,
    ]


def references_children(references: list[Reference] | None, dataset: str | None) -> list[Any]:
    """Under the plot, while published results are shown: each one with its source, linked."""
    if references is None:
        return []
    if not references:
        return [html.Span(f"No published binary-network results for {dataset or 'this study'} "
                          "in bnnx's reference table.", className="muted")]
    return [html.Div("Published results (dotted lines; accuracy only, no latency on bnnx's "
                     "kernels):", className="references-title"),
            html.Ul([html.Li([f"{r.label}: {r.accuracy:.2%} ({r.note}). ",
                              html.A(r.source, href=r.url, target="_blank", rel="noopener")])
                     for r in references])]


def missing_trial_children(study: str, number: object) -> list[Any]:
    """The trial panel when the selection (from the address, say) names no trial."""
    text = f"Study {study!r} has no trial {number}: pick a point or a row instead."
    return [html.Div(text, className="placeholder missing-trial")]


def stop_buttons(job: Job) -> list[Any]:
    """'Finish running trials' (SIGINT) while running, 'Stop now' (SIGTERM) until it ends."""
    buttons = []
    if job.status == "running":
        buttons.append(
            (
                "finish",
                "Finish running trials",
                "Start no new trial; exit once the running ones are done",
            )
        )
    if job.running:
        buttons.append(("now", "Stop now", "End the running trials now (recorded as stopped)"))
    return [
        html.Button(
            label,
            id={"type": "job-stop", "study": job.study, "how": how},
            n_clicks=0,
            className=f"btn small stop-{how}",
            title=title,
        )
        for how, label, title in buttons
    ]


def jobs_children(jobs: list[Job], now: float | None = None) -> list[Any]:
    """One line per search this explorer started: status, age, stop buttons and the last log
    line."""
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
                        html.Span(duration((job.ended or now) - job.started), className="job-age"),
                    ],
                    className="job-head",
                ),
                html.Div(job.last_log_line() or "…", className="job-log", title=str(job.log)),
                html.Div(stop_buttons(job), className="job-actions"),
            ],
            className="job",
        )
        for job in jobs
    ]


def progress_children(progress: SearchProgress | None) -> list[Any]:
    """The progress bar (complete, infeasible, pruned and running trials as shares of the
    budget) with its counts, failed trials and the ETA."""
    if progress is None:
        return [html.Div("No trials yet.", className="muted")]
    counts = progress.counts
    bar = html.Div(
        [
            html.Div(className=f"progress-part part-{kind}",
                     style={"width": f"{100 * progress.share(kind):.2f}%"},
                     title=f"{counts.get(kind, 0)} {kind}")
            for kind in BAR_KINDS
            if counts.get(kind)
        ],
        className="progress-bar",
    )
    total = f"{progress.finished}/{progress.budget}" if progress.budget else str(progress.finished)
    parts = [f"{total} finished"]
    parts += [f"{counts[k]} {k}" for k in (*BAR_KINDS, "failed") if counts.get(k)]
    line = html.Div(" · ".join(parts), className="progress-counts")
    eta = "ETA " + duration(progress.eta_s) if progress.eta_s is not None else ""
    return [bar, line, html.Div(eta, className="progress-eta")]


def start_error_children(job: Job | None) -> list[Any]:
    """Under the form: the last log lines of the search it started, once that search failed."""
    if job is None or job.status != "failed":
        return []
    code = job.process.returncode
    return [
        html.Div(f"Search {job.study!r} failed (exit code {code}):", className="error-title"),
        html.Pre("\n".join(last_lines(job.log, ERROR_LINES)) or "(empty log)", title=str(job.log)),
    ]
