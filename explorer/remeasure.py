"""Re-measure one trial's latency on this machine: `app.py remeasure --trial N` profiles the
trial's stored weights in a child process (the web process never runs torch work) and stores
the result per machine with the study, where the detail panel reads it back."""

from __future__ import annotations

from .child import app_command, run_app

REMEASURE_TIMEOUT_S = 300  # loads torch, rebuilds and compiles the model, profiles it


def remeasure_command(study: str, number: int, storage_spec: str) -> list[str]:
    """The argv that re-times trial `number` of `study` on this machine."""
    return app_command("remeasure", "--storage", storage_spec, "--study", study,
                       "--trial", str(number))


def remeasure_trial(storage_spec: str, study: str, number: int) -> tuple[str, bool]:
    """(message, ok): the new latency of trial `number` against the one it stored, or why it
    could not be measured (the CLI's one-line error)."""
    answer, _, error = run_app(remeasure_command(study, number, storage_spec),
                               REMEASURE_TIMEOUT_S)
    if error is not None:
        return f"Could not re-measure trial {number}: {error}", False
    try:  # {"study", "machine", "trials": [{"trial", "stored_ms", "latency_ms", ...}]}
        row = answer["trials"][0]
        new, stored = float(row["latency_ms"]), float(row["stored_ms"])
    except (KeyError, TypeError, IndexError, ValueError):
        return f"Re-measured trial {number}, but the answer was unreadable.", False
    ratio = f", ×{new / stored:.2f}" if stored > 0 else ""
    return (f"Trial {number}: {new:.4g} ms on {answer.get('machine')} "
            f"(stored {stored:.4g} ms{ratio})."), True
