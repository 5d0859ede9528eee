"""The space editor's card: a static toolbar (start from, load, name, save) and the knob table
that Load fills, one row per knob with pattern-matching ids keyed by the knob path."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

SECTIONS = {"arch": "Architecture", "quant": "Quantizers", "train": "Training tricks"}


def _id(kind: str, path: str) -> dict[str, str]:
    return {"type": f"space-{kind}", "knob": path}


def _control(knob: dict[str, Any], values: dict[str, Any]) -> Any:
    path = knob["path"]
    if knob["choices"] is not None:
        return dcc.Checklist(
            id=_id("checked", path),
            options=[{"label": str(c), "value": c} for c in knob["choices"]],
            value=values.get("checked") or [],
            inline=True,
            className="space-checklist",
        )
    lo, hi = knob["range"]
    step = 1 if knob["type"] == "int" else "any"
    return html.Div(
        [
            dcc.Input(id=_id("values", path), type="text", value=values.get("values"),
                      placeholder="values: 16, 32, 64", className="input space-values"),
            html.Span("or", className="muted"),
            dcc.Input(id=_id("low", path), type="number", value=values.get("low"), step=step,
                      placeholder=f"low ≥ {lo:g}", className="input space-bound"),
            dcc.Input(id=_id("high", path), type="number", value=values.get("high"), step=step,
                      placeholder=f"high ≤ {hi:g}", className="input space-bound"),
            dcc.Checklist(id=_id("log", path), options=[{"label": "log", "value": "log"}],
                          value=["log"] if values.get("log") else [], inline=True),
        ],
        className="space-range",
    )


def knob_table(vocab: list[dict[str, Any]], controls: dict[str, dict[str, Any]]) -> list[Any]:
    """Rows of knobs grouped by Config section; each row has its control and an error slot."""
    children: list[Any] = []
    for section, title in SECTIONS.items():
        rows = [k for k in vocab if k["path"].split(".")[0] == section]
        if not rows:
            continue
        children.append(html.H4(title, className="space-section"))
        children += [
            html.Div(
                [
                    html.Div(k["path"].split(".", 1)[1], className="space-knob",
                             title=k["why"]),
                    _control(k, controls.get(k["path"], {})),
                    html.Div(id=_id("error", k["path"]), className="field-error"),
                ],
                className="space-row",
            )
            for k in rows
        ]
    return children


def space_editor_card(start_options: list[str]) -> html.Div:
    """The card: start from a preset or a saved space, edit, save under a name."""
    return html.Div(
        [
            html.Div(
                [
                    html.H2("Search space editor"),
                    dcc.Dropdown(id="space-start", options=start_options, value="survey",
                                 clearable=False, className="space-start"),
                    html.Button("Load", id="space-load", n_clicks=0, className="btn small",
                                title="Fill the editor from this space"),
                    dcc.Input(id="space-name", type="text", placeholder="name to save as",
                              maxLength=64, className="input space-name"),
                    html.Button("Save space", id="space-save", n_clicks=0,
                                className="btn small",
                                title="Saved spaces appear under 'Search space' in the form"),
                ],
                className="card-head",
            ),
            html.Div(id="space-message", className="search-message"),
            html.Div(
                html.Div("Load a space to edit it: tick the choices to search, give numeric "
                         "ranges; one value fixes a knob, none leaves its default.",
                         className="muted"),
                id="space-knobs",
                className="space-knobs",
            ),
        ],
        className="card space-editor",
    )
