"""Trials whose process died (SIGKILL, OOM, power loss) are failed and retried, never RUNNING.

A journal file has no heartbeat, so each trial records who runs it: host, boot, pid and the
process's start time (a pid alone can be reused). Every start of `search`, `worker` or the
explorer fails the RUNNING trials of this host whose process is gone and queues their
parameters once more, as Optuna's RetryHeartbeatStaleTrialCallback does on databases.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

PROCESS_ATTR = "process"
DIED_REASON = "process died"
MAX_RETRY = 1


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None when
    it is gone or a zombie (killed, not yet reaped by its parent: dead all the same)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the fields after the parenthesised name
    return None if fields[0] in ("Z", "X") else fields[19]


def this_process() -> dict[str, Any]:
    """Who runs a trial: enough to tell later, on this host, whether it is still alive."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _read("/proc/sys/kernel/random/boot_id"),
            "pid": pid, "started": _start_ticks(pid)}


def runs_here(trial: FrozenTrial) -> bool:
    """True when `trial` records a process of this host (whose death is_dead can tell)."""
    owner = trial.user_attrs.get(PROCESS_ATTR)
    return isinstance(owner, dict) and owner.get("host") == socket.gethostname()


def is_dead(owner: dict[str, Any]) -> bool:
    """True when `owner` (from this_process) ran on this host and is gone; other hosts' trials
    are never judged from here."""
    if owner.get("host") != socket.gethostname():
        return False
    if owner.get("boot") != _read("/proc/sys/kernel/random/boot_id"):
        return True  # the machine restarted since
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if owner.get("started") is not None:
        return _start_ticks(pid) != owner["started"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_dead_trials(storage: BaseStorage,
                        study_name: str | None = None) -> list[tuple[str, int]]:
    """Fail (and retry once) every RUNNING trial in `storage` (or its study `study_name`)
    whose local process is gone.

    Returns (study, trial number) of each trial it failed.
    """
    failed = []
    with warnings.catch_warnings():  # experimental flag on a stable, documented callback
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    names = [study_name] if study_name else optuna.get_all_study_names(storage)
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get(PROCESS_ATTR)
            if not isinstance(owner, dict) or not is_dead(owner):
                continue
            try:
                storage.set_trial_user_attr(trial._trial_id, "fail_reason", DIED_REASON)
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # another process recovered it first
            retry(study, storage.get_trial(trial._trial_id))
            failed.append((name, trial.number))
    return failed


def recover_and_report(storage: BaseStorage, study_name: str | None = None) -> None:
    """recover_dead_trials, one stderr line per trial it failed."""
    for study, number in recover_dead_trials(storage, study_name):
        print(f"trial {number} of study {study} was left RUNNING by a process that died: "
              f"marked failed, its parameters queued once more", file=sys.stderr, flush=True)
