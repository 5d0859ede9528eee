"""Early stopping for a two-objective search: successive-halving rungs against latency peers.

Optuna's pruners raise for multi-objective studies, so bnnx keeps its own rule. With
`HalvingRule(min_epochs=m, eta=e, tolerance=t, min_peers=p)`:

- Rungs sit at epochs m * e**k (k = 0, 1, ...) below the trial's total epochs. There is no rung
  at the last epoch: a trial that finished training is never stopped.
- At a rung a trial records its validation accuracy in its user attr "rungs" ({"3": 0.62, ...}),
  where the other workers read it.
- Its peers at that rung are the other trials of the study (running, complete or pruned) that
  recorded the rung and whose latency, measured before training (user attr
  "latency_before_training_ms"), is <= its own latency * (1 + t).
- With n >= p peers, the trial is stopped when its accuracy is below the peer ranked ceil(n / e),
  best first: it is outside the top 1/e of them. Equal accuracy keeps it; fewer than p peers
  keep it.

Why latency-matched peers: the objectives trade off, so a slow, accurate trial says nothing about
a fast one that is less accurate; both may sit on the Pareto front. Only trials about as fast or
faster, and more accurate, foreshadow one that dominates this trial on both counts, so only they
may stop it. The tolerance lets a trial that is a little slower still count, since latency
measurements spread by a few percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

RUNGS_ATTR = "rungs"
LATENCY_ATTR = "latency_before_training_ms"
EARLY_STOP_OFF = "off"
_PEER_STATES = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE,
                optuna.trial.TrialState.PRUNED)
_FRACTION = {2: "half", 3: "third", 4: "quarter"}


@dataclass(frozen=True)
class HalvingRule:
    """Successive halving over latency-matched peers (see the module docstring)."""

    min_epochs: int = 1  # the first rung: one epoch already separates hopeless configs
    eta: int = 3  # keep the top 1/3 at each rung, rungs 3x apart (Hyperband's default)
    tolerance: float = 0.1  # peers may be 10% slower: latency medians spread by a few %
    min_peers: int = 3  # fewer peers than this say too little to stop anyone

    def __post_init__(self) -> None:
        if self.min_epochs < 1 or self.eta < 2 or self.tolerance < 0 or self.min_peers < 1:
            raise ValueError(f"early stop: need min_epochs >= 1, eta >= 2, tolerance >= 0 and "
                             f"min_peers >= 1, got {self}")

    def rungs(self, total_epochs: int) -> list[int]:
        """The rung epochs of a trial trained for `total_epochs`, all below its last epoch."""
        out, epoch = [], self.min_epochs
        while epoch < total_epochs:
            out.append(epoch)
            epoch *= self.eta
        return out


def should_stop(accuracy: float, latency_ms: float, peers: list[tuple[float, float]],
                rule: HalvingRule) -> str | None:
    """Why a trial at a rung should stop, or None to keep it.

    `peers` are the (accuracy, latency in ms) of the other trials that reached the same rung;
    those slower than the trial beyond the rule's tolerance are left out here.
    """
    limit = latency_ms * (1.0 + rule.tolerance)
    rivals = sorted((acc for acc, lat in peers if lat <= limit), reverse=True)
    if len(rivals) < rule.min_peers:
        return None
    bar = rivals[math.ceil(len(rivals) / rule.eta) - 1]
    if accuracy >= bar:
        return None
    return (f"val {accuracy:.1%} below the top {_FRACTION.get(rule.eta, f'1/{rule.eta}')} "
            f"({bar:.1%}) of {len(rivals)} trials with latency <= {limit:.3g} ms")


class RungReporter:
    """A trial's per-epoch training callback: records its rungs and prunes it when beaten.

    It records `latency_ms` on the trial as it starts, so peers always find the latency that
    their rule compares with.
    """

    def __init__(self, trial: optuna.Trial, rule: HalvingRule, latency_ms: float,
                 total_epochs: int) -> None:
        self.trial, self.rule, self.latency_ms = trial, rule, latency_ms
        self.rungs = set(rule.rungs(total_epochs))
        trial.set_user_attr(LATENCY_ATTR, latency_ms)

    def __call__(self, row: dict) -> None:
        """At a rung epoch: store the accuracy, then raise optuna.TrialPruned if peers beat it."""
        epoch = row["epoch"]
        if epoch not in self.rungs:
            return
        accuracy = float(row["val_accuracy"])
        reached = self.trial.user_attrs.get(RUNGS_ATTR, {})
        self.trial.set_user_attr(RUNGS_ATTR, {**reached, str(epoch): accuracy})
        reason = should_stop(accuracy, self.latency_ms, self.peers(epoch), self.rule)
        if reason is not None:
            reason = f"epoch {epoch}: {reason}"
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            self.trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)

    def peers(self, epoch: int) -> list[tuple[float, float]]:
        """(accuracy, latency) at `epoch` of the study's other trials that reached that rung."""
        out = []
        for t in self.trial.study.get_trials(deepcopy=False, states=_PEER_STATES):
            rungs, latency = t.user_attrs.get(RUNGS_ATTR, {}), t.user_attrs.get(LATENCY_ATTR)
            if t.number != self.trial.number and str(epoch) in rungs and latency is not None:
                out.append((rungs[str(epoch)], latency))
        return out


_RULES: dict[str, HalvingRule | None] = {EARLY_STOP_OFF: None, "halving": HalvingRule()}
EARLY_STOP_MODES = tuple(_RULES)


def early_stop_rule(mode: str) -> HalvingRule | None:
    """The rule an early-stop mode names; None for "off"."""
    if mode not in _RULES:
        raise ValueError(f"early stop: unknown mode {mode!r}; choose one of "
                         f"{', '.join(EARLY_STOP_MODES)}")
    return _RULES[mode]
