"""Workers die mid-trial (SIGKILL): their trial ends FAIL and is retried, no finished trial is
lost, and the study ends with exactly its budget of finished trials, none left RUNNING."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from search import load_study
from search.stale import DIED_REASON, PROCESS_ATTR
from search.storage import StorageError

ROOT = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "BNNX_HEARTBEAT_S": "1"}
BUDGET = 4


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), *args], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def running_trial_of(spec: str, name: str, pid: int, timeout: float = 180):
    """The trial process `pid` is running, once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for t in load_study(spec, name).get_trials(states=(State.RUNNING,)):
                owner = t.user_attrs.get(PROCESS_ATTR, {})
                if owner.get("pid") == pid and "config" in t.user_attrs:
                    return t  # compiling or training: RUNNING either way
        except StorageError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"process {pid} started no trial in time")


def check_exact(study: optuna.Study, killed: int) -> None:
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert not study.get_trials(states=(State.RUNNING,))
    assert len(study.get_trials(states=(State.COMPLETE, State.PRUNED))) == BUDGET
    dead = study.trials[killed]
    assert dead.state == State.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].params == dead.params
    assert retries[0].state in (State.COMPLETE, State.PRUNED)


def search_args(spec: str, name: str) -> list[str]:
    return ["search", "--storage", spec, "--study", name, "--trials", str(BUDGET), "--epochs",
            "10", "--early-stop", "off"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BNNX_TEST_POSTGRES"), reason="BNNX_TEST_POSTGRES unset "
                    "(.ci/run starts PostgreSQL and sets it)")
def test_postgres_worker_killed_mid_trial(tmp_path):
    spec, name = os.environ["BNNX_TEST_POSTGRES"], f"kill-{uuid.uuid4().hex[:8]}"
    artifacts = ["--artifacts", str(tmp_path / "artifacts")]
    first = start(*search_args(spec, name), *artifacts, cwd=tmp_path)
    until_study(spec, name, first)
    others = [start("worker", "--storage", spec, "--study", name, "--worker-index", str(i),
                    "--threads", "1", cwd=tmp_path) for i in (1, 2)]
    victim = others[1]
    trial = running_trial_of(spec, name, victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    for p in (first, others[0]):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    check_exact(load_study(spec, name), trial.number)


@pytest.mark.slow
def test_journal_worker_process_killed_mid_trial(tmp_path):
    spec = str(tmp_path / "s.journal")
    parent = start(*search_args(spec, "s"), "--workers", "2", cwd=tmp_path)
    until_study(spec, "s", parent)
    deadline = time.monotonic() + 60
    while len(children(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [p for p in children(parent.pid)
               if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    victim = workers[-1]
    trial = running_trial_of(spec, "s", victim)
    os.kill(victim, signal.SIGKILL)
    _, err = parent.communicate(timeout=600)
    assert parent.returncode == 0, err
    study = load_study(spec, "s")
    assert study.trials[trial.number].user_attrs["fail_reason"] == DIED_REASON
    check_exact(study, trial.number)


@pytest.mark.slow
def test_journal_search_killed_whole_then_resumed(tmp_path):
    spec = str(tmp_path / "s.journal")
    proc = start(*search_args(spec, "s"), cwd=tmp_path)
    until_study(spec, "s", proc)
    trial = running_trial_of(spec, "s", proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = start("search", "--storage", spec, "--study", "s", "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "left RUNNING by a process that died" in err
    check_exact(load_study(spec, "s"), trial.number)


def until_study(spec: str, name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            load_study(spec, name)
            return
        except StorageError:
            time.sleep(0.2)
    raise AssertionError("the study was not created in time")
