"""What the page's buttons and views do, as plain methods of `Explorer` on its storage, runs
folder and jobs: no Dash wiring here (callbacks.py), so tests call them directly."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dash import dcc, html
from optuna.storages import BaseStorage

from .analysis import ImportanceCache, categorical_knobs, load_study_trials
from .analysis_figures import (
    history_figure,
    hypervolume_figure,
    importance_figure,
    marginal_figure,
    parallel_figure,
)
from .compare import COMPARE_MAX, compare_children
from .data import list_studies, load_study_view, load_trial_detail, pick_export_trial
from .enqueue import enqueue_trial
from .export import export_zip
from .forms import validate_resume, validate_search_form
from .jobs import JobManager
from .layout import ANALYSIS_VIEWS, study_options
from .panels import GRAPH_CONFIG
from .progress import search_progress
from .remeasure import remeasure_trial
from .space_editor import (
    controls_from_space,
    read_space,
    space_choices,
    space_from_controls,
    write_space,
)
from .space_panel import knob_table
from .space_probe import run_probe
from .urlstate import parse_query

log = logging.getLogger(__name__)
STOP_HOW = {"stop-search": "finish", "stop-search-now": "now"}  # progress card's Stop buttons
ANALYSIS_HINT = "Pick a view above; each is computed only while it is open."


@dataclass
class Explorer:
    """What the callbacks share: one storage handle, the runs folder and the started jobs."""

    storage_spec: str
    storage: BaseStorage
    runs_dir: Path
    jobs: JobManager
    datasets: list[str]
    importance: ImportanceCache = field(default_factory=ImportanceCache)
    vocab: list[dict[str, Any]] = field(default_factory=list)  # the space editor's knobs

    def study_names(self) -> set[str]:
        """Names a new search may not take: in the storage or claimed by a started job."""
        return {s.name for s in list_studies(self.storage)} | self.jobs.study_names()

    def start_search(self, values: dict[str, Any]) -> tuple[dict[str, str], str | None]:
        """({field: error}, None) on bad input, else ({}, study name) with the job started."""
        request, errors = validate_search_form(values, self.datasets, self.study_names(),
                                               space_choices(self.runs_dir))
        if request is None:
            return errors, None
        self.jobs.start(request)
        return {}, request.study

    def choose_study(
        self, current: str | None, preferred: str | None
    ) -> tuple[list[dict], str | None]:
        """Fresh dropdown options and the value to show: a preferred study (just started, or
        named by the address), else the current one while it exists, else the newest."""
        fresh = study_options(list_studies(self.storage), self.jobs.running_studies())
        values = [o["value"] for o in fresh]
        if preferred in values:
            return fresh, preferred
        if current in values:
            return fresh, current
        return fresh, values[0] if values else None

    def url_request(self, search: str | None) -> tuple[dict[str, Any], str]:
        """({"study", "trial"}, message) for the page's address: what of it can be opened, and
        why the rest cannot (an unknown study, a malformed trial)."""
        request = parse_query(search)
        if request.study is None:
            return {"study": None, "trial": None}, request.error or ""
        known = {o["value"] for o in self.choose_study(None, None)[0]}
        if request.study not in known:
            message = f"No study named {request.study!r} in this storage (from the address)."
            return {"study": None, "trial": None}, message
        return {"study": request.study, "trial": request.trial}, request.error or ""

    def analysis(
        self, study: str | None, which: str | None, knob: str | None
    ) -> tuple[list[Any], list[str], str | None]:
        """(graphs of the open analysis view, the categorical knobs, the knob shown): only the
        open view is computed, so a closed card costs nothing."""
        if not study or which not in ANALYSIS_VIEWS:
            return [html.Div(ANALYSIS_HINT, className="muted")], [], None
        trials = load_study_trials(self.storage, study)
        if trials is None:
            return [html.Div(f"Study {study!r} has no trials yet.", className="muted")], [], None
        knobs = categorical_knobs(trials)
        knob = knob if knob in knobs else (knobs[0] if knobs else None)
        figures = {
            "history": lambda: [("hypervolume-graph", hypervolume_figure(trials)),
                                ("history-graph", history_figure(trials))],
            "importance": lambda: [("importance-graph",
                                    importance_figure(self.importance.get(trials)))],
            "parallel": lambda: [("parallel-graph", parallel_figure(trials))],
            "marginals": lambda: [("marginal-graph", marginal_figure(trials, knob))],
        }[which]()
        graphs = [dcc.Graph(id=graph_id, figure=figure, config=GRAPH_CONFIG)
                  for graph_id, figure in figures]
        return graphs, knobs, knob

    def search_control(self, button: str, study: str | None, trials: object) -> tuple[str, bool]:
        """(message, ok) for the progress card's buttons on the selected study: Stop (finish
        the running trials, or now) and Resume (raise the budget and go on)."""
        if not study:
            return "Select a study first.", False
        if button in STOP_HOW:
            if self.jobs.stop(study, STOP_HOW[button]):
                what = "finish its running trials" if button == "stop-search" else "stop now"
                return f"Asked the search of {study!r} to {what}.", True
            return f"No search of {study!r} started from this explorer is running.", False
        view = load_study_view(self.storage, study)
        if view is None:
            return f"Study {study!r} does not exist yet: nothing to resume.", False
        job = self.jobs.find(study)
        running = view.counts.get("running", 0) or int(job is not None and job.running)
        progress = search_progress(view)
        budget, error = validate_resume(trials, progress.finished, running)
        if budget is None:
            return f"Resume: {error}", False
        self.jobs.resume(study, budget)
        return f"Resumed {study!r} up to {budget} finished trials.", True

    def compare(self, study: str | None, numbers: list[int] | None) -> list[Any]:
        """The compare panel for trials `numbers` of `study` (those that exist)."""
        numbers = list(numbers or [])
        if not study or not (2 <= len(numbers) <= COMPARE_MAX):
            return compare_children([], len(numbers))
        details = [load_trial_detail(self.storage, study, n) for n in numbers]
        return compare_children([d for d in details if d is not None], len(numbers))

    def enqueue(
        self, study: str | None, selected: dict | None, target: str | None
    ) -> tuple[str, bool]:
        """(message, ok): queue the selected trial's config in study `target`."""
        number = selected.get("number") if selected and selected.get("study") == study else None
        if not study or number is None:
            return "Select a trial first (a point or a row).", False
        if target not in {s.name for s in list_studies(self.storage)}:
            return "Choose an existing study to queue the trial in.", False
        detail = load_trial_detail(self.storage, study, number)
        if detail is None or not detail.config:
            return (f"Trial {number} recorded no configuration (it ended before sampling): "
                    "nothing to queue."), False
        return enqueue_trial(self.storage_spec, self.runs_dir, study, number, detail.config,
                             target)

    def remeasure(self, study: object, number: object) -> tuple[str, bool]:
        """(message, ok): trial `number` of `study` timed again on this machine from its
        stored weights, in a child process; refused for a trial with no trained model."""
        detail = (load_trial_detail(self.storage, study, number)
                  if isinstance(study, str) else None)
        if detail is None:
            return f"Study {study!r} has no trial {number}: nothing to re-measure.", False
        if not detail.trained:
            return f"Trial {number} is {detail.kind}: it has no trained weights to time.", False
        return remeasure_trial(self.storage_spec, study, detail.number)

    def space_vocab(self) -> list[dict[str, Any]]:
        """Every knob a space may hold, asked once of the `spaces` package in a child process."""
        if not self.vocab:
            self.vocab = run_probe("describe")
        return self.vocab

    def load_space(self, choice: str | None) -> tuple[list[Any] | None, str]:
        """(the knob table filled from space `choice`, message); None when it cannot load."""
        try:
            vocab = self.space_vocab()
            knobs = read_space(self.runs_dir, choice or "")
        except (OSError, ValueError, RuntimeError) as exc:
            return None, f"Cannot load space {choice!r}: {exc}"
        unknown = sorted(set(knobs) - {k["path"] for k in vocab})
        note = f" Not editable here, dropped: {', '.join(unknown)}." if unknown else ""
        return knob_table(vocab, controls_from_space(vocab, knobs)), f"Loaded {choice!r}.{note}"

    def save_space(self, name: object, controls: dict[str, dict[str, Any]]) -> tuple[str, bool]:
        """(message, ok): the edited space saved as runs/spaces/<name>.json once the `spaces`
        package accepts it; nothing is written otherwise."""
        if not controls:
            return "Load a space first.", False
        knobs, errors = space_from_controls(self.space_vocab(), controls)
        if errors:
            return errors.get("", "Fix the knobs marked in red."), False
        try:
            temp, target = write_space(self.runs_dir, str(name or "").strip(), knobs)
        except ValueError as exc:
            return str(exc), False
        try:
            verdict = run_probe("check", str(temp))
        except (RuntimeError, ValueError, OSError) as exc:
            verdict = {"error": str(exc)}
        if "error" in verdict:
            temp.unlink(missing_ok=True)
            return f"Not saved: {verdict['error']}", False
        os.replace(temp, target)
        searched = sum(isinstance(spec, dict) for spec in knobs.values())
        return (f"Saved {target.stem!r} ({searched} knobs searched, {len(knobs) - searched} "
                "fixed): choose it under Search space."), True

    def stop_job(self, button: Any) -> bool:
        """Act on a Stop button's id ({"study", "how"}); False when nothing was signalled."""
        if not isinstance(button, dict) or not isinstance(button.get("study"), str):
            return False
        try:
            return self.jobs.stop(button["study"], button.get("how"))
        except ValueError:
            return False

    def export(self, study: str | None, selected: int | None,
               formats: Sequence[str] | None = None) -> tuple[Path | None, str]:
        """(zip path, message) for the selected trial or the most accurate one on the front,
        holding the deploy `formats` (default: bnnx only)."""
        if not study:
            return None, "Nothing to export yet."
        view = load_study_view(self.storage, study)
        row = next((r for r in view.rows if r.number == selected), None) if view else None
        if row is not None and row.kind != "complete":
            return None, f"Trial {selected} is {row.kind}: it has no trained model to export."
        number = pick_export_trial(view, selected)
        if number is None:
            return None, "No completed trial to export yet."
        try:
            archive = export_zip(self.storage_spec, study, number, self.runs_dir, formats)
        except Exception as exc:  # any failure: the UI shows why, the log has the traceback
            log.exception("export of trial %s of %s failed", number, study)
            return None, f"Export of trial {number} failed: {exc}"
        return archive, f"Exported trial {number} to {archive}"
