"""Dash wiring only: each callback delegates to a plain method of `Explorer` (actions.py) or a
pure function, with its inputs."""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, State, dcc, html, no_update

from .actions import Explorer
from .compare import selected_numbers
from .data import load_study_view, load_trial_detail
from .figures import empty_figure, pareto_figure
from .forms import ADVANCED, FIELDS, fresh_study_name
from .panels import (
    detail_children,
    jobs_children,
    missing_trial_children,
    progress_children,
    references_children,
    start_error_children,
    stats_children,
)
from .paths import log_path
from .progress import log_text, proposed_budget, search_progress
from .references import references_for
from .space_editor import (
    space_from_controls,
    space_options,
)
from .table import GRID_ID, column_defs, table_rows, trials_grid
from .urlstate import query_for

SPACE_CONTROLS = ("checked", "values", "low", "high", "log")  # the space editor's inputs per knob
SPACE_ALL = {kind: {"type": f"space-{kind}", "knob": ALL} for kind in (*SPACE_CONTROLS, "error")}
GRID_ALL = {**GRID_ID, "name": ALL}  # the trials grid, once mounted


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
        Output("enqueue-study", "options"),
        Input("poll", "n_intervals"),
        Input("started-study", "data"),
        Input("url-request", "data"),
        State("study-select", "value"),
        State("study-select", "options"),
    )
    def on_studies(
        _n: int | None, started: str | None, request: dict | None, current: str | None,
        options: Any,
    ):
        preferred = {
            "started-study": started,
            "url-request": (request or {}).get("study"),
        }.get(dash.ctx.triggered_id)
        fresh, value = ex.choose_study(current, preferred)
        changed = fresh != options
        return (
            fresh if changed else no_update,
            value if value != current else no_update,
            fresh if changed else no_update,
        )

    @app.callback(
        Output("pareto-graph", "figure"),
        Output("study-stats", "children"),
        Output("view-signature", "data"),
        Output("search-progress", "children"),
        Output("resume-trials", "value"),
        Output("projection-picker", "style"),
        Output("references-note", "children"),
        Input("poll", "n_intervals"),
        Input("study-select", "value"),
        Input("selected-trial", "data"),
        Input("latency-scale", "value"),
        Input("show-pruned", "value"),
        Input("color-by", "value"),
        Input("pareto-projection", "value"),
        Input("show-references", "value"),
        State("view-signature", "data"),
    )
    def on_view(
        _n: int | None,
        study: str | None,
        selected: dict | None,
        scale: str | None,
        pruned: list | None,
        color_by: str | None,
        projection: str | None,
        show_references: list | None,
        signature: Any,
    ):
        # the storage is read on every poll, but the page redraws only what changed
        view = load_study_view(ex.storage, study) if study else None
        fresh = view.signature() if view else study  # a study not created yet: its name
        if dash.ctx.triggered_id == "poll" and fresh == signature:
            return (no_update,) * 7
        dataset = view.settings.get("dataset") if view else None
        references = references_for(dataset) if show_references else None
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
                projection=projection or "accuracy",
                references=references,
            )
        progress = search_progress(view) if view else None
        changed = fresh != signature
        # the resume field proposes a budget again only when the trials changed
        proposal = proposed_budget(progress) if progress else None
        return (
            figure,
            stats_children(view, study),
            fresh if changed else no_update,
            progress_children(progress),
            proposal if changed else no_update,
            {} if view is not None and view.with_size else {"display": "none"},
            references_children(references, dataset),
        )

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
        Input("url-request", "data"),
        State("selected-trial", "data"),
        prevent_initial_call=True,
    )
    def on_select(
        click: dict | None, cells: list, study: str | None, request: dict | None,
        current: dict | None,
    ):
        source = dash.ctx.triggered_id
        keep = [no_update] * len(cells)  # one per grid: none until the grid is mounted
        number = None
        if "url-request.data" in dash.ctx.triggered_prop_ids:  # the address names a trial
            if not request or request.get("trial") is None:
                return no_update, keep, keep
            number, study, source = request["trial"], request["study"], "url-request"
        elif source == "study-select" and current and current.get("study") == study:
            return no_update, keep, keep  # the selection already belongs to this study
        elif source == "pareto-graph" and click:
            number = clicked_trial(click)
        elif isinstance(source, dict):  # the grid
            if not cells[0]:  # just mounted, nothing clicked
                return no_update, keep, keep
            number = clicked_row(cells[0])
        if number is None or not study:
            return None, [[] for _ in cells], keep
        selected = {"study": study, "number": number}
        if isinstance(source, dict):  # the grid selected the clicked row itself
            return selected, keep, keep
        row = str(number)
        ids, scroll = {"ids": [row]}, {"rowId": row, "rowPosition": "middle"}
        return selected, [ids for _ in cells], [scroll for _ in cells]

    @app.callback(
        Output("trial-detail", "children"),
        Input("selected-trial", "data"),
        Input("remeasure-result", "data"),
    )
    def on_detail(selected: dict | None, remeasured: dict | None) -> list[Any]:
        if not selected:
            return detail_children(None, False)
        study, number = selected["study"], selected["number"]
        view = load_study_view(ex.storage, study)
        on_front = bool(view) and any(r.number == number for r in view.front)
        detail = load_trial_detail(ex.storage, study, number)
        if detail is None:
            return missing_trial_children(study, number)
        mine = remeasured and (remeasured.get("study"), remeasured.get("number")) == (study, number)
        message = (remeasured["message"], remeasured["ok"]) if mine else None
        return detail_children(detail, on_front, study, message)

    @app.callback(
        Output("remeasure-result", "data"),
        Input({"type": "remeasure-button", "study": ALL, "number": ALL}, "n_clicks"),
        prevent_initial_call=True,
        running=[(Output("remeasure-note", "children"),
                  "Re-measuring: a child process profiles the trial's stored weights…", "")],
    )
    def on_remeasure(_clicks: list[int | None]) -> Any:
        # a redrawn panel mounts its button with n_clicks 0: only a real click measures
        if not dash.ctx.triggered or not dash.ctx.triggered[0].get("value"):
            return no_update
        button = dash.ctx.triggered_id
        message, ok = ex.remeasure(button.get("study"), button.get("number"))
        return {"study": button.get("study"), "number": button.get("number"),
                "message": message, "ok": ok}

    @app.callback(
        Output("analysis-body", "children"),
        Output("marginal-knob", "options"),
        Output("marginal-knob", "value"),
        Output("marginal-picker", "style"),
        Input("analysis-view", "value"),
        Input("view-signature", "data"),
        Input("marginal-knob", "value"),
        State("study-select", "value"),
    )
    def on_analysis(which: str | None, _signature: Any, knob: str | None, study: str | None):
        children, knobs, shown = ex.analysis(study, which, knob)
        style = {} if which == "marginals" and knobs else {"display": "none"}
        return children, knobs, shown, style

    @app.callback(
        Output("search-log", "children"),
        Output("log-signature", "data"),
        Output("stop-search", "disabled"),
        Output("stop-search-now", "disabled"),
        Output("resume-search", "disabled"),
        Input("poll", "n_intervals"),
        Input("study-select", "value"),
        State("log-signature", "data"),
    )
    def on_log(_n: int | None, study: str | None, signature: Any):
        job = ex.jobs.find(study)
        running = job is not None and job.running
        buttons = [not running or job.status == "stopping", not running, running or not study]
        path = log_path(ex.runs_dir, study) if study else None
        try:
            stat = path.stat() if path else None
        except OSError:
            stat = None
        fresh = [study, stat.st_size, stat.st_mtime_ns] if stat else [study]
        if fresh == signature:
            return no_update, no_update, *buttons
        text = log_text(path) if stat else None
        if text is None:
            text = "No log: this study's search was not started from this explorer."
        return text, fresh, *buttons

    @app.callback(
        Output("search-message", "children"),
        Input("stop-search", "n_clicks"),
        Input("stop-search-now", "n_clicks"),
        Input("resume-search", "n_clicks"),
        State("study-select", "value"),
        State("resume-trials", "value"),
        prevent_initial_call=True,
    )
    def on_search_control(_stop: int, _now: int, _resume: int, study: str | None, trials: Any):
        message, ok = ex.search_control(dash.ctx.triggered_id, study, trials)
        return html.Span(message, className="ok" if ok else "error")

    @app.callback(
        Output("compare-trials", "data"),
        Input("pareto-graph", "selectedData"),
        Input(GRID_ALL, "selectedRows"),
        Input("compare-clear", "n_clicks"),
        Input("study-select", "value"),
        prevent_initial_call=True,
    )
    def on_compare_pick(points: dict | None, rows: list, _clear: int, _study: str | None):
        source = dash.ctx.triggered_id
        if source == "pareto-graph":
            return selected_numbers(points)
        if isinstance(source, dict):  # the grid: several rows picked (one is just a click)
            picked = [r["number"] for r in (rows[0] or []) if isinstance(r, dict)
                      and isinstance(r.get("number"), int)] if rows else []
            return picked if len(picked) > 1 else no_update
        return []  # cleared, or another study

    @app.callback(
        Output("compare-view", "children"),
        Input("compare-trials", "data"),
        State("study-select", "value"),
    )
    def on_compare(numbers: list[int] | None, study: str | None) -> list[Any]:
        return ex.compare(study, numbers)

    # in the browser: the theme is CSS only (explorer.css restyles the page, the plots and
    # their hover boxes under body.dark; AG Grid follows data-ag-theme-mode)
    app.clientside_callback(
        """function (value) {
            const dark = (value || []).includes("dark");
            document.body.classList.toggle("dark", dark);
            document.body.dataset.agThemeMode = dark ? "dark" : "light";
            return dark ? "page dark" : "page";
        }""",
        Output("page", "className"),
        Input("theme-toggle", "value"),
    )

    @app.callback(
        Output("enqueue-status", "children"),
        Input("enqueue-button", "n_clicks"),
        State("study-select", "value"),
        State("selected-trial", "data"),
        State("enqueue-study", "value"),
        prevent_initial_call=True,
    )
    def on_enqueue(_clicks: int, study: str | None, selected: dict | None, target: str | None):
        message, ok = ex.enqueue(study, selected, target)
        return html.Span(message, className="ok" if ok else "error")

    @app.callback(
        Output("space-knobs", "children"),
        Output("space-message", "children"),
        Input("space-load", "n_clicks"),
        State("space-start", "value"),
        prevent_initial_call=True,
    )
    def on_space_load(_clicks: int, choice: str | None):
        table, message = ex.load_space(choice)
        return (table if table is not None else no_update,
                html.Span(message, className="ok" if table is not None else "error"))

    @app.callback(
        Output(SPACE_ALL["error"], "children"),
        *(Input(SPACE_ALL[kind], "value") for kind in SPACE_CONTROLS),
        prevent_initial_call=True,
    )
    def on_space_edit(*_values: list) -> list[str]:
        controls = editor_controls(dash.ctx.inputs_list)
        _, errors = space_from_controls(ex.space_vocab(), controls)
        return [errors.get(o["id"]["knob"], "") for o in dash.ctx.outputs_list]

    @app.callback(
        Output("space-message", "children", allow_duplicate=True),
        Output("form-space", "options"),
        Output("space-start", "options"),
        Input("space-save", "n_clicks"),
        State("space-name", "value"),
        *(State(SPACE_ALL[kind], "value") for kind in SPACE_CONTROLS),
        prevent_initial_call=True,
    )
    def on_space_save(_clicks: int, name: str | None, *_values: list):
        message, ok = ex.save_space(name, editor_controls(dash.ctx.states_list[1:]))
        options = space_options(ex.runs_dir)
        return (html.Span(message, className="ok" if ok else "error"), options,
                [o["value"] for o in options])

    @app.callback(
        Output("url-request", "data"),
        Output("url-message", "children"),
        Input("url", "search"),
        State("url-request", "data"),
    )
    def on_url(search: str | None, applied: dict | None):
        # read once, at the first address with a query: later changes are this page's own
        if applied is not None or not search:
            return no_update, no_update
        return ex.url_request(search)

    @app.callback(
        Output("url", "search"),
        Input("study-select", "value"),
        Input("selected-trial", "data"),
        State("url", "search"),
        prevent_initial_call=True,
    )
    def on_address(study: str | None, selected: dict | None, search: str | None):
        number = selected.get("number") if selected and selected.get("study") == study else None
        query = query_for(study, number)
        return query if query != (search or "") else no_update

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
        State("export-formats", "value"),
        prevent_initial_call=True,
    )
    def on_export(_clicks: int, study: str | None, selected: dict | None,
                  formats: list[str] | None):
        number = selected.get("number") if selected and selected.get("study") == study else None
        archive, message = ex.export(study, number, formats)
        status = html.Span(message, className="ok" if archive else "error")
        return (dcc.send_file(str(archive)) if archive else no_update), status


def editor_controls(groups: list) -> dict[str, dict[str, Any]]:
    """{knob path: {"checked" | "values" | "low" | "high" | "log": value}} from the editor's
    pattern-matching inputs (dash.ctx.inputs_list or states_list, one group per kind)."""
    controls: dict[str, dict[str, Any]] = {}
    for group in groups:
        for item in group:
            kind = item["id"]["type"].removeprefix("space-")
            value = item.get("value")
            controls.setdefault(item["id"]["knob"], {})[kind] = (
                bool(value) if kind == "log" else value
            )
    return controls


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
