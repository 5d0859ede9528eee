"""Where studies and their artifacts live: a journal file (default), SQLite or PostgreSQL.

A journal file is Optuna's JournalFileBackend (safe for several worker processes on one machine);
`postgresql://` spreads a study over machines. Weights are Optuna artifacts in a folder recorded
with the study, so export finds them from the storage alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend

from .journal import JournalDamagedError, first_bad_line, repair_command, repair_torn_tail

RUNS_DIR = Path("runs")
DEFAULT_STORAGE = str(RUNS_DIR / "bnnx.journal")
URL_SCHEMES = ("postgresql://", "postgresql+psycopg://", "sqlite:///")


class StorageError(ValueError):
    """A storage spec that cannot be opened; the message says what was expected."""


def is_url(spec: str) -> bool:
    return "://" in spec


def open_storage(spec: str, create: bool = False) -> BaseStorage:
    """Open a journal file path or a database URL; `create` allows a new journal file."""
    if is_url(spec):
        if not spec.startswith(URL_SCHEMES):
            raise StorageError(
                f"unsupported storage URL {spec!r}; allowed: a journal file path, "
                + ", ".join(URL_SCHEMES)
            )
        url = spec.replace("postgresql://", "postgresql+psycopg://", 1)  # psycopg 3 driver
        if url.startswith("sqlite:///"):
            db = Path(url[len("sqlite:///") :])
            if not create and not db.is_file():
                raise StorageError(f"storage database {db} does not exist")
        try:
            with warnings.catch_warnings():  # heartbeats: experimental flag, stable behaviour
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=1)  # a dead worker's trial
                return RDBStorage(url, heartbeat_interval=60, grace_period=180,
                                  heartbeat_stale_trial_callback=retry)
        except Exception as exc:  # driver errors vary: name the URL and the cause in one line
            raise StorageError(f"cannot open storage {spec!r}: {exc}".splitlines()[0]) from None
    path = Path(spec)
    if path.is_dir():
        raise StorageError(f"storage {spec!r} is a folder; give a journal file path")
    if not path.exists():
        if not create:
            raise StorageError(f"storage file {spec!r} does not exist")
        if path.parent == RUNS_DIR:
            RUNS_DIR.mkdir(exist_ok=True)
        if not path.parent.is_dir():
            raise StorageError(f"folder {str(path.parent)!r} of storage {spec!r} does not exist")
    repair_torn_tail(path)
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except ValueError as exc:  # Optuna's "Invalid log format." and JSON errors
        line = first_bad_line(path)
        where = f"line {line}" if line else "a record"
        raise JournalDamagedError(
            f"journal {path} is damaged at {where} ({exc}); run '{repair_command(path)}' "
            "while no search uses it (it keeps a backup)"
        ) from None


def default_artifacts_dir(spec: str) -> Path:
    """Beside the journal or SQLite file; `./runs/artifacts` for a server database."""
    if spec.startswith("sqlite:///"):
        return Path(spec[len("sqlite:///") :]).parent / "artifacts"
    if is_url(spec):
        return RUNS_DIR / "artifacts"
    return Path(spec).parent / "artifacts"


def artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    Path(directory).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def load_study(spec: str, name: str) -> optuna.Study:
    """An existing study; the error lists the studies the storage does have."""
    storage = open_storage(spec)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise StorageError(f"study {name!r} not found in {spec}; studies there: {have}")
    return optuna.load_study(study_name=name, storage=storage)
