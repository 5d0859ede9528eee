"""Early stopping: the halving rule against latency-matched peers, rung records on a real study,
a pruned trial leaving training at once, and a diverged loss failing its epoch."""

import copy
import math

import optuna
import pytest
import torch

from search import training
from search.datasets import Dataset, get_dataset
from search.early_stop import (
    EARLY_STOP_MODES,
    EARLY_STOP_OFF,
    LATENCY_ATTR,
    RUNGS_ATTR,
    HalvingRule,
    RungReporter,
    early_stop_rule,
    should_stop,
)
from spaces import Config

State = optuna.trial.TrialState
RULE = HalvingRule()


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """300 digits for training (3 batches of 100 per epoch): a fit takes about a second."""
    d = get_dataset("digits")
    return Dataset("digits", d.x_train[:300], d.y_train[:300], d.x_val[:100], d.y_val[:100],
                   d.x_test, d.y_test, 10)


def tiny_config(epochs: int = 4) -> Config:
    return Config.from_dict({"arch": {"width": 8, "depth": 1},
                             "train": {"epochs": epochs, "batch_size": 100}})


@pytest.mark.parametrize(("rule", "total", "rungs"), [
    (RULE, 1, []), (RULE, 2, [1]), (RULE, 3, [1]), (RULE, 4, [1, 3]), (RULE, 9, [1, 3]),
    (RULE, 10, [1, 3, 9]), (RULE, 28, [1, 3, 9, 27]),
    (HalvingRule(min_epochs=2, eta=2), 9, [2, 4, 8]), (HalvingRule(min_epochs=5), 5, []),
])
def test_rungs_lie_below_the_last_epoch(rule, total, rungs):
    assert rule.rungs(total) == rungs


def test_rule_rejects_settings_that_never_or_always_stop():
    for bad in ({"eta": 1}, {"min_epochs": 0}, {"tolerance": -0.1}, {"min_peers": 0}):
        with pytest.raises(ValueError, match="early stop: need"):
            HalvingRule(**bad)


def test_too_few_peers_keep_any_trial():
    assert should_stop(0.1, 1.0, [(0.9, 1.0), (0.9, 1.0)], RULE) is None
    assert should_stop(0.1, 1.0, [(0.9, 1.0)] * 3, RULE) is not None


def test_slower_peers_are_ignored_faster_ones_count():
    slow = [(0.99, 2.0)] * 5
    assert should_stop(0.5, 1.0, slow, RULE) is None  # a slow, accurate net spares a fast one
    fast = [(0.9, 0.5), (0.8, 0.8), (0.7, 1.0)]
    reason = should_stop(0.5, 1.0, slow + fast, RULE)
    assert reason == ("val 50.0% below the top third (90.0%) of 3 trials with latency "
                      "<= 1.1 ms")


def test_threshold_is_rank_ceil_n_over_eta_and_ties_keep():
    peers = [(a, 1.0) for a in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)]  # n = 7: rank 3 is 0.7
    assert should_stop(0.7, 1.0, peers, RULE) is None  # a tie keeps it
    assert "top third (70.0%) of 7 trials" in should_stop(0.69, 1.0, peers, RULE)
    half = HalvingRule(eta=2)  # rank ceil(7/2) = 4 is 0.6
    assert should_stop(0.6, 1.0, peers, half) is None
    assert "top half (60.0%)" in should_stop(0.59, 1.0, peers, half)


def test_latency_limit_is_inclusive():
    rule = HalvingRule(tolerance=0.5)  # limit 1.5, exact in binary floating point
    at_limit = [(0.9, 1.5)] * 3
    assert should_stop(0.5, 1.0, at_limit, rule) is not None
    assert should_stop(0.5, 1.0, [(0.9, math.nextafter(1.5, 2.0))] * 3, rule) is None


def test_modes_parse_and_unknown_modes_list_the_choices():
    assert early_stop_rule(EARLY_STOP_OFF) is None
    assert early_stop_rule("halving") == HalvingRule()
    assert EARLY_STOP_MODES == ("off", "halving")
    with pytest.raises(ValueError, match="unknown mode 'median'; choose one of off, halving"):
        early_stop_rule("median")


def peer(state: State, rungs: dict[str, float], latency: float) -> optuna.trial.FrozenTrial:
    values = [0.5, latency] if state == State.COMPLETE else None
    return optuna.trial.create_trial(state=state, values=values,
                                     user_attrs={RUNGS_ATTR: rungs, LATENCY_ATTR: latency})


def study_with(*peers: optuna.trial.FrozenTrial) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for p in peers:
        study.add_trial(p)
    return study


def test_reporter_records_rungs_and_keeps_a_trial_without_enough_peers():
    study = study_with(peer(State.COMPLETE, {"1": 0.9}, 1.0))
    trial = study.ask()
    report = RungReporter(trial, RULE, latency_ms=1.0, total_epochs=4)
    for epoch, acc in ((1, 0.5), (2, 0.6), (3, 0.7), (4, 0.8)):  # rungs 1 and 3 only
        report({"epoch": epoch, "val_accuracy": acc, "val_loss": 1.0})
    attrs = study.trials[-1].user_attrs
    assert attrs[RUNGS_ATTR] == {"1": 0.5, "3": 0.7}  # merged, never the last epoch
    assert attrs[LATENCY_ATTR] == 1.0  # where the other workers find it
    assert "prune_reason" not in attrs


