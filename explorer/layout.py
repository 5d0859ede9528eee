"""The page skeleton. Every id a test or callback relies on exists from the first load."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from search.storage import masked

from .data import StudyInfo
from .figures import LATENCY_SCALES, empty_figure
from .forms import CHOICES, LIMITS, OPTIONAL, default_form
from .panels import GRAPH_CONFIG, detail_children, jobs_children, stats_children

POLL_MS = 2000

_HELP = {
    "dataset": "What the candidates are trained on.",
    "trials": "Architectures to sample and train.",
    "epochs": "Training epochs per trial.",
    "workers": "Trials trained in parallel.",
    "study": "Letters, digits, '_', '.', '-'.",
    "seed": "Sampler and training seed.",
    "sampler": "Optuna sampler proposing the architectures.",
    "early_stop": "halving: stop trials that trail faster peers.",
    "max_latency_ms": "Empty: none. Slower candidates are never trained.",
    "max_size_kb": "Empty: none. Packed model size limit.",
    "timeout": "Empty: none. No new trial starts after it.",
}
_LABELS = {
    "dataset": "Dataset",
    "trials": "Trials",
    "epochs": "Epochs",
    "workers": "Workers",
    "study": "Study name",
    "seed": "Seed",
    "sampler": "Sampler",
    "early_stop": "Early stopping",
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
    """Sampler, early stopping, budgets and timeout: folded, with `app.py search`'s defaults."""
    return html.Details(
        [
            html.Summary("Sampler, budgets, early stopping"),
            *(_field(name, _choice(name, defaults[name])) for name in CHOICES),
            *(_field(name, _optional(name)) for name in OPTIONAL),
        ],
        id="form-advanced",
        className="advanced",
    )


def search_form(datasets: list[str]) -> html.Div:
    """The new-search card; opens with a tiny budget and a fresh study name."""
    defaults = default_form(datasets[0])
    return html.Div(
        [
            html.H2("New search"),
            _field(
                "dataset",
                dcc.Dropdown(
                    id="form-dataset",
                    options=datasets,
                    value=defaults["dataset"],
                    clearable=False,
                    searchable=False,
                ),
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


def plot_controls() -> html.Div:
    """How the front is drawn: latency scale, pruned trials, colour by a sampled knob."""
    return html.Div(
        [
            html.Label("Latency axis", htmlFor="latency-scale"),
            dcc.RadioItems(
                id="latency-scale",
                options=[{"label": s, "value": s} for s in LATENCY_SCALES],
                value="auto",
                inline=True,
                className="segmented",
            ),
            dcc.Checklist(
                id="show-pruned",
                options=[{"label": "Show pruned", "value": "pruned"}],
                value=[],
                inline=True,
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
    storage_spec: str, datasets: list[str], studies: list[StudyInfo], pending: set[str]
) -> html.Div:
    """The whole page: header, form and jobs on the left, front and trial detail on the right."""
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
        ],
        className="topbar",
    )
    sidebar = html.Aside(
        [
            search_form(datasets),
            html.Div(
                [html.H2("Searches"), html.Div(jobs_children([]), id="jobs-panel")],
                className="card",
            ),
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
                ],
                className="toolbar",
            ),
            html.Div(id="export-status", className="export-status"),
            plot_controls(),
            dcc.Graph(
                id="pareto-graph",
                figure=empty_figure("Loading…"),
                config=GRAPH_CONFIG,
                className="pareto",
            ),
        ],
        className="card",
    )
    table = html.Div(html.Div("Loading trials…", className="muted"), id="trials-table")
    table_card = html.Div([html.H2("Trials"), table], className="card trials")
    detail_card = html.Div(detail_children(None, False), id="trial-detail", className="card detail")
    content = html.Section([front_card, table_card, detail_card], className="content")
    return html.Div(
        [
            header,
            html.Main([sidebar, content]),
            dcc.Interval(id="poll", interval=POLL_MS),
            dcc.Store(id="selected-trial"),
            dcc.Store(id="started-study"),
            dcc.Store(id="view-signature"),
            dcc.Download(id="export-download"),
        ],
        className="page",
    )
