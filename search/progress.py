"""What a running search tells its user: a progress line per finished trial (or a tqdm bar on a
terminal) with the counts and an ETA, and at the end the Pareto front as a table.

It reads the storage from a thread of the process that started the workers, so one place reports
for every local worker process (and a `worker` on another machine reports for itself).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from .budget import BUDGET_REASON, FINISHED, budget_of
from .stopping import STOPPED_REASON

POLL_S = 1.0


def trial_kind(trial: FrozenTrial) -> str:
    """complete, infeasible, pruned, stopped (by a signal, or at once as the budget was
    reached), failed, running or waiting."""
    if trial.state == TrialState.COMPLETE:
        return "infeasible" if trial.user_attrs.get("infeasible") else "complete"
    if trial.state == TrialState.FAIL:
        stopped = trial.user_attrs.get("fail_reason") in (STOPPED_REASON, BUDGET_REASON)
        return "stopped" if stopped else "failed"
    return trial.state.name.lower()


def counts_line(trials: list[FrozenTrial], budget: int, elapsed_s: float, done_here: int) -> str:
    """'4/10 finished: 3 complete, 1 pruned, 0 infeasible, 0 failed; 1 running; ETA 0:42'."""
    kinds = Counter(trial_kind(t) for t in trials)
    done = sum(1 for t in trials if t.state in FINISHED)
    text = (f"{done}/{budget} finished: {kinds['complete']} complete, {kinds['pruned']} pruned, "
            f"{kinds['infeasible']} infeasible, {kinds['failed'] + kinds['stopped']} failed; "
            f"{kinds['running']} running")
    if done_here and done < budget:
        eta = elapsed_s / done_here * (budget - done)
        text += f"; ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
    return text


def trial_line(trial: FrozenTrial) -> str:
    kind = trial_kind(trial)
    if kind == "complete":
        v = trial.values
        size = f", {v[2]:.1f} KB" if len(v) > 2 else ""
        return f"trial {trial.number} complete: val {100 * v[0]:.1f}%, {v[1]:.3f} ms{size}"
    if kind == "infeasible":
        return f"trial {trial.number} infeasible: {trial.user_attrs['infeasible']}"
    if kind == "pruned":
        return f"trial {trial.number} pruned: {trial.user_attrs.get('prune_reason', '')}"
    reason = trial.user_attrs.get("fail_reason", "no reason recorded")
    return f"trial {trial.number} {kind}: {reason}"


class Progress:
    """Polls a study while its workers run; a context manager that reports until it exits."""

    def __init__(self, study: optuna.Study, out: TextIO = sys.stderr) -> None:
        self.study, self.out = study, out
        self._seen = {t.number for t in study.get_trials(deepcopy=False)
                      if t.state not in (TrialState.RUNNING, TrialState.WAITING)}
        self._start, self._done_before = time.monotonic(), len(self._seen)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if self.out.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=budget_of(self.study), file=self.out, unit="trial",
                             initial=len(self.study.get_trials(deepcopy=False, states=FINISHED)))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()
        self.poll()  # the last trials
        if self._bar is not None:
            self._bar.close()

    def _run(self) -> None:
        while not self._halt.wait(POLL_S):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - reporting must never end a search
                self._write(f"(progress unavailable: {type(exc).__name__}: {exc})")

    def poll(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        new = [t for t in trials if t.number not in self._seen
               and t.state not in (TrialState.RUNNING, TrialState.WAITING)]
        if not new:
            return
        self._seen.update(t.number for t in new)
        budget = budget_of(self.study)
        done_here = len(self._seen) - self._done_before
        counts = counts_line(trials, budget, time.monotonic() - self._start, done_here)
        for trial in sorted(new, key=lambda t: t.number):
            self._write(trial_line(trial) if self._bar else f"{trial_line(trial)} [{counts}]")
        if self._bar is not None:
            self._bar.total = budget
            self._bar.n = sum(1 for t in trials if t.state in FINISHED)
            self._bar.set_postfix_str(counts.split(": ", 1)[1], refresh=True)

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """The Pareto front (feasible trials), most accurate first, as rows for a table or JSON."""
    rows = []
    for t in sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1])):
        config = t.user_attrs.get("config", {})
        quant = config.get("quant", {})
        rows.append({
            "trial": t.number,
            "val_accuracy": t.values[0],
            "latency_ms": t.values[1],
            "packed_kb": t.user_attrs.get("metrics", {}).get("packed_kb"),
            "family": config.get("arch", {}).get("family"),
            "quantizers": f"{quant.get('input_quantizer')}/{quant.get('weight_quantizer')}",
        })
    return rows


def front_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'trial':>5}  {'val acc':>7}  {'latency ms':>10}  {'size KB':>8}  "
             f"{'family':<8}  quantizers (input/weight)"]
    for r in rows:
        size = f"{r['packed_kb']:8.1f}" if r["packed_kb"] is not None else f"{'-':>8}"
        lines.append(f"{r['trial']:>5}  {100 * r['val_accuracy']:6.1f}%  {r['latency_ms']:10.4f}"
                     f"  {size}  {r['family'] or '-':<8}  {r['quantizers']}")
    return "\n".join(lines)


def cpu_models(trials: Iterable[FrozenTrial]) -> list[str]:
    """The CPU models the trials' latencies were measured on (more than one: not comparable)."""
    found = {t.user_attrs["measured_on"].get("cpu") for t in trials
             if isinstance(t.user_attrs.get("measured_on"), dict)}
    return sorted(c for c in found if c)
