"""The architecture table of a trial: one row per layer from the summary the search stores
(spaces.summary's to_dict(), the trial's user attr "summary"), with its precision, output shape,
parameters, memory bits and bit operations, so the detail panel shows where the bits go."""

from __future__ import annotations

from typing import Any

from dash import html

FLOAT_BITS = 32  # spaces.summary.FLOAT_BITS (spaces imports torch: not in the web process)
COLUMNS = ("Layer", "Type", "Precision (in/w)", "Output", "Params", "Bits", "BOPs")


def weight_bits(layer: dict[str, Any]) -> int:
    """A layer's weight precision: its narrowest parameter width (a bias or a BatchNorm's
    scale is 32-bit beside 1-bit weights)."""
    widths = [int(b) for b in (layer.get("params") or {}) if str(b).isdigit()]
    return min(widths) if widths else FLOAT_BITS


def layer_bops(layer: dict[str, Any]) -> int:
    """Bit operations: MACs x input bits x weight bits (the convention of Bi-Real-Net and
    ReActNet): a binary MAC counts 1, an fp32 one 1,024."""
    macs = int(layer.get("binary_macs") or 0) + int(layer.get("float_macs") or 0)
    return macs * int(layer.get("input_precision") or FLOAT_BITS) * weight_bits(layer)


def _count(value: int) -> str:
    return f"{value:,}" if value else "–"


def architecture_rows(summary: dict[str, Any]) -> list[list[str]]:
    """COLUMNS per layer, then a total row; [] when the trial stored no summary."""
    layers = [layer for layer in summary.get("layers") or [] if isinstance(layer, dict)]
    rows = []
    for layer in layers:
        in_bits, w_bits = int(layer.get("input_precision") or FLOAT_BITS), weight_bits(layer)
        params = sum(int(n) for n in (layer.get("params") or {}).values())
        shape = "×".join(str(d) for d in layer.get("output_shape") or []) or "–"
        rows.append([str(layer.get("name")), str(layer.get("kind")), f"{in_bits}/{w_bits}",
                     shape, _count(params), _count(int(layer.get("memory_bits") or 0)),
                     _count(layer_bops(layer))])
    if rows:
        params = sum(int(n) for n in (summary.get("params") or {}).values())
        bops = sum(layer_bops(layer) for layer in layers)
        rows.append(["Total", "", "", "", _count(params),
                     _count(int(summary.get("memory_bits") or 0)), _count(bops)])
    return rows


def architecture_table(summary: dict[str, Any]) -> html.Div:
    """The table, binary layers (1-bit input and weights) marked for the stylesheet."""
    rows = architecture_rows(summary)
    if not rows:
        return html.Div("No architecture summary recorded for this trial.", className="muted")
    head = html.Thead(html.Tr([html.Th(c) for c in COLUMNS]))
    body = [html.Tr([html.Td(v) for v in row],
                    className="layer-binary" if row[2] == "1/1" else
                    "layer-total" if row[0] == "Total" and i == len(rows) - 1 else "layer-float")
            for i, row in enumerate(rows)]
    note = html.Div([html.Span("binary", className="key-binary"), " 1-bit input and weights, ",
                     html.Span("float", className="key-float"), " the rest; BOPs = MACs × input "
                     "bits × weight bits; Bits: the parameters' memory"], className="table-note")
    return html.Div([note, html.Table([head, html.Tbody(body)], className="architecture")],
                    id="architecture-table", className="table-scroll")