def test_reporter_prunes_against_running_complete_and_pruned_peers_only():
    study = study_with(
        peer(State.RUNNING, {"1": 0.9}, 1.0), peer(State.COMPLETE, {"1": 0.8, "3": 0.9}, 0.9),
        peer(State.PRUNED, {"1": 0.7}, 1.05),
        peer(State.FAIL, {"1": 0.99}, 0.5),  # failed: no competitor
        peer(State.COMPLETE, {"3": 0.99}, 0.5),  # never reported rung 1
        peer(State.COMPLETE, {"1": 0.99}, 1.2),  # a peer, but slower than 1.0 * 1.1
    )
    first = RungReporter(study.ask(), RULE, latency_ms=1.0, total_epochs=4)
    assert first.peers(1) == [(0.9, 1.0), (0.8, 0.9), (0.7, 1.05), (0.99, 1.2)]
    first({"epoch": 1, "val_accuracy": 0.9})  # ties the best of its 3 peers: kept
    second = RungReporter(study.ask(), RULE, latency_ms=1.0, total_epochs=4)
    assert (0.9, 1.0) in second.peers(1)[4:]  # the first one counts, still RUNNING
    with pytest.raises(optuna.TrialPruned, match=r"^epoch 1: val 85.0% below the top third "
                       r"\(90.0%\) of 4 trials with latency <= 1.1 ms$"):
        second({"epoch": 1, "val_accuracy": 0.85})


def test_reporter_prunes_at_the_rung_and_says_why():
    study = study_with(*(peer(State.COMPLETE, {"1": a}, 0.05) for a in (0.62, 0.5, 0.4)))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned) as stopped:
        RungReporter(trial, RULE, 0.05, 4)({"epoch": 1, "val_accuracy": 0.412})
    reason = "epoch 1: val 41.2% below the top third (62.0%) of 3 trials with latency <= 0.055 ms"
    assert str(stopped.value) == reason
    attrs = study.trials[-1].user_attrs
    assert (attrs["pruned_at_epoch"], attrs["prune_reason"]) == (1, reason)
    assert attrs[RUNGS_ATTR] == {"1": 0.412}  # recorded before the stop: later trials see it


def test_a_pruned_trial_leaves_training_at_its_first_rung(tiny):
    """train() re-raises TrialPruned from on_epoch unchanged; Optuna records the trial PRUNED."""
    study = study_with(*(peer(State.COMPLETE, {"1": 1.0}, 1.0) for _ in range(3)))
    batches: list[int] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        report = RungReporter(trial, RULE, 1.0, total_epochs=4)
        training.train(tiny_config(4), tiny, accelerator="cpu", on_epoch=report,
                       on_batch=lambda: batches.append(1))
        raise AssertionError("training went past the rung")

    study.optimize(objective, n_trials=1)
    pruned = study.trials[-1]
    assert pruned.state == State.PRUNED
    assert pruned.user_attrs["pruned_at_epoch"] == 1
    assert pruned.user_attrs["prune_reason"].startswith("epoch 1: val ")
    assert len(batches) == 3  # one epoch of 3 batches, then nothing


def test_on_epoch_sees_the_validation_of_the_epoch_that_just_ended(tiny, monkeypatch):
    """Lightning validates before on_train_epoch_end: each row's val_accuracy is the accuracy of
    the weights at that moment, not the previous epoch's nor NaN."""
    built = []
    build = training.build_model
    monkeypatch.setattr(training, "build_model", lambda *a: built.append(build(*a)) or built[-1])
    seen: list[tuple[float, float]] = []

    def check(row: dict) -> None:
        now = copy.deepcopy(built[0])  # a copy: eval() must not touch the model in training
        seen.append((row["val_accuracy"], training.accuracy(now, tiny.x_val, tiny.y_val)))

    result = training.train(tiny_config(3), tiny, accelerator="cpu", on_epoch=check)
    assert len(seen) == 3
    for row_acc, model_acc in seen:
        assert row_acc == pytest.approx(model_acc)
    assert seen[-1][1] == pytest.approx(training.accuracy(result.model, tiny.x_val, tiny.y_val))


def test_a_diverged_loss_fails_training_at_its_epoch(tiny, monkeypatch):
    """The weights turn NaN in the second epoch, as a diverged run's do."""
    batch_loss = training.BinaryClassifier.batch_loss

    def diverging(self, batch, prefix):
        if prefix == "train" and self.current_epoch == 1:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(math.nan)
        return batch_loss(self, batch, prefix)

    monkeypatch.setattr(training.BinaryClassifier, "batch_loss", diverging)
    epochs: list[int] = []
    with pytest.raises(ValueError, match="training loss is NaN at epoch 2: the run diverged"):
        training.train(tiny_config(4), tiny, accelerator="cpu",
                       on_epoch=lambda row: epochs.append(row["epoch"]))
    assert epochs == [1]  # the NaN epoch never reaches the callback (nor a rung)
