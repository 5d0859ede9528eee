"""The page skeleton. Every id a test or callback relies on exists from the first load, except
the graphs of the analysis and compare views, drawn only once they are opened or filled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import dcc, html

from search.storage import masked

from .compare import compare_children
from .data import StudyInfo, dataset_options
from .figures import LATENCY_SCALES, PROJECTIONS, empty_figure
from .forms import CHOICES, LIMITS, OPTIONAL, default_form
from .panels import (
    PARETO_CONFIG,
    detail_children,
    jobs_children,
    progress_children,
    stats_children,
)
from .space_panel import space_editor_card

POLL_MS = 2000
# search.deploy.FORMATS with their labels (search.deploy imports torch: not in the web process)
EXPORT_FORMATS = (("bnnx", "bnnx"), ("openvino", "OpenVINO IR"), ("onnx", "ONNX"))
ANALYSIS_VIEWS = {
    "history": "Hypervolume & history",
    "importance": "Importance",
    "parallel": "Parallel coordinates",
    "marginals": "Marginals",
}

_HELP = {
    "dataset": "What the candidates are trained on.",
    "space": "quick: a few knobs, fast. survey: every family, quantizer and trick.",
    "trials": "Architectures to sample and train.",
    "epochs": "Training epochs per trial.",
    "workers": "Trials trained in parallel.",
    "study": "Letters, digits, '_', '.', '-'.",
    "seed": "Sampler and training seed.",
    "sampler": "Optuna sampler proposing the architectures.",
    "early_stop": "halving: stop trials that trail faster peers.",
    "float_parts": "exact: torch's float ops, bit-equal logits. fast: BatchNorm folded into "
                   "bnnx's float kernels, logits within rounding.",
    "max_latency_ms": "Empty: none. Slower candidates are never trained.",
    "max_size_kb": "Empty: none. Packed model size limit.",
    "timeout": "Empty: none. No new trial starts after it.",
}
_LABELS = {
    "dataset": "Dataset",
    "space": "Search space",
    "trials": "Trials",
    "epochs": "Epochs",
    "workers": "Workers",
    "study": "Study name",
    "seed": "Seed",
    "sampler": "Sampler",
    "early_stop": "Early stopping",
    "float_parts": "Float parts (timed and exported)",
    "max_latency_ms": "Max latency (ms)",
    "max_size_kb": "Max size (KB)",
    "timeout": "Timeout (s)",
}


def _field(name: str, control: Any) -> html.Div:
    return html.Div(
        [
            html.Label(_LABELS[name], htmlFor=f"form-{name}"),
            control,
            html.Div(_HELP[name], className="field-help"),
            html.Div(id=f"{name}-error", className="field-error"),
        ],
        className=f"field field-{name}",
    )


def _number(name: str, value: object) -> dcc.Input:
    low, high = LIMITS[name]
    return dcc.Input(
        id=f"form-{name}",
        type="number",
        value=value,
        min=low,
        max=high,
        step=1,
        className="input",
    )


def _choice(name: str, value: object) -> dcc.RadioItems:
    """A few fixed choices: radio buttons, lighter to mount than a dropdown."""
    options = list(CHOICES[name])
    return dcc.RadioItems(id=f"form-{name}", options=options, value=value, inline=True)


def _optional(name: str) -> dcc.Input:
    """A positive number that may stay empty (no budget, no timeout). Text, not a number
    input: a browser reports a bad number as empty, which would quietly mean no budget."""
    return dcc.Input(
        id=f"form-{name}", type="text", inputMode="decimal", className="input", autoComplete="off"
    )


def _advanced(defaults: dict[str, object]) -> html.Details:
    """Sampler, early stopping, float parts, budgets and timeout: folded, with `app.py search`'s
    defaults."""
    return html.Details(
        [
            html.Summary("Sampler, budgets, early stopping, float parts"),
            *(_field(name, _choice(name, defaults[name])) for name in CHOICES),
            *(_field(name, _optional(name)) for name in OPTIONAL),
        ],
        id="form-advanced",
        className="advanced",
    )


def search_form(datasets: list[str], spaces: list[dict[str, str]]) -> html.Div:
    """The new-search card; opens with a tiny budget and a fresh study name. `spaces`: the
    options of the space choice (presets, then saved spaces)."""
    defaults = default_form(datasets[0])
    return html.Div(
        [
            html.H2("New search"),
            _field(
                "dataset",
                dcc.Dropdown(
                    id="form-dataset",
                    options=dataset_options(datasets),
                    value=defaults["dataset"],
                    clearable=False,
                    searchable=False,
                ),
            ),
            _field(
                "space",
                dcc.RadioItems(id="form-space", options=spaces, value=defaults["space"],
                               inline=True),
            ),
            html.Div(
                [_field(name, _number(name, defaults[name])) for name in ("trials", "epochs")],
                className="field-row",
            ),
            html.Div(
                [_field(name, _number(name, defaults[name])) for name in ("workers", "seed")],
                className="field-row",
            ),
            _field(
                "study",
                dcc.Input(
                    id="form-study",
                    type="text",
                    value=defaults["study"],
                    className="input",
                    maxLength=64,
                    spellCheck=False,
                    autoComplete="off",
                ),
            ),
            _advanced(defaults),
            html.Button("Start search", id="start-search", n_clicks=0, className="btn primary"),
            html.Div(id="form-message", className="form-message"),
            html.Div(id="form-job-error", className="form-job-error"),
        ],
        id="search-form",
        className="card",
    )


def labelled_choice(label: str, radio_id: str, choices: Sequence[str], value: str,
                    wrapper_id: str, hidden: bool = False) -> html.Div:
    """A label and a segmented one-of-N choice, as the plot's toolbar shows them."""
    return html.Div(
        [
            html.Label(label, htmlFor=radio_id),
            dcc.RadioItems(id=radio_id, options=[{"label": c, "value": c} for c in choices],
                           value=value, inline=True, className="segmented"),
        ],
        id=wrapper_id,
        className="latency-log",
        **({"style": {"display": "none"}} if hidden else {}),
    )


