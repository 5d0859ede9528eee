"""Every mistake a user can make gets one line naming it, exit code 2, and changes nothing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import flask
import optuna
import pytest

import app
from explorer.app import guard_host_header, is_loopback
from search import SearchSettings, create_study, export_trial, run_search
from search.storage import StorageError, masked, open_storage

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def one_line(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("args, words", [
    (["search", "--study", ""], ["study name ''"]),
    (["search", "--study", " x"], ["study name ' x'"]),
    (["export", "--study", "", "--out", "o"], ["study name ''"]),
    (["--port", "70000"], ["expected a port 1..65535"]),
    (["--host", "0.0.0.0", "--no-browser"], ["--allow-remote"]),
    (["--runs", "afile", "--no-browser"], ["--runs afile is a file"]),
    (["search", "--artifacts", "afile", "--study", "a"], ["artifacts folder afile is a file"]),
    (["search", "--storage", "postgresql://bnnx:s3cret@127.0.0.1:1/db"], ["cannot open", "***"]),
    (["search", "--storage", "sqlite:///s.db", "--workers", "2"], ["journal file"]),
    (["train", "--config", "c.json", "--out", "o", "--cache", "afile"], ["--cache afile"]),
])
def test_bad_values_are_one_line_and_create_nothing(tmp_path, args, words):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "c.json").write_text("{}")
    res = cli(*args, cwd=tmp_path)
    if args[0].startswith("--port"):
        assert res.returncode == 2 and words[0] in res.stderr  # argparse's own usage error
    else:
        one_line(res, *words)
    assert "s3cret" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c.json"]  # nothing created


def test_top_level_storage_reaches_every_subcommand(tmp_path):
    spec = str(tmp_path / "s.journal")
    optuna.create_study(storage=open_storage(spec, create=True), study_name="s")
    res = cli("--storage", spec, "export", "--study", "nope", "--out", "o", cwd=tmp_path)
    one_line(res, "study 'nope' not found", "studies there: s")
    res = cli("--storage", spec, "worker", "--study", "nope", cwd=tmp_path)
    one_line(res, "study 'nope' not found")
    assert not (tmp_path / "runs").exists()  # the default storage was never touched


def test_racing_searches_for_one_name_get_the_one_line_error(tmp_path, monkeypatch):
    spec = str(tmp_path / "s.journal")
    create_study(spec, "race", SearchSettings())
    monkeypatch.setattr(optuna, "get_all_study_names", lambda storage: [])  # lost the race
    with pytest.raises(StorageError, match="study 'race' already exists"):
        create_study(spec, "race", SearchSettings())


@pytest.mark.parametrize("exc, line", [
    (PermissionError(13, "Permission denied", "/x/s.journal"),
     "error: /x/s.journal: Permission denied"),
    (NotADirectoryError(20, "Not a directory", "runs/x"), "error: runs/x: Not a directory"),
    (optuna.exceptions.StorageInternalError("db gone\nmore"),
     "error: StorageInternalError: db gone"),
    (ValueError("postgresql://u:pw@h/db failed"), "error: postgresql://u:***@h/db failed"),
])
def test_user_errors_are_one_line(monkeypatch, capsys, exc, line):
    monkeypatch.setattr(app, "cmd_summary", lambda _args: (_ for _ in ()).throw(exc))
    assert app.main(["summary", "--config", "c.json"]) == 2
    assert capsys.readouterr().err == line + "\n"


def test_bugs_keep_their_traceback(monkeypatch):
    def bug(_args):
        raise AttributeError("a bug")

    monkeypatch.setattr(app, "cmd_summary", bug)
    with pytest.raises(AttributeError, match="a bug"):
        app.main(["summary", "--config", "c.json"])


def test_masked_hides_passwords_only():
    assert masked("cannot open postgresql://bnnx:pw@127.0.0.1:5432/db: x") == \
        "cannot open postgresql://bnnx:***@127.0.0.1:5432/db: x"
    assert masked("runs/bnnx.journal") == "runs/bnnx.journal"


def test_host_header_must_name_this_machine():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    server = flask.Flask("t")
    server.add_url_rule("/", "index", lambda: "ok")
    guard_host_header(server, 8050)
    client = server.test_client()
    assert client.get("/", headers={"Host": "localhost:8050"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1:8050"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example:8050"}).status_code == 403
    assert client.get("/", headers={"Host": "localhost:9999"}).status_code == 403


@pytest.mark.slow
def test_journal_and_artifacts_move_together(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    run_search(str(old / "s.journal"), "s", SearchSettings(trials=1, epochs=1))
    assert optuna.load_study(study_name="s", storage=open_storage(str(old / "s.journal"))) \
        .user_attrs["bnnx"]["artifacts"] == "artifacts"  # relative: it moves with the journal
    shutil.move(old, tmp_path / "new")
    out = export_trial(str(tmp_path / "new" / "s.journal"), "s", None, tmp_path / "m")
    assert (out / "model.bnnx").is_file() and not old.exists()
    elsewhere = tmp_path / "weights"
    shutil.move(tmp_path / "new" / "artifacts", elsewhere)
    with pytest.raises(StorageError, match="--artifacts"):
        export_trial(str(tmp_path / "new" / "s.journal"), "s", None, tmp_path / "m2")
    assert not (tmp_path / "new" / "artifacts").exists()  # no empty folder at the old path
    out = export_trial(str(tmp_path / "new" / "s.journal"), "s", None, tmp_path / "m2",
                       artifacts=str(elsewhere))
    assert (out / "model.bnnx").is_file()
