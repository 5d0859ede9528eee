"""Signals end a search cleanly: no trial left RUNNING, stopped trials say so; dead workers'
trials are failed and retried; a resumed worker does not replay earlier parameters."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from search import SearchSettings, load_study, raise_budget, run_search, run_worker
from search.stale import DIED_REASON, recover_dead_trials
from search.stopping import EXIT_STOPPED, STOPPED_REASON
from search.storage import StorageError, open_storage

ROOT = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState


def start_search(tmp: Path, epochs: int, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`app.py search` in its own process group, as a terminal or the explorer starts it."""
    spec = str(tmp / "s.journal")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "search", "--storage", spec, "--study", "s",
         "--trials", "40", "--epochs", str(epochs), "--workers", str(workers)],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return proc, spec


def wait_for_running(proc: subprocess.Popen, spec: str, count: int = 1,
                     timeout: float = 120) -> list[optuna.trial.FrozenTrial]:
    """Block until `count` trials are RUNNING with their process recorded, then let them train."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if Path(spec).exists():
            try:
                trials = load_study(spec, "s").get_trials(states=(State.RUNNING,))
            except StorageError:
                trials = []
            if len(trials) >= count and all("config" in t.user_attrs for t in trials):
                time.sleep(1.5)  # into the training loop
                return trials
        time.sleep(0.2)
    raise AssertionError("no trial started in time")


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def states(spec: str) -> list[State]:
    return [t.state for t in load_study(spec, "s").trials]


@pytest.mark.slow
def test_ctrl_c_finishes_the_running_trial_then_stops(tmp_path):
    proc, spec = start_search(tmp_path, epochs=6)
    running = wait_for_running(proc, spec)
    os.killpg(proc.pid, signal.SIGINT)
    code, err = finish(proc)
    assert code == EXIT_STOPPED, err
    assert "stopping: the running trials finish" in err and "stopped by a signal" in err
    study = load_study(spec, "s")
    assert study.trials[running[0].number].state == State.COMPLETE
    assert State.RUNNING not in states(spec) and len(study.trials) < 40


@pytest.mark.slow
@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["sigterm", "ctrl-c-twice"])
def test_stop_now_marks_the_running_trial_stopped(tmp_path, signals):
    proc, spec = start_search(tmp_path, epochs=500)
    running = wait_for_running(proc, spec)
    started = time.monotonic()
    for sig in signals:
        os.killpg(proc.pid, sig)
        time.sleep(0.3)
    code, err = finish(proc, timeout=60)
    assert code == EXIT_STOPPED, err
    assert time.monotonic() - started < 30  # not after 500 epochs
    trial = load_study(spec, "s").trials[running[0].number]
    assert trial.state == State.FAIL and trial.user_attrs["fail_reason"] == STOPPED_REASON
    assert State.RUNNING not in states(spec)
    assert "Traceback" not in err


@pytest.mark.slow
def test_two_workers_stop_together_on_ctrl_c_twice(tmp_path):
    proc, spec = start_search(tmp_path, epochs=500, workers=2)
    wait_for_running(proc, spec, count=2)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    code, err = finish(proc, timeout=90)
    assert code == EXIT_STOPPED, err
    study = load_study(spec, "s")
    assert State.RUNNING not in states(spec)
    stopped = [t for t in study.trials if t.user_attrs.get("fail_reason") == STOPPED_REASON]
    assert len(stopped) == 2


@pytest.mark.slow
def test_killed_search_leaves_no_running_trial_after_recovery(tmp_path):
    proc, spec = start_search(tmp_path, epochs=500)
    running = wait_for_running(proc, spec)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert states(spec)[running[0].number] == State.RUNNING  # what a crash leaves
    storage = open_storage(spec)
    assert recover_dead_trials(storage) == [("s", running[0].number)]
    assert recover_dead_trials(storage) == []  # once only
    study = load_study(spec, "s")
    dead = study.trials[running[0].number]
    assert dead.state == State.FAIL and dead.user_attrs["fail_reason"] == DIED_REASON
    waiting = study.get_trials(states=(State.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == dead.params  # queued for one retry


def test_live_trials_of_this_and_other_hosts_are_left_alone(tmp_path):
    from search.stale import PROCESS_ATTR, this_process

    spec = str(tmp_path / "s.journal")
    study = optuna.create_study(storage=open_storage(spec, create=True), study_name="s")
    mine = study.ask()
    mine.set_user_attr(PROCESS_ATTR, this_process())  # alive: this very process
    other = study.ask()
    other.set_user_attr(PROCESS_ATTR, {**this_process(), "host": "elsewhere", "pid": 1})
    reused = study.ask()
    reused.set_user_attr(PROCESS_ATTR, {**this_process(), "started": "1"})  # pid reused
    assert recover_dead_trials(open_storage(spec)) == [("s", reused.number)]


def test_resumed_worker_does_not_replay_trial_zero(tmp_path):
    spec = str(tmp_path / "s.journal")
    run_search(spec, "s", SearchSettings(trials=1, epochs=1, seed=3))
    raise_budget(spec, "s", 2)
    run_worker(spec, "s", worker=0)  # the default --worker-index, after a stop
    first, second = load_study(spec, "s").trials
    assert first.params != second.params


def test_sqlite_with_several_workers_is_refused_before_creating(tmp_path):
    spec = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(StorageError, match="journal file"):
        run_search(spec, "s", SearchSettings(trials=2, epochs=1), workers=2)
    assert not (tmp_path / "s.db").exists()


def test_search_whose_every_trial_fails_exits_1(tmp_path, monkeypatch, capsys):
    import app
    from search import objective

    def broken(*_args, **_kw):
        raise RuntimeError("no memory (simulated)")

    monkeypatch.setattr(objective, "train", broken)
    before = signal.getsignal(signal.SIGINT)
    code = app.main(["search", "--storage", str(tmp_path / "s.journal"), "--trials", "2",
                     "--epochs", "1"])
    assert code == 1
    assert "every trial failed; the first: RuntimeError: no memory" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored after the search