def plot_controls() -> html.Div:
    """How the front is drawn: latency scale, accuracy or size on y (3-objective studies),
    pruned trials, colour by a sampled knob."""
    return html.Div(
        [
            # the log-latency toggle: "#latency-log input[value='log']"
            labelled_choice("Latency axis", "latency-scale", LATENCY_SCALES, "auto", "latency-log"),
            # shown for a study whose search minimised size too
            labelled_choice("Y axis", "pareto-projection", PROJECTIONS, "accuracy",
                            "projection-picker", hidden=True),
            dcc.Checklist(
                id="show-pruned",
                options=[{"label": "Show pruned", "value": "pruned"}],
                value=[],
                inline=True,
            ),
            html.Div(
                dcc.Checklist(
                    id="show-references",
                    options=[{"label": "Published results", "value": "references"}],
                    value=[],
                    inline=True,
                ),
                title="Published accuracies of binary networks on this dataset, as lines",
            ),
            html.Label("Colour by", htmlFor="color-by"),
            dcc.Dropdown(
                id="color-by",
                options=[],
                placeholder="front / rest",
                clearable=True,
                className="color-by",
            ),
        ],
        className="plot-controls",
    )


def progress_card() -> html.Div:
    """The selected study's search: progress, Stop and Resume, and its whole log."""
    return html.Div(
        [
            html.H2("Search progress"),
            html.Div(progress_children(None), id="search-progress", className="progress"),
            html.Div(
                [
                    html.Button("Finish running trials", id="stop-search", n_clicks=0,
                                disabled=True, className="btn small stop-finish",
                                title="Start no new trial; exit once the running ones are done"),
                    html.Button("Stop now", id="stop-search-now", n_clicks=0, disabled=True,
                                className="btn small stop-now",
                                title="End the running trials now (recorded as stopped)"),
                ],
                className="job-actions",
            ),
            html.Div(
                [
                    html.Label("New budget", htmlFor="resume-trials"),
                    dcc.Input(id="resume-trials", type="number", min=1, step=1,
                              className="input"),
                    html.Button("Resume", id="resume-search", n_clicks=0, disabled=True,
                                className="btn small",
                                title="Continue the study with its settings, up to this many "
                                "finished trials"),
                ],
                className="resume-row",
            ),
            html.Div(id="search-message", className="search-message"),
            # column-reverse: the box opens scrolled to the end, where the news is
            html.Div(html.Pre(id="search-log"), className="search-log"),
        ],
        className="card",
    )


def analysis_card() -> html.Div:
    """The analysis views; none is open at first, so the page loads no heavier."""
    return html.Div(
        [
            html.Div(
                [
                    html.H2("Analysis"),
                    dcc.RadioItems(
                        id="analysis-view",
                        options=[{"label": v, "value": k} for k, v in ANALYSIS_VIEWS.items()],
                        value=None,
                        inline=True,
                        className="segmented",
                    ),
                    html.Div(
                        [
                            html.Label("Knob", htmlFor="marginal-knob"),
                            dcc.Dropdown(id="marginal-knob", options=[], clearable=False),
                        ],
                        id="marginal-picker",
                        className="marginal-picker",
                        style={"display": "none"},
                    ),
                ],
                className="card-head",
            ),
            html.Div(id="analysis-body", className="analysis-body"),
        ],
        className="card analysis",
    )


def study_options(studies: list[StudyInfo], pending: set[str]) -> list[dict[str, str]]:
    """Dropdown options, newest first; studies a job is still creating come first."""
    known = {s.name for s in studies}
    options = [{"label": f"{name}  (starting)", "value": name} for name in sorted(pending - known)]
    options += [
        {"label": f"{s.name}  ·  {s.dataset}" if s.dataset else s.name, "value": s.name}
        for s in studies
    ]
    return options


