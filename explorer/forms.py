"""The search form: defaults that work at once, and validation that names the offending field."""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from search.early_stop import EARLY_STOP_MODES
from search.samplers import SAMPLERS
from search.settings import FLOAT_PARTS, SearchSettings

from .paths import study_name_error

LIMITS = {
    "trials": (1, 1000),
    "epochs": (1, 200),
    "workers": (1, max(1, os.cpu_count() or 1)),
    "seed": (0, 2**31 - 1),
}
# the space presets `app.py search --space` knows: spaces/presets/<name>.json (read as files:
# importing spaces would load torch into the web process)
PRESET_DIR = Path(__file__).resolve().parents[1] / "spaces" / "presets"
SPACES = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.json")))
CHOICES = {"sampler": SAMPLERS, "early_stop": EARLY_STOP_MODES, "float_parts": FLOAT_PARTS}
OPTIONAL = ("max_latency_ms", "max_size_kb", "timeout")  # positive numbers; empty: none
FIELDS = ("dataset", "space", "trials", "epochs", "workers", "study", "seed", *CHOICES, *OPTIONAL)
ADVANCED = (*CHOICES, *OPTIONAL)  # shown folded; opened when one of them is wrong
_SEARCH_DEFAULTS = SearchSettings()


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: everything `app.py search` needs besides the storage."""

    dataset: str
    trials: int
    epochs: int
    workers: int
    study: str
    seed: int
    sampler: str = _SEARCH_DEFAULTS.sampler
    early_stop: str = _SEARCH_DEFAULTS.early_stop
    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    timeout: float | None = None
    space: str = "quick"
    float_parts: str = _SEARCH_DEFAULTS.float_parts


def fresh_study_name(dataset: str = "digits", now: datetime | None = None) -> str:
    """A default study name that does not collide with earlier ones (second resolution)."""
    return f"{dataset}-{(now or datetime.now()):%Y%m%d-%H%M%S}"


def default_form(dataset: str = "digits") -> dict[str, object]:
    """A tiny budget so that pressing Start right away gives a result within a minute; the
    sampler and early stopping as `app.py search` has them; no budgets, no timeout."""
    return {
        "dataset": dataset,
        "space": "quick",
        "trials": 4,
        "epochs": 2,
        "workers": 1,
        "study": fresh_study_name(dataset),
        "seed": 0,
        "sampler": _SEARCH_DEFAULTS.sampler,
        "early_stop": _SEARCH_DEFAULTS.early_stop,
        "float_parts": _SEARCH_DEFAULTS.float_parts,
        **dict.fromkeys(OPTIONAL),
    }


def _int_error(value: object, low: int, high: int) -> tuple[int | None, str | None]:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return None, f"Enter a whole number from {low} to {high}."
    if not low <= value <= high:
        return None, f"Must be from {low} to {high}."
    return int(value), None


def _positive_error(value: object) -> tuple[float | None, str | None]:
    """An optional positive number: None (no limit) when left empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        return None, "Enter a number above 0, or leave empty for none."
    return number, None


def validate_search_form(
    values: Mapping[str, object],
    datasets: Collection[str],
    existing_studies: Collection[str],
    spaces: Mapping[str, str] | None = None,
) -> tuple[SearchRequest | None, dict[str, str]]:
    """(request, {}) when the form is valid, else (None, {field: message}). `spaces` maps the
    space choices to what `--space` gets (default: the presets, by name)."""
    spaces = spaces if spaces is not None else {name: name for name in SPACES}
    errors: dict[str, str] = {}
    parsed: dict[str, object] = {}
    dataset = values.get("dataset")
    if dataset not in datasets:
        errors["dataset"] = f"Choose one of: {', '.join(datasets)}."
    parsed["dataset"] = dataset
    parsed["space"] = spaces.get(values.get("space"))  # type: ignore[arg-type]
    if parsed["space"] is None:
        errors["space"] = f"Choose one of: {', '.join(spaces)}."
    for name, (low, high) in LIMITS.items():
        number, error = _int_error(values.get(name), low, high)
        if error:
            errors[name] = error
        parsed[name] = number
    for name, allowed in CHOICES.items():
        parsed[name] = values.get(name)
        if parsed[name] not in allowed:
            errors[name] = f"Choose one of: {', '.join(allowed)}."
    for name in OPTIONAL:
        parsed[name], error = _positive_error(values.get(name))
        if error:
            errors[name] = error
    study = values.get("study")
    study = study.strip() if isinstance(study, str) else study
    error = study_name_error(study)
    if error is None and study in existing_studies:
        error = f"A study named {study!r} already exists; choose another name."
    if error:
        errors["study"] = error
    parsed["study"] = study
    if errors:
        return None, errors
    return SearchRequest(**parsed), {}  # type: ignore[arg-type]


def validate_resume(value: object, finished: int, running: int) -> tuple[int | None, str | None]:
    """(new budget, None), or (None, why not): a stopped or finished study resumes with a
    budget above its finished trials, up to the form's trial limit."""
    if running:
        return None, (f"The study has {running} running trials: stop its search (or let it "
                      "finish) before resuming.")
    low, high = finished + 1, max(finished + 1, LIMITS["trials"][1])
    return _int_error(value, low, high)
