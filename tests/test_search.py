"""Search end to end on digits: study contents, failures recorded, export -> predict."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

import kernels
from search import SearchSettings, export_trial, load_study, run_search, torch_model
from search.datasets import get_dataset
from search.storage import StorageError, open_storage

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One real 2-trial, 1-epoch search shared by the tests below."""
    tmp = tmp_path_factory.mktemp("study")
    spec = str(tmp / "study.journal")
    study = run_search(spec, "t", SearchSettings(trials=2, epochs=1, seed=1), workers=1)
    return spec, study, tmp


@pytest.mark.slow
def test_two_trial_search_stores_everything(searched):
    spec, study, _ = searched
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    assert study.metric_names == ["val_accuracy", "latency_ms"]
    assert study.user_attrs["bnnx"]["dataset"] == "digits"
    for t in trials:
        m = t.user_attrs["metrics"]
        assert t.values == [m["val_accuracy"], m["latency_ms"]]
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["latency_ms"] > 0
        assert m["params_binary"] > 0 and 0 < m["packed_bytes"] < m["fp32_bytes"]
        assert len(t.user_attrs["learning_curve"]) == 1
        assert [r["name"] for r in t.user_attrs["layer_latency"]]
        assert {"width", "depth", "input_quantizer", "weight_quantizer"} <= set(t.params)
        assert t.user_attrs["summary"]["binary_macs"] > 0
        measured = t.user_attrs["measured_on"]  # the study's latency threads, not --workers'
        assert measured["threads"] == study.user_attrs["bnnx"]["latency_threads"] == 1
        assert measured["cpu"] and measured["isa"] and m["latency_iqr_ms"] >= 0
        assert t.user_attrs["process"]["pid"] > 0
        assert optuna.artifacts.get_all_artifact_meta(t, storage=open_storage(spec))


@pytest.mark.slow
def test_export_then_predict_reproduces_test_accuracy(searched):
    spec, study, tmp = searched
    out = export_trial(spec, "t", None, tmp / "export")
    assert {p.name for p in out.iterdir()} == {
        "config.json", "weights.safetensors", "model.bnnx", "README.md"
    }
    best = max(study.best_trials, key=lambda t: (t.values[0], -t.values[1]))
    card = (out / "README.md").read_text()
    assert f"trial {best.number}" in card
    assert f"- CPU model: {best.user_attrs['measured_on']['cpu']}" in card  # the search's
    assert f"- ISA path of the kernels: {best.user_attrs['isa']}" in card
    assert "bnnx search --dataset digits --space quick" in card
    data = get_dataset("digits")
    x = tmp / "x.npy"
    np.save(x, data.x_test[:, 0])  # raw (N, H, W) images, as the dataset provides them
    res = cli("predict", "--model", str(out), "--input", str(x))
    assert res.returncode == 0, res.stderr
    pred = np.array(json.loads(res.stdout)["predictions"])
    direct = cli("predict", "--model", str(out / "model.bnnx"), "--input", str(x))
    assert direct.returncode == 0, direct.stderr  # the packed file itself is accepted too
    assert json.loads(direct.stdout)["predictions"] == pred.tolist()
    assert pred.shape == data.y_test.shape
    assert float((pred == data.y_test).mean()) == pytest.approx(
        best.user_attrs["metrics"]["test_accuracy"], abs=1e-9
    )
    # the torch model rebuilt from config.json + weights.safetensors agrees
    import torch

    logits = torch_model(out)(torch.from_numpy(data.x_test))
    assert np.array_equal(logits.argmax(1).numpy(), pred)


@pytest.mark.slow
def test_export_cli_by_trial_number_and_errors(searched):
    spec, _, tmp = searched
    res = cli("export", "--storage", spec, "--study", "t", "--trial", "0", "--out",
              str(tmp / "e0"))
    assert res.returncode == 0, res.stderr
    assert (tmp / "e0" / "model.bnnx").is_file()
    res = cli("export", "--storage", spec, "--study", "t", "--trial", "7", "--out",
              str(tmp / "e7"))
    assert res.returncode == 2 and "trial 7" in res.stderr and "completed: 0, 1" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp / "e7").exists()
    res = cli("export", "--storage", spec, "--study", "nope", "--out", str(tmp / "e"))
    assert res.returncode == 2 and "study 'nope' not found" in res.stderr


