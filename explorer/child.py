"""One-shot `app.py` commands (enqueue, remeasure) run to completion in a child process, so the
web process never imports torch or the model code; the caller reads their JSON answer."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .jobs import APP_PY


def app_command(*args: str) -> list[str]:
    """The argv of `app.py ARGS...` under this interpreter; a list, never a shell string."""
    return [sys.executable, str(APP_PY), *args]


def run_app(command: list[str], timeout_s: float) -> tuple[Any, list[str], str | None]:
    """(the JSON on stdout, the stderr lines with words, error): error is a one-line reason
    (the command's last stderr line, its exit code, a timeout or an unreadable answer), else
    None."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, [], f"no answer in {timeout_s:g} s"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0:
        return None, lines, lines[-1] if lines else f"exit code {done.returncode}"
    try:
        return json.loads(done.stdout), lines, None
    except ValueError:
        return None, lines, "its answer was unreadable"
