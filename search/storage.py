"""Where studies and their artifacts live: a journal file (default), SQLite or PostgreSQL.

A journal file is Optuna's JournalFileBackend (safe for several worker processes on one machine);
`postgresql://` spreads a study over machines. Weights are Optuna artifacts in a folder recorded
with the study, so export finds them from the storage alone.
"""

from __future__ import annotations

import os
import re
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

from .journal import (
    CheckedJournalFileBackend,
    JournalDamagedError,
    first_bad_line,
    repair_command,
    repair_torn_tail,
)

RUNS_DIR = Path("runs")
DEFAULT_STORAGE = str(RUNS_DIR / "bnnx.journal")
URL_SCHEMES = ("postgresql://", "postgresql+psycopg://", "sqlite:///")


class StorageError(ValueError):
    """A storage spec that cannot be opened; the message says what was expected."""


def heartbeat_seconds() -> int:
    """Seconds between a database trial's heartbeats (BNNX_HEARTBEAT_S, default 60); a trial
    silent for three of them is failed and retried once."""
    text = os.environ.get("BNNX_HEARTBEAT_S", "60")
    if not text.isdigit() or int(text) < 1:
        raise StorageError(f"BNNX_HEARTBEAT_S must be a whole number of seconds >= 1, got {text!r}")
    return int(text)


def is_url(spec: str) -> bool:
    return "://" in spec


def masked(text: str) -> str:
    """`text` with the password of any database URL in it replaced by ***."""
    return _PASSWORD.sub(r"\1***@", text)


_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]*@")


def check_study_name(name: str) -> str:
    """A study name a user can type again: not empty, no surrounding spaces or control
    characters."""
    if not name or name != name.strip() or not name.isprintable():
        raise StorageError(f"study name {name!r} is not allowed: give a non-empty name without "
                           "surrounding spaces or control characters")
    return name


def open_storage(spec: str, create: bool = False) -> BaseStorage:
    """Open a journal file path or a database URL; `create` allows a new journal file."""
    if is_url(spec):
        if not spec.startswith(URL_SCHEMES):
            raise StorageError(
                f"unsupported storage URL {masked(spec)!r}; allowed: a journal file path, "
                + ", ".join(URL_SCHEMES)
            )
        url = spec.replace("postgresql://", "postgresql+psycopg://", 1)  # psycopg 3 driver
        if url.startswith("sqlite:///"):
            db = Path(url[len("sqlite:///") :])
            if not create and not db.is_file():
                raise StorageError(f"storage database {db} does not exist")
        beat = heartbeat_seconds()
        try:
            with warnings.catch_warnings():  # heartbeats: experimental flag, stable behaviour
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=1)  # a dead worker's trial
                return RDBStorage(url, heartbeat_interval=beat, grace_period=3 * beat,
                                  heartbeat_stale_trial_callback=retry)
        except Exception as exc:  # driver errors vary: name the URL and the cause in one line
            first = f"{exc}".splitlines()[0] if f"{exc}" else type(exc).__name__
            raise StorageError(masked(f"cannot open storage {spec!r}: {first}")) from None
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
        return JournalStorage(CheckedJournalFileBackend(str(path)))
    except ValueError as exc:  # Optuna's "Invalid log format." and JSON errors
        line = first_bad_line(path)
        where = f"line {line}" if line else "a record"
        raise JournalDamagedError(
            f"journal {path} is damaged at {where} ({exc}); run '{repair_command(path)}' "
            "while no search uses it (it keeps a backup)"
        ) from None


def artifacts_dir(spec: str, recorded: str) -> Path:
    """The artifacts folder a study recorded: a relative path is relative to the journal's (or
    SQLite file's) folder, so the two can move together; a server database's, to here."""
    folder = Path(recorded)
    if folder.is_absolute() or is_url(spec) and not spec.startswith("sqlite:///"):
        return folder
    return _file_of(spec).parent / folder


def recorded_artifacts(spec: str, folder: str) -> str:
    """What a new study records for `folder`: relative to the journal when inside its folder."""
    path = Path(folder).resolve()
    if not is_url(spec) or spec.startswith("sqlite:///"):
        base = _file_of(spec).parent.resolve()
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def _file_of(spec: str) -> Path:
    return Path(spec[len("sqlite:///") :]) if spec.startswith("sqlite:///") else Path(spec)


def default_artifacts_dir(spec: str) -> Path:
    """Beside the journal or SQLite file; `./runs/artifacts` for a server database."""
    if spec.startswith("sqlite:///"):
        return Path(spec[len("sqlite:///") :]).parent / "artifacts"
    if is_url(spec):
        return RUNS_DIR / "artifacts"
    return Path(spec).parent / "artifacts"


def check_artifacts_dir(directory: Path) -> None:
    """Refuse an artifacts folder that is a file or cannot be created, creating nothing."""
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"artifacts folder {directory} is a file; give a folder for weights")
    existing = next(p for p in (directory.absolute(), *directory.absolute().parents)
                    if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(f"artifacts folder {directory} cannot be created: {existing} is not "
                           "a writable folder")


def artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    """The store in `directory`, created if missing; a path that is a file is a StorageError."""
    directory = Path(directory)
    check_artifacts_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create artifacts folder {directory}: {exc.strerror}") from None
    return FileSystemArtifactStore(str(directory))


def load_study(spec: str, name: str) -> optuna.Study:
    """An existing study; the error lists the studies the storage does have."""
    check_study_name(name)
    storage = open_storage(spec)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise StorageError(f"study {name!r} not found in {masked(spec)}; studies there: {have}")
    return optuna.load_study(study_name=name, storage=storage)
