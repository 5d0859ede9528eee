"""Dash wiring only: each callback delegates to a plain function of `Explorer` and its inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, State, dcc, html, no_update
from optuna.storages import BaseStorage

from .data import list_studies, load_study_view, load_trial_detail, pick_export_trial
from .export import export_zip
from .figures import empty_figure, pareto_figure
from .forms import FIELDS, fresh_study_name, validate_search_form
from .jobs import JobManager
from .layout import study_options
from .panels import detail_children, jobs_children, stats_children

log = logging.getLogger(__name__)


@dataclass
class Explorer:
    """What the callbacks share: one storage handle, the runs folder and the started jobs."""

    storage_spec: str
    storage: BaseStorage
    runs_dir: Path
    jobs: JobManager
    datasets: list[str]

    def study_names(self) -> set[str]:
        """Names a new search may not take: in the storage or claimed by a started job."""
        return {s.name for s in list_studies(self.storage)} | self.jobs.study_names()

    def start_search(self, values: dict[str, Any]) -> tuple[dict[str, str], str | None]:
        """({field: error}, None) on bad input, else ({}, study name) with the job started."""
        request, errors = validate_search_form(values, self.datasets, self.study_names())
        if request is None:
            return errors, None
        self.jobs.start(request)
        return {}, request.study

    def choose_study(
        self, current: str | None, started: str | None
    ) -> tuple[list[dict], str | None]:
        """Fresh dropdown options and the value to show: a just-started study, else the
        current one while it exists, else the newest."""
        fresh = study_options(list_studies(self.storage), self.jobs.running_studies())
        values = [o["value"] for o in fresh]
        if started in values:
            return fresh, started
        if current in values:
            return fresh, current
        return fresh, values[0] if values else None

    def export(self, study: str | None, selected: int | None) -> tuple[Path | None, str]:
        """(zip path, message) for the selected trial or the most accurate one on the front."""
        if not study:
            return None, "Nothing to export yet."
        number = pick_export_trial(load_study_view(self.storage, study), selected)
        if number is None:
            return None, "No completed trial to export yet."
        try:
            archive = export_zip(self.storage_spec, study, number, self.runs_dir)
        except Exception as exc:  # any failure: the UI shows why, the log has the traceback
            log.exception("export of trial %s of %s failed", number, study)
            return None, f"Export of trial {number} failed: {exc}"
        return archive, f"Exported trial {number} to {archive}"


def register_callbacks(app: dash.Dash, ex: Explorer) -> None:
    """Attach the callbacks; kept apart from layout so tests can build either alone."""

    @app.callback(
        [Output(f"{name}-error", "children") for name in FIELDS]
        + [
            Output("form-message", "children"),
            Output("started-study", "data"),
            Output("form-study", "value"),
        ],
        Input("start-search", "n_clicks"),
        [State(f"form-{name}", "value") for name in FIELDS],
        prevent_initial_call=True,
    )
    def on_start(_clicks: int, *values: Any) -> list[Any]:
        errors, study = ex.start_search(dict(zip(FIELDS, values, strict=True)))
        messages = [errors.get(name, "") for name in FIELDS]
        if study is None:
            return [*messages, "Fix the fields marked in red.", no_update, no_update]
        dataset = values[FIELDS.index("dataset")]
        return [*messages, f"Started search {study!r}.", study, fresh_study_name(dataset)]

    @app.callback(
        Output("study-select", "options"),
        Output("study-select", "value"),
        Input("poll", "n_intervals"),
        Input("started-study", "data"),
        State("study-select", "value"),
        State("study-select", "options"),
    )
    def on_studies(_n: int | None, started: str | None, current: str | None, options: Any):
        just_started = started if dash.ctx.triggered_id == "started-study" else None
        fresh, value = ex.choose_study(current, just_started)
        return (
            fresh if fresh != options else no_update,
            value if value != current else no_update,
        )

    @app.callback(
        Output("pareto-graph", "figure"),
        Output("study-stats", "children"),
        Output("view-signature", "data"),
        Input("poll", "n_intervals"),
        Input("study-select", "value"),
        Input("selected-trial", "data"),
        State("view-signature", "data"),
    )
    def on_view(_n: int | None, study: str | None, selected: dict | None, signature: Any):
        view = load_study_view(ex.storage, study) if study else None
        number = selected.get("number") if selected else None
        new_signature = repr((study, view.signature() if view else None, number))
        if new_signature == signature:
            return no_update, no_update, no_update
        if view is None:
            figure = empty_figure(
                "Starting search…" if study else "Start a search to see the Pareto front."
            )
        else:
            figure = pareto_figure(view, number)
        return figure, stats_children(view, study), new_signature

    @app.callback(
        Output("selected-trial", "data"),
        Input("pareto-graph", "clickData"),
        Input("study-select", "value"),
        prevent_initial_call=True,
    )
    def on_select(click: dict | None, study: str | None) -> dict | None:
        if dash.ctx.triggered_id != "pareto-graph" or not click or not study:
            return None
        number = clicked_trial(click)
        return None if number is None else {"study": study, "number": number}

    @app.callback(Output("trial-detail", "children"), Input("selected-trial", "data"))
    def on_detail(selected: dict | None) -> list[Any]:
        if not selected:
            return detail_children(None, False)
        view = load_study_view(ex.storage, selected["study"])
        on_front = bool(view) and any(r.number == selected["number"] for r in view.front)
        detail = load_trial_detail(ex.storage, selected["study"], selected["number"])
        return detail_children(detail, on_front)

    @app.callback(Output("jobs-panel", "children"), Input("poll", "n_intervals"))
    def on_jobs(_n: int | None) -> list[Any]:
        return jobs_children(ex.jobs.jobs())

    @app.callback(
        Output("export-download", "data"),
        Output("export-status", "children"),
        Input("export-button", "n_clicks"),
        State("study-select", "value"),
        State("selected-trial", "data"),
        prevent_initial_call=True,
    )
    def on_export(_clicks: int, study: str | None, selected: dict | None):
        number = selected.get("number") if selected and selected.get("study") == study else None
        archive, message = ex.export(study, number)
        status = html.Span(message, className="ok" if archive else "error")
        return (dcc.send_file(str(archive)) if archive else no_update), status


def clicked_trial(click: dict) -> int | None:
    """The trial number a plotly click event points at (customdata[0] of every trace)."""
    points = click.get("points") or []
    data = points[0].get("customdata") if points else None
    number = data[0] if isinstance(data, list) and data else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None
