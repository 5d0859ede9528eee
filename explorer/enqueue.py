"""Seed a study with a trial of another (a digits winner into a Fashion-MNIST search): the
trial's config goes to a JSON file under the runs folder and `app.py enqueue` queues it, in its
own process like every search, so the web process never imports the model code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .child import app_command, run_app
from .paths import enqueue_path

ENQUEUE_TIMEOUT_S = 120


def enqueue_command(target: str, config: Path, storage_spec: str) -> list[str]:
    """The argv that queues the config file `config` in study `target`."""
    return app_command("enqueue", "--storage", storage_spec, "--study", target,
                       "--config", str(config))


def write_config(runs_dir: Path, study: str, number: int, config: dict[str, Any]) -> Path:
    """runs/enqueue/<study>/trial-<n>.json holding the trial's config, as `enqueue` reads it."""
    path = enqueue_path(runs_dir, study, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def enqueue_trial(storage_spec: str, runs_dir: Path, study: str, number: int,
                  config: dict[str, Any], target: str) -> tuple[str, bool]:
    """(message, ok): queue trial `number` of `study` (its `config`) in study `target`."""
    path = write_config(runs_dir, study, number, config)
    answer, errors, error = run_app(enqueue_command(target, path, storage_spec),
                                    ENQUEUE_TIMEOUT_S)
    if error is not None:
        return f"Could not queue trial {number} in {target!r}: {error}", False
    try:  # its answer: {"study": ..., "enqueued_trials": [n]}
        queued = answer["enqueued_trials"][0]
    except (KeyError, TypeError, IndexError):
        return f"Queued trial {number} in {target!r}, but its answer was unreadable.", False
    notes = " ".join(line.removeprefix("note: ") for line in errors if line.startswith("note:"))
    message = (f"Queued trial {number} of {study!r} as trial {queued} of {target!r}: it runs "
               f"first when {target!r} next searches (Resume it).")
    return f"{message} {notes}".strip(), True
