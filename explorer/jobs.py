"""Searches run as `app.py search` subprocesses, so training never blocks or bloats the web app.

Stopping follows the search's own signals: SIGINT finishes the running trials and starts no new
one, SIGTERM stops now (the running trials end FAIL "stopped"); either way the search exits
130. Both go to the job's process group, which holds its local worker processes too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from search.stopping import EXIT_STOPPED

from .forms import SearchRequest
from .paths import log_path

APP_PY = Path(__file__).resolve().parents[1] / "app.py"
STOP_SIGNALS = {"finish": signal.SIGINT, "now": signal.SIGTERM}


def search_command(request: SearchRequest, storage_spec: str) -> list[str]:
    """The argv of the search process; a list, never a shell string, so no quoting issues.
    Budgets and the timeout are passed only when set."""
    command = [
        sys.executable, str(APP_PY), "search",
        "--dataset", request.dataset,
        "--space", request.space,
        "--trials", str(request.trials),
        "--epochs", str(request.epochs),
        "--workers", str(request.workers),
        "--storage", storage_spec,
        "--study", request.study,
        "--seed", str(request.seed),
        "--sampler", request.sampler,
        "--early-stop", request.early_stop,
        "--float-parts", request.float_parts,
    ]  # fmt: skip
    optional = {
        "--max-latency-ms": request.max_latency_ms,
        "--max-size-kb": request.max_size_kb,
        "--timeout": request.timeout,
    }
    for flag, value in optional.items():
        if value is not None:
            command += [flag, repr(float(value))]
    return command


def resume_command(study: str, trials: int, storage_spec: str) -> list[str]:
    """The argv that continues `study` with its own settings, its budget raised to `trials`."""
    return [sys.executable, str(APP_PY), "search", "--storage", storage_spec, "--study", study,
            "--resume", "--trials", str(trials)]


def last_lines(path: Path, count: int = 1, max_bytes: int = 4096) -> list[str]:
    """The last `count` lines with words in them (not lone JSON brackets), reading only the
    log's tail."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines()]
    return [line for line in lines if any(c.isalnum() for c in line)][-count:]


def last_line(path: Path) -> str:
    """The log's last line with words in it, or ''."""
    lines = last_lines(path)
    return lines[-1] if lines else ""


@dataclass
class Job:
    """One search process and where it logs."""

    study: str
    command: list[str]
    log: Path
    process: subprocess.Popen
    started: float
    ended: float | None = None
    stop_requested: str | None = None  # a key of STOP_SIGNALS, once sent

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def status(self) -> str:
        """running, stopping (asked to finish), finished, stopped (exit 130, or killed after
        a stop was asked) or failed."""
        code = self.process.poll()
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if self.ended is None:
            self.ended = time.time()
        if code == 0:
            return "finished"
        if code == EXIT_STOPPED or (code < 0 and self.stop_requested):
            return "stopped"
        return "failed"

    def last_log_line(self) -> str:
        return last_line(self.log)

    def stop(self, how: str) -> bool:
        """Send the signal for `how` ("finish" or "now"); False when the job already ended."""
        if not self.running:
            return False
        self.stop_requested = how
        _signal_group(self.process, STOP_SIGNALS[how])
        return True


class JobManager:
    """The searches this explorer started; lives as long as the web process."""

    def __init__(self, storage_spec: str, runs_dir: Path) -> None:
        self.storage_spec = storage_spec
        self.runs_dir = runs_dir
        self._jobs: list[Job] = []
        self._lock = threading.Lock()

    def start(self, request: SearchRequest) -> Job:
        """Launch the search in its own session, output going to runs/logs/<study>.log.

        It inherits this process's working directory, so a relative storage spec names the same
        file for both.
        """
        return self._launch(request.study, search_command(request, self.storage_spec), "wb")

    def resume(self, study: str, trials: int) -> Job:
        """Continue `study` up to `trials` finished trials; its log goes on where it ended.
        Refused while this explorer's search of it still runs."""
        job = self.find(study)
        if job is not None and job.running:
            raise ValueError(f"the search of {study!r} is still running")
        return self._launch(study, resume_command(study, trials, self.storage_spec), "ab")

    def _launch(self, study: str, command: list[str], mode: str) -> Job:
        log = log_path(self.runs_dir, study)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open(mode) as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        job = Job(study, command, log, process, time.time())
        with self._lock:
            self._jobs.append(job)
        return job

    def jobs(self) -> list[Job]:
        """Newest first."""
        with self._lock:
            return self._jobs[::-1]

    def find(self, study: str | None) -> Job | None:
        """The newest job that fills `study` (a resumed study has one per run), or None."""
        return next((job for job in self.jobs() if job.study == study), None)

    def stop(self, study: str, how: str) -> bool:
        """Stop the search filling `study` ("finish" or "now"); False when none is running."""
        if how not in STOP_SIGNALS:
            raise ValueError(f"stop how? {how!r}; one of {', '.join(STOP_SIGNALS)}")
        job = self.find(study)
        return job is not None and job.stop(how)

    def study_names(self) -> set[str]:
        """Studies being created by a job; the storage may not know them yet."""
        with self._lock:
            return {job.study for job in self._jobs}

    def running_studies(self) -> set[str]:
        """Studies whose search is still running: listed even before the storage has them."""
        return {job.study for job in self.jobs() if job.running}

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop running searches now (on shutdown), killing those that do not stop in time."""
        running = [job for job in self.jobs() if job.stop("now")]
        deadline = time.monotonic() + timeout
        for job in running:
            try:
                job.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(job.process, signal.SIGKILL)
                job.process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Signal the search and its worker processes (they share the session started for it)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
