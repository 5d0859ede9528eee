"""Journal files that a crash or a full disk left damaged: found on open, repaired with a backup.

Optuna appends one JSON record per line. A writer killed mid-append leaves a torn last line;
the next writer's record would be glued onto it, and from then on Optuna refuses the whole file.
A torn tail is truncated on open and before every append (under Optuna's own lock, after a
backup copy), so that never happens; a bad line inside the file (from an older crash) is
reported with the command that salvages it, which rewrites the file and must run while no
search uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

RECORD_START = b'{"op_code":'
TAIL_BYTES = 1 << 16


class JournalDamagedError(ValueError):
    """A journal with a bad record inside it; the message names the file, line and repair."""


@dataclass(frozen=True)
class Repair:
    """What a repair did: the backup it made and the records it dropped or salvaged."""

    backup: Path | None
    dropped_bytes: int = 0
    salvaged_lines: int = 0
    dropped_lines: int = 0


def repair_command(path: Path) -> str:
    return f"bnnx repair --storage {path}"


def has_torn_tail(path: Path) -> bool:
    """True when the file's last record lacks its newline (an append cut short)."""
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as f:
        f.seek(size - 1)
        return f.read(1) != b"\n"


def backup(path: Path) -> Path:
    """A copy of `path` beside it, named by the time; never overwrites an earlier backup."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = path.with_name(f"{path.name}.bak-{stamp}" + (f"-{n}" if n else ""))
        if not target.exists():
            shutil.copy2(path, target)
            return target
    raise FileExistsError(f"too many backups of {path} this second")


class CheckedJournalFileBackend(JournalFileBackend):
    """Optuna's journal file backend that cuts a torn tail before appending, so a record is
    never glued onto one that a crashed writer left (a running search outlives that crash)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        repair_torn_tail(Path(self._file_path))
        super().append_logs(logs)


def repair_torn_tail(path: Path) -> Repair | None:
    """Cut a torn last record off `path` (after a backup); None when the tail is whole.

    The check is repeated under the journal's lock, so a record being appended right now is
    never mistaken for a torn one.
    """
    if not path.is_file() or not has_torn_tail(path):
        return None
    with _locked(path):
        if not has_torn_tail(path):
            return None
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
        cut = tail.rfind(b"\n")
        if cut < 0 and size > TAIL_BYTES:
            raise JournalDamagedError(
                f"journal {path} ends in a record over {TAIL_BYTES} bytes without a newline; "
                f"run '{repair_command(path)}' while no search uses it"
            )
        keep = size - len(tail) + cut + 1
        saved = backup(path)
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    report = Repair(saved, dropped_bytes=size - keep)
    print(f"warning: journal {path} ended in a record cut short (a crash or a full disk): "
          f"dropped its last {report.dropped_bytes} bytes, backup at {saved}", file=sys.stderr)
    return report


def first_bad_line(path: Path) -> int | None:
    """The 1-based number of the first line that is not one whole JSON record, or None."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n") or not _is_record(line):
                return number
    return None


def salvage_journal(path: Path) -> Repair:
    """Rewrite `path` keeping every whole record (after a backup).

    A line that is a cut record with a whole one glued on (what a writer after a crash left)
    keeps the whole one; a line with nothing whole is dropped.
    """
    kept: list[bytes] = []
    salvaged = dropped = 0
    with _locked(path):
        with path.open("rb") as f:
            for line in f:
                body = line.rstrip(b"\r\n")
                if _is_record(body):
                    kept.append(body)
                    continue
                start = body.rfind(RECORD_START)
                if start > 0 and _is_record(body[start:]):
                    kept.append(body[start:])
                    salvaged += 1
                elif body.strip():
                    dropped += 1
        saved = backup(path)
        tmp = path.with_name(path.name + ".repair")
        with tmp.open("wb") as f:
            f.write(b"".join(record + b"\n" for record in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return Repair(saved, salvaged_lines=salvaged, dropped_lines=dropped)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Optuna's own lock of the journal, so no writer appends meanwhile."""
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError):
        return False
