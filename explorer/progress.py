"""A search's progress read from its study: trials of each kind against the budget, and an ETA
from the pace of its recent trials. The same counts the CLI prints (search/progress.py), for the
page's progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data import StudyView

BAR_KINDS = ("complete", "infeasible", "pruned", "running")  # the bar's segments, in order
ETA_WINDOW = 10  # finished trials whose pace predicts the rest
LOG_MAX_BYTES = 256 * 1024  # the log panel shows at most this tail of a search's log
RESUME_STEP = 10  # the resume field proposes this many trials more than the budget


@dataclass(frozen=True)
class SearchProgress:
    """Counts by kind (failed includes stopped), the budget and the seconds left, if known."""

    budget: int | None
    counts: dict[str, int]
    finished: int
    eta_s: float | None

    def share(self, kind: str) -> float:
        """The fraction of the budget that trials of `kind` fill (0 without a budget)."""
        if not self.budget:
            return 0.0
        return min(1.0, self.counts.get(kind, 0) / self.budget)


def eta_seconds(finished_at: list[float], finished: int, budget: int | None) -> float | None:
    """Seconds until the budget is reached at the pace of the last ETA_WINDOW finished trials;
    None with fewer than two of them or nothing left."""
    if not budget or finished >= budget or len(finished_at) < 2:
        return None
    recent = finished_at[-ETA_WINDOW:]
    pace = (recent[-1] - recent[0]) / (len(recent) - 1)
    return pace * (budget - finished) if pace > 0 else None


def search_progress(view: StudyView) -> SearchProgress:
    """The progress of the study's search; the ETA only while trials are running."""
    counts = dict(view.counts)
    counts["failed"] = counts.get("failed", 0) + counts.pop("stopped", 0)
    budget = view.settings.get("trials")
    budget = budget if isinstance(budget, int) and budget > 0 else None
    finished = sum(counts.get(kind, 0) for kind in ("complete", "infeasible", "pruned"))
    eta = eta_seconds(view.finished_at, finished, budget) if counts.get("running") else None
    return SearchProgress(budget, counts, finished, eta)


def proposed_budget(progress: SearchProgress) -> int:
    """What the Resume field offers: RESUME_STEP trials past the budget (or the finished
    trials, when more finished than budgeted)."""
    return max(progress.budget or 0, progress.finished) + RESUME_STEP


def duration(seconds: float) -> str:
    """'1h 02m', '3m 05s', '42s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def log_text(path: Path, limit: int = LOG_MAX_BYTES) -> str | None:
    """The search log, its tail when longer than `limit` (saying so); None when there is none."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if size > limit:
        text = f"[first {(size - limit) // 1024} KB not shown; full log: {path}]\n" + text
    return text