def test_failing_trial_is_recorded_and_search_goes_on(tmp_path, monkeypatch):
    from search import objective

    calls = {"n": 0}
    real = objective.train

    def flaky(config, data, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(config, data, **kw)

    monkeypatch.setattr(objective, "train", flaky)
    spec = str(tmp_path / "s.journal")
    study = run_search(spec, "f", SearchSettings(trials=2, epochs=1), workers=1)
    states = [t.state for t in study.trials]  # the budget counts finished trials: one more runs
    assert states == [optuna.trial.TrialState.FAIL] + [optuna.trial.TrialState.COMPLETE] * 2
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: out of memory (simulated)"


def test_worker_whose_dataset_cannot_load_fails_a_trial_and_the_study_goes_on(
        tmp_path, monkeypatch, capsys):
    """A worker on a machine without the study's data records why, stops, loses nothing; a
    worker that has the data finishes the budget."""
    from search import datasets, raise_budget, run_worker
    from search import study as study_module

    spec = str(tmp_path / "s.journal")
    run_search(spec, "d", SearchSettings(trials=1, epochs=1), workers=1)
    real = datasets.search_data

    def missing(name, train_subset=None):
        raise FileNotFoundError(f"{name} is not on this machine (simulated)")

    monkeypatch.setattr(study_module, "search_data", missing)
    raise_budget(spec, "d", 2)
    run_worker(spec, "d", worker=1)
    assert "dataset cannot load on this machine" in capsys.readouterr().err
    study = load_study(spec, "d")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "digits is not on this machine" in \
        failed[0].user_attrs["fail_reason"]
    monkeypatch.setattr(study_module, "search_data", real)
    run_worker(spec, "d", worker=2)
    states = [t.state for t in load_study(spec, "d").trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    assert optuna.trial.TrialState.RUNNING not in states


def test_storage_errors_are_clear(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(str(tmp_path / "missing.journal"))
    with pytest.raises(StorageError, match="folder .* does not exist"):
        open_storage(str(tmp_path / "no" / "dir" / "s.journal"), create=True)
    with pytest.raises(StorageError, match="unsupported storage URL 'mysql://x'"):
        open_storage("mysql://x")
    spec = str(tmp_path / "s.journal")
    run_search(spec, "dup", SearchSettings(trials=1, epochs=1), workers=1)
    with pytest.raises(StorageError, match="study 'dup' already exists"):
        run_search(spec, "dup", SearchSettings(trials=1, epochs=1), workers=1)
    with pytest.raises(StorageError, match="studies there: dup"):
        load_study(spec, "other")


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--dataset", "imagenet"], "unknown dataset 'imagenet'; allowed: digits"),
        (["search", "--space", "huge"], "unknown search space 'huge'; allowed: quick"),
        (["search", "--storage", "/nonexistent/dir/x.journal"], "does not exist"),
        (["export", "--storage", "/nonexistent.journal", "--study", "s", "--out", "o"],
         "storage file '/nonexistent.journal' does not exist"),
        (["predict", "--model", "/nonexistent", "--input", "x.npy"],
         "model folder /nonexistent does not exist"),
        (["train", "--config", "/nonexistent.json", "--out", "o"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message, tmp_path):
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_bad_config_and_corrupt_model(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"arch": {"family": "plain", "width": 3}}))
    res = cli("train", "--config", str(cfg), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert res.returncode == 2 and "arch.width = 3 is out of range" in res.stderr
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.bnnx").write_bytes(b"not a model")
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8), np.float32))
    res = cli("predict", "--model", str(model), "--input", str(tmp_path / "x.npy"), cwd=tmp_path)
    assert res.returncode == 2 and "model.bnnx" in res.stderr and "Traceback" not in res.stderr


def test_cli_train_prints_progress_and_reuses_its_distillation_teacher(tmp_path):
    cfg = tmp_path / "kd.json"
    cfg.write_text(json.dumps({"arch": {"width": 8, "depth": 1},
                               "train": {"epochs": 1, "distill_weight": 0.5}}))
    runs = []
    for out in ("a", "b"):
        res = cli("train", "--config", str(cfg), "--out", str(tmp_path / out), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "kd epoch 1: train acc" in res.stderr
        teachers = sorted((tmp_path / "runs" / "teachers").glob("*.safetensors"))
        assert len(teachers) == 1
        runs.append(teachers[0].stat().st_mtime_ns)
    assert runs[0] == runs[1]  # the second run loaded the cached fp twin, it did not retrain it
    card = (tmp_path / "a" / "README.md").read_text()  # its latency names the machine
    assert "not recorded" not in card and kernels.active_isa() in card


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BNNX_TEST_POSTGRES"), reason="BNNX_TEST_POSTGRES unset "
                    "(.ci/run starts PostgreSQL and sets it)")
def test_postgres_study_with_two_worker_processes(tmp_path):
    import uuid

    spec = os.environ["BNNX_TEST_POSTGRES"]
    name = f"pg-{uuid.uuid4().hex[:8]}"
    settings = SearchSettings(trials=2, epochs=1, artifacts=str(tmp_path / "artifacts"))
    study = run_search(spec, name, settings, workers=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    out = export_trial(spec, name, None, tmp_path / "export")
    assert (out / "model.bnnx").is_file()
