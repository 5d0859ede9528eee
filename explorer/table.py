"""The trials table: every trial of a study, whatever its state, in a virtualised AG Grid.

Rows carry rounded numbers (sorted and filtered as numbers, shown short) and an `id` (the trial
number as text, AG Grid's row id), so a row can be selected from the plot and keeps its
selection while the table refreshes. Param fields are short keys (`p0`, `p1`, ... in the order
of StudyView.param_names, which only grows), since every row repeats them: 5,000 rows go to the
browser on each change.
"""

from __future__ import annotations

from typing import Any

import dash_ag_grid as dag

from .data import StudyView, TrialRow, is_number

# A pattern-matching id: callbacks address it with ALL, which matches nothing until it mounts.
GRID_ID = {"type": "trials-grid", "name": "trials"}
PARAM_PREFIX = "p"  # param fields: p0, p1, ... never clash with the fixed columns
_NUMBER = {"filter": "agNumberColumnFilter", "type": "numericColumn"}
FIXED_COLUMNS = [
    {"field": "number", "headerName": "#", "width": 80, "pinned": "left", **_NUMBER},
    {"field": "state", "headerName": "state", "width": 110, "filter": "agTextColumnFilter"},
    {"field": "accuracy", "headerName": "val acc %", "width": 110, **_NUMBER},
    {"field": "latency_ms", "headerName": "latency ms", "width": 120, **_NUMBER},
    {"field": "size_kb", "headerName": "size KB", "width": 105, **_NUMBER},
    {"field": "train_s", "headerName": "train s", "width": 100, **_NUMBER},
]
REASON_COLUMN = {
    "field": "reason",
    "headerName": "reason",
    "minWidth": 240,
    "flex": 1,
    "tooltipField": "reason",
    "filter": "agTextColumnFilter",
}


def _short(value: Any) -> Any:
    """4 significant digits for floats, so the table shows (and filters on) what hover shows."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def column_defs(view: StudyView | None) -> list[dict[str, Any]]:
    """The fixed columns, a column per sampled param (numeric filter when all its values are
    numbers) and the reason."""
    params = view.param_names if view else []
    columns = list(FIXED_COLUMNS)
    for i, name in enumerate(params):
        numeric = all(is_number(r.params[name]) for r in view.rows if name in r.params)
        kind = _NUMBER if numeric else {"filter": "agTextColumnFilter"}
        columns.append({"field": f"{PARAM_PREFIX}{i}", "headerName": name, "width": 130, **kind})
    return [*columns, REASON_COLUMN]


def table_row(row: TrialRow, fields: dict[str, str]) -> dict[str, Any]:
    """A trial as a grid row; `fields` maps param names to their column fields."""
    accuracy = None if row.val_accuracy is None else round(100 * row.val_accuracy, 2)
    cells = {
        "id": str(row.number),
        "number": row.number,
        "state": row.kind,
        "accuracy": accuracy,
        "latency_ms": _short(row.latency_ms),
        "size_kb": _short(row.size_kb),
        "train_s": _short(row.train_seconds),
        "reason": row.reason,
        **{fields[k]: _short(v) for k, v in row.params.items()},
    }
    return {k: v for k, v in cells.items() if v is not None}  # an empty cell needs no key


def table_rows(view: StudyView | None) -> list[dict[str, Any]]:
    """One row per trial, by number."""
    if view is None:
        return []
    fields = {name: f"{PARAM_PREFIX}{i}" for i, name in enumerate(view.param_names)}
    return [table_row(r, fields) for r in view.rows]


def trials_grid(rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> dag.AgGrid:
    """The grid, mounted by a callback once the plot is drawn (its 0.9 MB of script would
    otherwise delay the plot), then kept: later callbacks replace its rows only."""
    return dag.AgGrid(
        id=GRID_ID,
        rowData=rows,
        columnDefs=columns,
        getRowId="params.data.id",
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True},
        dashGridOptions={
            # a click picks one row (and opens it); Ctrl/Shift-click picks more to compare
            "rowSelection": {"mode": "multiRow", "checkboxes": False, "headerCheckbox": False,
                             "enableClickSelection": True},
            "suppressFieldDotNotation": True,  # no nested fields: a dot is just a character
            "animateRows": False,
            "tooltipShowDelay": 300,
        },
        style={"height": "360px", "width": "100%"},
        className="trials-grid",
    )
