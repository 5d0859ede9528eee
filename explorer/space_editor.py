"""The search-space editor's model: a space file's knobs <-> the editor's controls (a checklist
per knob with choices; per numeric knob a list of values or low/high/log), with the inline
checks that need no model code. The `spaces` package has the last word when a space is saved
(space_probe check).

Knob vocabularies come from space_probe.describe(): {"path", "type", "default", "choices",
"range", "why"} per knob.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .forms import PRESET_DIR, SPACES
from .paths import SPACE_SUFFIX, space_file

Knobs = dict[str, Any]  # a space: knob path -> spec (choices, a range, or a fixed value)


def read_space(runs_dir: Path, choice: str) -> Knobs:
    """The knobs of a preset ("survey") or of a space saved under runs/spaces ("mine.json"),
    as the form names them; JSON, never unpickled."""
    if choice in SPACES:
        path = PRESET_DIR / f"{choice}.json"
    else:
        path = space_file(runs_dir, choice.removesuffix(SPACE_SUFFIX))
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: a space is a mapping of knob paths to specs")
    return data


def saved_spaces(runs_dir: Path) -> list[str]:
    """Names of the spaces saved from the editor, sorted."""
    folder = runs_dir / "spaces"
    return sorted(p.stem for p in folder.glob(f"*{SPACE_SUFFIX}")) if folder.is_dir() else []


def space_choices(runs_dir: Path) -> dict[str, str]:
    """The form's space choices -> what `--space` gets: presets by name, saved spaces (their
    choice ends in .json, so a space saved as "quick" is no preset) by absolute path."""
    saved = {f"{name}{SPACE_SUFFIX}": str(space_file(runs_dir, name))
             for name in saved_spaces(runs_dir)}
    return {**{name: name for name in SPACES}, **saved}


def space_options(runs_dir: Path) -> list[dict[str, str]]:
    """Options of the form's space radio: the presets, then the saved spaces."""
    return [{"label": choice.removesuffix(SPACE_SUFFIX) + (" (saved)" if choice not in SPACES
                                                            else ""), "value": choice}
            for choice in space_choices(runs_dir)]


def controls_from_space(vocab: list[dict[str, Any]], knobs: Knobs) -> dict[str, dict[str, Any]]:
    """Per knob the editor's values: {"checked": [...]} for choices, {"low", "high", "log"}
    for ranges (a fixed number shows as low = high). Knobs a space leaves out are empty."""
    controls = {}
    for knob in vocab:
        spec = knobs.get(knob["path"])
        if knob["choices"] is not None:
            if spec is None:
                checked = []
            elif isinstance(spec, dict) and spec.get("choices") == "all":
                checked = [c for c in knob["choices"] if c not in spec.get("exclude", [])]
            elif isinstance(spec, dict):
                checked = list(spec.get("choices") or [])
            else:
                checked = [spec]
            controls[knob["path"]] = {"checked": checked}
        elif isinstance(spec, dict) and isinstance(spec.get("choices"), list):
            controls[knob["path"]] = {"values": ", ".join(str(v) for v in spec["choices"])}
        elif isinstance(spec, dict):
            controls[knob["path"]] = {"low": spec.get("low"), "high": spec.get("high"),
                                      "log": bool(spec.get("log"))}
        else:
            controls[knob["path"]] = {"low": spec, "high": spec, "log": False}
    return controls


def _number_list(knob: dict[str, Any], text: str) -> tuple[Any, str | None]:
    """(choices, or the one fixed value, error) from a numeric knob's "16, 32, 64" field."""
    cast = int if knob["type"] == "int" else float
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            return None, f"Not a number: {part!r}; separate values by commas."
        if not math.isfinite(value) or (cast is int and value != int(value)):
            return None, "Whole numbers only." if cast is int else "Numbers only."
        lo, hi = knob["range"]
        if not lo <= value <= hi:
            return None, f"Within {lo:g} to {hi:g}."
        values.append(cast(value))
    values = list(dict.fromkeys(values))
    return (values[0] if len(values) == 1 else {"choices": values}), None


def _range_spec(knob: dict[str, Any], low: Any, high: Any, log: bool) -> tuple[Any, str | None]:
    """(spec or None when the knob is left out, error)."""
    if low is None and high is None:
        return None, None
    if low is None or high is None:
        return None, "Give both low and high, or neither (not searched)."
    integer = knob["type"] == "int"
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or (integer and value != int(value)):
            return None, "Whole numbers only." if integer else "Numbers only."
    lo, hi = knob["range"]
    if not (lo <= low <= hi and lo <= high <= hi):
        return None, f"Within {lo:g} to {hi:g}."
    if low > high:
        return None, "Low must not exceed high."
    cast = int if integer else float
    if low == high:
        return cast(low), None  # one value: fixed, not searched
    if log and low <= 0:
        return None, "A log range needs low above 0."
    return {"low": cast(low), "high": cast(high), "log": bool(log)}, None


def space_from_controls(
    vocab: list[dict[str, Any]], controls: dict[str, dict[str, Any]]
) -> tuple[Knobs, dict[str, str]]:
    """(knobs, {knob path: error}) from the editor's values; a checklist with one value fixes
    the knob, none leaves it out."""
    knobs: Knobs = {}
    errors: dict[str, str] = {}
    for knob in vocab:
        path, values = knob["path"], controls.get(knob["path"], {})
        if knob["choices"] is not None:
            checked = values.get("checked") or []
            unknown = [c for c in checked if c not in knob["choices"]]
            if unknown:
                errors[path] = f"Not a choice: {unknown[0]!r}."
            elif len(checked) == 1:
                knobs[path] = checked[0]
            elif checked:
                knobs[path] = {"choices": [c for c in knob["choices"] if c in checked]}
            continue
        text = str(values.get("values") or "").strip()
        if text and (values.get("low") is not None or values.get("high") is not None):
            spec, error = None, "Give a list of values or a range, not both."
        elif text:
            spec, error = _number_list(knob, text)
        else:
            spec, error = _range_spec(knob, values.get("low"), values.get("high"),
                                      bool(values.get("log")))
        if error:
            errors[path] = error
        elif spec is not None:
            knobs[path] = spec
    if not errors and not any(isinstance(spec, dict) for spec in knobs.values()):
        errors[""] = "Search at least one knob: tick two or more choices, or give a range."
    return knobs, errors


def write_space(runs_dir: Path, name: str, knobs: Knobs) -> tuple[Path, Path]:
    """(a temporary file holding the space, its final path under runs/spaces); the caller
    renames the first to the second once the space is accepted."""
    target = space_file(runs_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=SPACE_SUFFIX,
                                dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(knobs, out, indent=2)
    return Path(temp), target
