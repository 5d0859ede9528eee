"""Every file path the UI can influence goes through here, so none can leave the runs folder."""

from __future__ import annotations

import re
from pathlib import Path

STUDY_NAME_MAX = 64
SPACE_SUFFIX = ".json"
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def study_name_error(name: object) -> str | None:
    """Why `name` cannot name a new study (it becomes a file name), or None when it can."""
    if not isinstance(name, str) or not name:
        return "Enter a study name."
    if len(name) > STUDY_NAME_MAX:
        return f"At most {STUDY_NAME_MAX} characters."
    if not _STUDY_NAME.fullmatch(name):
        return "Use letters, digits, '_', '.', '-' only, starting with a letter or digit."
    return None


def safe_component(name: str) -> str:
    """A file-name component for a name not chosen through the form (e.g. an older study)."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:STUDY_NAME_MAX]
    return cleaned or "study"


def inside(base: Path, path: Path) -> Path:
    """`path` resolved, refusing anything that escapes `base` (defence in depth)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise ValueError(f"{path} is outside {base}")
    return resolved


def _check_number(trial_number: object) -> None:
    if isinstance(trial_number, bool) or not isinstance(trial_number, int) or trial_number < 0:
        raise ValueError(f"bad trial number {trial_number!r}")


def export_dir(runs_dir: Path, study_name: str, trial_number: int) -> Path:
    """runs_dir/exports/<study>/trial-<n>, whatever the study is called."""
    _check_number(trial_number)
    base = runs_dir / "exports"
    return inside(base, base / safe_component(study_name) / f"trial-{trial_number}")


def enqueue_path(runs_dir: Path, study_name: str, trial_number: int) -> Path:
    """runs_dir/enqueue/<study>/trial-<n>.json: a trial's config on its way to another study."""
    _check_number(trial_number)
    base = runs_dir / "enqueue"
    return inside(base, base / safe_component(study_name) / f"trial-{trial_number}.json")


def space_file(runs_dir: Path, name: str) -> Path:
    """runs_dir/spaces/<name>.json, a space saved from the editor; `name` follows the study
    name rules (no separators, no leading dot), so it names a file in that folder only."""
    error = study_name_error(name)
    if error:
        raise ValueError(f"space name {name!r}: {error}")
    base = runs_dir / "spaces"
    return inside(base, base / f"{name}{SPACE_SUFFIX}")


def log_path(runs_dir: Path, study_name: str) -> Path:
    """runs_dir/logs/<study>.log for the search process that fills `study_name`."""
    base = runs_dir / "logs"
    return inside(base, base / f"{safe_component(study_name)}.log")
