"""The search form: defaults that work at once, and validation that names the offending field."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from .paths import study_name_error

FIELDS = ("dataset", "trials", "epochs", "workers", "study", "seed")
LIMITS = {
    "trials": (1, 1000),
    "epochs": (1, 200),
    "workers": (1, max(1, os.cpu_count() or 1)),
    "seed": (0, 2**31 - 1),
}


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: everything `app.py search` needs besides the storage."""

    dataset: str
    trials: int
    epochs: int
    workers: int
    study: str
    seed: int


def fresh_study_name(dataset: str = "digits", now: datetime | None = None) -> str:
    """A default study name that does not collide with earlier ones (second resolution)."""
    return f"{dataset}-{(now or datetime.now()):%Y%m%d-%H%M%S}"


def default_form(dataset: str = "digits") -> dict[str, object]:
    """A tiny budget so that pressing Start right away gives a result within a minute."""
    return {
        "dataset": dataset,
        "trials": 4,
        "epochs": 2,
        "workers": 1,
        "study": fresh_study_name(dataset),
        "seed": 0,
    }


def _int_error(value: object, low: int, high: int) -> tuple[int | None, str | None]:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return None, f"Enter a whole number from {low} to {high}."
    if not low <= value <= high:
        return None, f"Must be from {low} to {high}."
    return int(value), None


def validate_search_form(
    values: Mapping[str, object], datasets: Collection[str], existing_studies: Collection[str]
) -> tuple[SearchRequest | None, dict[str, str]]:
    """(request, {}) when the form is valid, else (None, {field: message})."""
    errors: dict[str, str] = {}
    parsed: dict[str, object] = {}
    dataset = values.get("dataset")
    if dataset not in datasets:
        errors["dataset"] = f"Choose one of: {', '.join(datasets)}."
    parsed["dataset"] = dataset
    for name, (low, high) in LIMITS.items():
        number, error = _int_error(values.get(name), low, high)
        if error:
            errors[name] = error
        parsed[name] = number
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
