"""Dash wiring only: each callback delegates to a plain function of `Explorer` and its inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html, no_update
from optuna.storages import BaseStorage

from .data import list_studies, load_study_view, load_trial_detail, pick_export_trial
from .export import export_zip
from .figures import empty_figure, pareto_figure
from .forms import ADVANCED, FIELDS, fresh_study_name, validate_search_form
from .jobs import JobManager
from .layout import study_options
from .panels import detail_children, jobs_children, start_error_children, stats_children
from .table import GRID_ID, column_defs, table_rows, trials_grid

log = logging.getLogger(__name__)
GRID_ALL = {**GRID_ID, "name": ALL}  # the trials grid, once mounted


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

    def stop_job(self, button: Any) -> bool:
        """Act on a Stop button's id ({"study", "how"}); False when nothing was signalled."""
        if not isinstance(button, dict) or not isinstance(button.get("study"), str):
            return False
        try:
            return self.jobs.stop(button["study"], button.get("how"))
        except ValueError:
            return False

    def export(self, study: str | None, selected: int | None) -> tuple[Path | None, str]:
        """(zip path, message) for the selected trial or the most accurate one on the front."""
        if not study:
            return None, "Nothing to export yet."
        view = load_study_view(self.storage, study)
        row = next((r for r in view.rows if r.number == selected), None) if view else None
        if row is not None and row.kind != "complete":
            return None, f"Trial {selected} is {row.kind}: it has no trained model to export."
        number = pick_export_trial(view, selected)
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
            Output("form-advanced", "open"),
        ],
        Input("start-search", "n_clicks"),
        [State(f"form-{name}", "value") for name in FIELDS],
        prevent_initial_call=True,
    )
    def on_start(_clicks: int, *values: Any) -> list[Any]:
        errors, study = ex.start_search(dict(zip(FIELDS, values, strict=True)))
        messages = [errors.get(name, "") for name in FIELDS]
        if study is None:
            unfold = True if set(errors) & set(ADVANCED) else no_update
            return [*messages, "Fix the fields marked in red.", no_update, no_update, unfold]
        dataset = values[FIELDS.index("dataset")]
        started = f"Started search {study!r}."
        return [*messages, started, study, fresh_study_name(dataset), no_update]

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
        Input("latency-scale", "value"),
        Input("show-pruned", "value"),
        Input("color-by", "value"),
        State("view-signature", "data"),
    )
    def on_view(
        _n: int | None,
        study: str | None,
        selected: dict | None,
        scale: str | None,
        pruned: list | None,
        color_by: str | None,
        signature: Any,
    ):
        # the storage is read on every poll, but the page redraws only what changed
        view = load_study_view(ex.storage, study) if study else None
        fresh = view.signature() if view else study  # a study not created yet: its name
        if dash.ctx.triggered_id == "poll" and fresh == signature:
            return no_update, no_update, no_update
        if view is None:
            hint = "Starting search…" if study else "Start a search to see the Pareto front."
            figure = empty_figure(hint)
        else:
            number = selected.get("number") if selected and selected.get("study") == study else None
            figure = pareto_figure(
                view,
                number,
                latency_scale=scale or "auto",
                show_pruned=bool(pruned),
                color_by=color_by,
            )
        return figure, stats_children(view, study), fresh if fresh != signature else no_update

    @app.callback(
        Output("trials-table", "children"),
        Output(GRID_ALL, "rowData"),
        Output(GRID_ALL, "columnDefs"),
        Output("color-by", "options"),
        Input("view-signature", "data"),
        State("study-select", "value"),
        State(GRID_ALL, "columnDefs"),
        State("color-by", "options"),
        prevent_initial_call=True,
    )
    def on_table(_signature: Any, study: str | None, grids: list, knobs: Any):
        # after the figure, and only when the trials changed: the plot draws first
        view = load_study_view(ex.storage, study) if study else None
        rows, columns = table_rows(view), column_defs(view)
        params = view.param_names if view else []
        knobs = params if params != knobs else no_update
        if not grids:  # the first data: mount the grid with it
            return trials_grid(rows, columns), [], [], knobs
        return no_update, [rows], [columns if columns != grids[0] else no_update], knobs

    @app.callback(
        Output("selected-trial", "data"),
        Output(GRID_ALL, "selectedRows"),
        Output(GRID_ALL, "scrollTo"),
        Input("pareto-graph", "clickData"),
        Input(GRID_ALL, "cellClicked"),
        Input("study-select", "value"),
        prevent_initial_call=True,
    )
    def on_select(click: dict | None, cells: list, study: str | None):
        source = dash.ctx.triggered_id
        keep = [no_update] * len(cells)  # one per grid: none until the grid is mounted
        number = None
        if source == "pareto-graph" and click:
            number = clicked_trial(click)
        elif isinstance(source, dict):  # the grid
            if not cells[0]:  # just mounted, nothing clicked
                return no_update, keep, keep
            number = clicked_row(cells[0])
        if number is None or not study:
            return None, [[] for _ in cells], keep
        selected = {"study": study, "number": number}
        if source != "pareto-graph":  # the grid selected the clicked row itself
            return selected, keep, keep
        row = str(number)
        ids, scroll = {"ids": [row]}, {"rowId": row, "rowPosition": "middle"}
        return selected, [ids for _ in cells], [scroll for _ in cells]

    @app.callback(Output("trial-detail", "children"), Input("selected-trial", "data"))
    def on_detail(selected: dict | None) -> list[Any]:
        if not selected:
            return detail_children(None, False)
        view = load_study_view(ex.storage, selected["study"])
        on_front = bool(view) and any(r.number == selected["number"] for r in view.front)
        detail = load_trial_detail(ex.storage, selected["study"], selected["number"])
        return detail_children(detail, on_front)

    @app.callback(
        Output("jobs-panel", "children"),
        Output("form-job-error", "children"),
        Input("poll", "n_intervals"),
        State("started-study", "data"),
    )
    def on_jobs(_n: int | None, started: str | None):
        return jobs_children(ex.jobs.jobs()), start_error_children(ex.jobs.find(started))

    @app.callback(
        Output("jobs-panel", "children", allow_duplicate=True),
        Input({"type": "job-stop", "study": ALL, "how": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def on_stop(_clicks: list[int | None]) -> Any:
        # a poll re-renders the buttons with n_clicks 0: only a real click stops a job
        if not dash.ctx.triggered or not dash.ctx.triggered[0].get("value"):
            return no_update
        ex.stop_job(dash.ctx.triggered_id)
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
    """The trial number a plotly click event points at (customdata[0] of every point trace)."""
    points = click.get("points") or []
    data = points[0].get("customdata") if points else None
    number = data[0] if isinstance(data, list) and data else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def clicked_row(cell: dict) -> int | None:
    """The trial number of a clicked trials-table cell (its row id is the number as text)."""
    row = cell.get("rowId")
    return int(row) if isinstance(row, str) and row.isdigit() else None