def display_spec(spec: str) -> str:
    """The storage spec for the header, with any database password masked."""
    return masked(spec)


def build_layout(
    storage_spec: str,
    datasets: list[str],
    studies: list[StudyInfo],
    pending: set[str],
    spaces: list[dict[str, str]],
) -> html.Div:
    """The whole page: header, form and jobs on the left, front and trial detail on the right.
    `spaces`: the search spaces a search may use (presets, then spaces saved from the editor)."""
    options = study_options(studies, pending)
    current = options[0]["value"] if options else None
    header = html.Header(
        [
            html.Div(
                [html.Span("bnnx", className="logo"), html.Span("explorer", className="logo-sub")],
                className="brand",
            ),
            html.Div("Binary neural network search: accuracy vs CPU latency", className="tagline"),
            html.Div(
                ["storage ", html.Code(display_spec(storage_spec))],
                className="storage",
                title=display_spec(storage_spec),
            ),
            dcc.Checklist(
                id="theme-toggle",
                options=[{"label": "Dark", "value": "dark"}],
                value=[],
                persistence=True,  # kept in the browser: a reload stays dark
                persistence_type="local",
                className="theme-toggle",
            ),
        ],
        className="topbar",
    )
    sidebar = html.Aside(
        [
            search_form(datasets, spaces),
            html.Div(
                [html.H2("Searches"), html.Div(jobs_children([]), id="jobs-panel")],
                className="card",
            ),
            progress_card(),
        ],
        className="sidebar",
    )
    front_card = html.Div(
        [
            html.Div(
                [
                    html.Div(
                        dcc.Dropdown(
                            id="study-select",
                            options=options,
                            value=current,
                            clearable=False,
                            placeholder="No studies yet",
                        ),
                        className="study-picker",
                    ),
                    html.Div(stats_children(None, current), id="study-stats", className="stats"),
                    html.Button(
                        "Export trial",
                        id="export-button",
                        n_clicks=0,
                        className="btn",
                        title="Export the selected trial, or the most accurate one on the front",
                    ),
                    html.Div(
                        dcc.Checklist(
                            id="export-formats",
                            options=[{"label": label, "value": value,
                                      "disabled": value == "bnnx"}
                                     for value, label in EXPORT_FORMATS],
                            value=["bnnx"],
                            inline=True,
                        ),
                        className="export-formats",
                        title="bnnx's packed model is always written: the other formats are "
                        "checked against it (OpenVINO and ONNX need the deploy extra)",
                    ),
                ],
                className="toolbar",
            ),
            html.Div(id="export-status", className="export-status"),
            html.Div(
                [
                    html.Label("Queue the selected trial's config in", htmlFor="enqueue-study"),
                    dcc.Dropdown(id="enqueue-study", options=options, placeholder="study…",
                                 clearable=False, className="enqueue-study"),
                    html.Button("Enqueue", id="enqueue-button", n_clicks=0, className="btn small",
                                title="It runs first when that study next searches"),
                ],
                className="enqueue-row",
            ),
            html.Div(id="enqueue-status", className="export-status"),
            html.Div(id="url-message", className="url-message"),
            plot_controls(),
            dcc.Graph(
                id="pareto-graph",
                figure=empty_figure("Loading…"),
                config=PARETO_CONFIG,
                className="pareto",
            ),
            html.Div(id="references-note", className="references-note"),
        ],
        className="card",
    )
    table = html.Div(html.Div("Loading trials…", className="muted"), id="trials-table")
    table_card = html.Div([html.H2("Trials"), table], className="card trials")
    detail_card = html.Div(
        [
            html.Div(detail_children(None, False), id="trial-detail"),
            html.Div(id="remeasure-note", className="remeasure-note"),  # while one runs
        ],
        className="card detail",
    )
    compare_card = html.Div(
        [
            html.Div(
                [
                    html.H2("Compare trials"),
                    html.Button("Clear", id="compare-clear", n_clicks=0, className="btn small"),
                ],
                className="card-head",
            ),
            html.Div(compare_children([], 0), id="compare-view"),
        ],
        className="card compare",
    )
    content = html.Section(
        [
            front_card,
            table_card,
            detail_card,
            compare_card,
            analysis_card(),
            space_editor_card([o["value"] for o in spaces]),
        ],
        className="content",
    )
    return html.Div(
        [
            header,
            html.Main([sidebar, content]),
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="url-request"),
            dcc.Interval(id="poll", interval=POLL_MS),
            dcc.Store(id="selected-trial"),
            dcc.Store(id="started-study"),
            dcc.Store(id="view-signature"),
            dcc.Store(id="log-signature"),
            dcc.Store(id="compare-trials"),
            dcc.Store(id="remeasure-result"),
            dcc.Download(id="export-download"),
        ],
        id="page",
        className="page",
    )
