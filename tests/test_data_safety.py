"""Nothing a user has is lost: output folders, damaged journals, concurrent exports."""

import json
import os
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import optuna
import pytest

from search.export import ModelFolderError, write_model_folder
from search.journal import JournalDamagedError
from search.storage import load_study, open_storage
from spaces import Config, build_model

ROOT = Path(__file__).resolve().parents[1]
META = {"dataset": "digits", "in_channels": 1, "num_classes": 10, "image_size": 8,
        "mean": [4.9], "std": [6.0]}
CONFIG = Config.from_dict({"arch": {"width": 8, "depth": 1}})


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def write(out: Path, force: bool = False) -> Path:
    model = build_model(CONFIG, 1, 10, 8, META["mean"], META["std"]).eval()
    return write_model_folder(out, CONFIG, model, META, {"val_accuracy": 0.5}, "t", force)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- output folders -----------------------------------------------------------------------------


def test_out_folder_of_user_files_is_refused_and_untouched(tmp_path):
    user = tmp_path / "mine"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.tex").write_text("years of work")
    (user / "sub" / "data.csv").write_text("1,2")
    before = snapshot(user)
    for force in (False, True):
        with pytest.raises(ModelFolderError, match="not a bnnx model folder"):
            write(user, force)
    assert snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left behind


def test_out_folder_holding_a_study_is_refused(tmp_path):
    spec = tmp_path / "s.journal"
    optuna.create_study(storage=open_storage(str(spec), create=True), study_name="s")
    (tmp_path / "artifacts").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ModelFolderError, match="not empty and is not a bnnx model folder"):
        write(tmp_path)
    assert snapshot(tmp_path) == before


def test_out_current_folder_or_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFolderError, match="current folder"):
        write(Path("."))
    with pytest.raises(ModelFolderError, match="current folder"):
        write(tmp_path.parent)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ModelFolderError, match="is a file"):
        write(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


def test_model_folder_is_replaced_only_with_force(tmp_path):
    out = write(tmp_path / "m")
    first = snapshot(out)
    assert set(first) == {"config.json", "weights.safetensors", "model.bnnx", "README.md"}
    with pytest.raises(ModelFolderError, match="add --force"):
        write(out)
    assert snapshot(out) == first
    write(out, force=True)
    assert set(snapshot(out)) == set(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    (tmp_path / "empty").mkdir()
    assert (write(tmp_path / "empty") / "model.bnnx").is_file()  # an empty folder is fine


def test_train_refuses_a_user_folder_before_training(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(CONFIG.to_json())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep")
    res = cli("train", "--config", str(cfg), "--out", str(tmp_path / "notes"), cwd=tmp_path)
    assert res.returncode == 2 and "not a bnnx model folder" in res.stderr
    assert "epoch" not in res.stderr  # refused before any training
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep"
    res = cli("train", "--config", str(cfg), "--out", ".", cwd=tmp_path)
    assert res.returncode == 2 and "current folder" in res.stderr


# -- journals cut by a crash --------------------------------------------------------------------


def _journal_with_trials(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "s.journal"
    study = optuna.create_study(storage=open_storage(str(path), create=True), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)
    return path


def test_torn_tail_is_cut_with_a_backup_and_the_study_goes_on(tmp_path, capsys):
    path = _journal_with_trials(tmp_path)
    whole = path.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(whole[: last + 25])  # the last record cut mid-write
    storage = open_storage(str(path))
    assert "cut short" in capsys.readouterr().err
    backups = list(tmp_path.glob("s.journal.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == whole[: last + 25]
    assert path.read_bytes() == whole[:last]
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # appends on a clean line
    again = load_study(str(path), "s")
    assert len(again.trials) == 5
    assert [t.state for t in again.trials[3:]] == [optuna.trial.TrialState.COMPLETE] * 2


def test_damaged_record_inside_is_reported_then_salvaged(tmp_path):
    path = _journal_with_trials(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    glued = lines[3][:20] + lines[4]  # a cut record with the next writer's record glued on
    path.write_bytes(b"".join(lines[:3] + [glued] + lines[5:]))
    with pytest.raises(JournalDamagedError, match=r"damaged at line 4.*bnnx repair"):
        open_storage(str(path))
    res = cli("repair", "--storage", str(path))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["first_bad_line"] == 4 and report["salvaged_lines"] == 1
    assert Path(report["backup"]).is_file()
    study = load_study(str(path), "s")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) >= 2


# -- concurrent exports from the explorer -------------------------------------------------------


def test_concurrent_exports_of_one_trial_each_give_a_whole_zip(tmp_path, monkeypatch):
    from explorer.export import export_zip

    def slow_export(spec, study, number, out_dir, force=False, formats=()):
        out_dir.mkdir(parents=True)
        for name in ("config.json", "weights.safetensors", "model.bnnx", "README.md"):
            (out_dir / name).write_bytes(os.urandom(200_000))
        return out_dir

    monkeypatch.setitem(sys.modules, "search.export",
                        types.SimpleNamespace(export_trial=slow_export))
    results, errors = [], []

    def one() -> None:
        try:
            results.append(export_zip("spec", "s", 5, tmp_path))
        except Exception as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {p.name for p in results} == {"trial-5.zip"}
    with zipfile.ZipFile(results[0]) as z:
        assert z.testzip() is None
        assert sorted(n for n in z.namelist() if not n.endswith("/")) == [
            "trial-5/README.md", "trial-5/config.json", "trial-5/model.bnnx",
            "trial-5/weights.safetensors"]
    assert [p.name for p in (tmp_path / "exports" / "s").iterdir()] == ["trial-5.zip"]


def test_a_running_search_never_appends_onto_a_torn_record(tmp_path, capsys):
    path = _journal_with_trials(tmp_path, n=1)
    storage = open_storage(str(path))  # a search that is running while another writer crashes
    study = optuna.load_study(study_name="s", storage=storage)
    with path.open("ab") as f:
        f.write(b'{"op_code":4,"worker_id":"dead","study_id":0,"datet')  # the crash's torn tail
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert "cut short" in capsys.readouterr().err
    again = load_study(str(path), "s")  # every record whole: the file still loads
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.COMPLETE] * 3
