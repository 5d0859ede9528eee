"""Search control: samplers, budgets known before training, early stopping, resume, enqueue,
progress and the trial budget kept exactly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search import SearchSettings, load_study, raise_budget, run_search, run_worker
from search.early_stop import LATENCY_ATTR, RUNGS_ATTR
from search.hypervolume import HV_REFERENCE_ATTR
from search.objective import WEIGHTS_ATTR
from search.storage import StorageError

ROOT = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(State.COMPLETE, State.PRUNED))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_each_sampler_runs_and_is_stored_for_workers(tmp_path, sampler):
    res = cli("search", "--storage", "s.journal", "--study", "s", "--trials", "3", "--epochs",
              "1", "--sampler", sampler, "--objectives", "acc,latency,size", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    study = load_study(str(tmp_path / "s.journal"), "s")
    assert study.user_attrs["bnnx"]["sampler"] == sampler
    assert study.metric_names == ["val_accuracy", "latency_ms", "packed_kb"]
    done = finished(study)
    assert len(done) == 3 and all(len(t.values) == 3 for t in done)
    assert all(t.values[2] == t.user_attrs["metrics"]["packed_kb"] for t in done)
    assert study.user_attrs[HV_REFERENCE_ATTR][0] == 0.0
    assert all(t.user_attrs["hypervolume"] >= 0 for t in done)
    report = json.loads(res.stdout)
    assert report["complete"] == 3 and report["pareto_front"]
    assert "Pareto front of s:" in res.stderr and "3/3 finished" in res.stderr


def test_unknown_sampler_and_objectives_are_refused(tmp_path):
    res = cli("search", "--sampler", "cmaes", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'cmaes'" in res.stderr
    res = cli("search", "--objectives", "latency,acc", cwd=tmp_path)
    assert res.returncode == 2 and "allowed: acc,latency or acc,latency,size" in res.stderr
    res = cli("search", "--max-latency-ms", "-1", cwd=tmp_path)
    assert res.returncode == 2 and "expected a number > 0" in res.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_over_budget_candidates_are_measured_but_never_trained(tmp_path):
    spec = str(tmp_path / "s.journal")
    budget_kb = 40.0  # between the quick space's smallest and largest packed models
    study = run_search(spec, "s", SearchSettings(trials=8, epochs=1, max_size_kb=budget_kb,
                                                 seed=2))
    done = finished(study)
    assert len(done) == 8
    infeasible = [t for t in done if t.user_attrs.get("infeasible")]
    trained = [t for t in done if not t.user_attrs.get("infeasible")]
    assert infeasible and trained, [t.user_attrs["packed_kb_before_training"] for t in done]
    for t in infeasible:
        assert t.user_attrs["packed_kb_before_training"] > budget_kb
        assert WEIGHTS_ATTR not in t.user_attrs and "learning_curve" not in t.user_attrs
        assert t.values[0] == 0.0 and t.values[1] == t.user_attrs["metrics"]["latency_ms"] > 0
        assert t.system_attrs["constraints:size"] > 0
    for t in trained:
        assert t.system_attrs["constraints:size"] <= 0 and WEIGHTS_ATTR in t.user_attrs
    assert {t.number for t in study.best_trials} <= {t.number for t in trained}


@pytest.mark.slow
def test_train_subset_is_stored_and_every_trial_trains_on_it(tmp_path):
    res = cli("search", "--storage", "s.journal", "--study", "s", "--trials", "2", "--epochs",
              "1", "--train-subset", "400", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    study = load_study(str(tmp_path / "s.journal"), "s")
    assert study.user_attrs["bnnx"]["train_subset"] == 400
    assert [t.user_attrs["train_images"] for t in finished(study)] == [400, 400]
    res = cli("search", "--storage", "t.journal", "--train-subset", "99999", cwd=tmp_path)
    assert res.returncode != 0 and "train subset must be 1..1169" in res.stderr
    assert not (tmp_path / "t.journal").exists() or "t" not in optuna.get_all_study_names(
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(tmp_path / "t.journal"))))


def test_timeout_starts_no_new_trial(tmp_path):
    res = cli("search", "--storage", "s.journal", "--study", "s", "--trials", "200", "--epochs",
              "1", "--timeout", "3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    study = load_study(str(tmp_path / "s.journal"), "s")
    assert 1 <= len(study.trials) < 200
    assert not study.get_trials(states=(State.RUNNING,))


def test_early_stopping_prunes_a_trial_behind_its_latency_peers(tmp_path):
    spec = str(tmp_path / "s.journal")
    settings = SearchSettings(trials=3, epochs=3, early_stop="halving")
    run_search(spec, "s", settings)
    study = load_study(spec, "s")
    for _ in range(3):  # three faster trials that were 100% accurate at epoch 1
        study.add_trial(optuna.trial.create_trial(
            state=State.COMPLETE, values=[1.0, 1e-6],
            user_attrs={RUNGS_ATTR: {"1": 1.0}, LATENCY_ATTR: 1e-6}))
    raise_budget(spec, "s", 7)
    run_worker(spec, "s")
    new = load_study(spec, "s").trials[6]
    assert new.state == State.PRUNED, new.user_attrs.get("fail_reason")
    assert new.user_attrs["pruned_at_epoch"] == 1
    assert "epoch 1: val" in new.user_attrs["prune_reason"]
    assert "top third" in new.user_attrs["prune_reason"]
    assert len(new.user_attrs["learning_curve"] if "learning_curve" in new.user_attrs
               else new.user_attrs[RUNGS_ATTR]) == 1  # one epoch of three, then stopped


@pytest.mark.slow
def test_resume_extends_a_study_to_its_raised_budget(tmp_path):
    run = ["--storage", "s.journal", "--study", "s", "--epochs", "1"]
    assert cli("search", *run, "--trials", "2", cwd=tmp_path).returncode == 0
    res = cli("search", *run, "--trials", "3", cwd=tmp_path)
    assert res.returncode == 2 and "add --resume" in res.stderr
    res = cli("search", "--storage", "s.journal", "--study", "s", "--resume", "--trials", "4",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    study = load_study(str(tmp_path / "s.journal"), "s")
    assert len(finished(study)) == 4 and study.user_attrs["bnnx"]["trials"] == 4
    res = cli("search", "--storage", "s.journal", "--study", "s", "--resume", "--trials", "1",
              cwd=tmp_path)
    assert res.returncode == 2 and "--trials must be >= 4" in res.stderr
    res = cli("search", "--storage", "s.journal", "--study", "t", "--resume", cwd=tmp_path)
    assert res.returncode == 2 and "study 't' not found" in res.stderr


@pytest.mark.slow
def test_enqueued_config_runs_first_with_the_studys_epochs(tmp_path):
    spec = str(tmp_path / "s.journal")
    run_search(spec, "s", SearchSettings(trials=1, epochs=1))
    config = tmp_path / "winner.json"
    config.write_text(json.dumps({"arch": {"width": 16, "depth": 1, "kernel_size": 5},
                                  "train": {"epochs": 40, "lr": 0.004}}))
    res = cli("enqueue", "--storage", spec, "--study", "s", "--config", str(config),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["enqueued_trials"] == [1]
    assert "room for 0 more" in res.stderr
    raise_budget(spec, "s", 2)
    run_worker(spec, "s")
    trial = load_study(spec, "s").trials[1]
    assert trial.state == State.COMPLETE
    arch, train = trial.user_attrs["config"]["arch"], trial.user_attrs["config"]["train"]
    assert (arch["width"], arch["kernel_size"], train["lr"]) == (16, 5, 0.004)
    assert train["epochs"] == 1  # the study's budget, not the file's
    assert trial.params["width"] == 16  # the knobs the space has become its params
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"arch": {"width": 3}}))
    res = cli("enqueue", "--storage", spec, "--study", "s", "--config", str(config),
              "--config", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and "bad.json" in res.stderr
    assert len(load_study(spec, "s").trials) == 2  # a bad file queues nothing


def test_budget_counts_finished_trials_and_lost_races_fail_at_once(tmp_path):
    from search.budget import BUDGET_REASON, BudgetReached, check_place, is_covered

    spec = str(tmp_path / "s.journal")
    run_search(spec, "s", SearchSettings(trials=1, epochs=1))
    study = load_study(spec, "s")
    assert is_covered(study)
    with pytest.raises(StorageError):
        raise_budget(spec, "nope", 3)
    raise_budget(spec, "s", 2)
    study = load_study(spec, "s")
    first, second = study.ask(), study.ask()  # two workers asked at once for the last place
    check_place(study, first.number)
    with pytest.raises(BudgetReached, match=BUDGET_REASON):
        check_place(study, second.number)


def test_the_optuna_cli_reads_a_bnnx_study(tmp_path):
    spec = str(tmp_path / "s.journal")
    run_search(spec, "s", SearchSettings(trials=1, epochs=1, early_stop="off"))
    optuna_cli = Path(sys.executable).parent / "optuna"
    for command in (["studies"], ["trials", "--study-name", "s"],
                    ["best-trials", "--study-name", "s"]):
        res = subprocess.run([str(optuna_cli), *command, "--storage", spec, "-f", "json"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)
