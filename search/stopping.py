"""Stopping a search on a signal without leaving a trial RUNNING or a record half-written.

Ctrl+C (SIGINT) asks the search to finish its running trials and start no new one; a second
SIGINT, or SIGTERM (what the explorer's Stop and a shutdown send), stops it now: the trial being
trained ends at its next batch and is recorded as FAIL with reason "stopped". Handlers only set
flags; the training loop and the trial loop act on them, so no exception ever lands in the middle
of a storage write. Local worker processes share the flags of the process that started them.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

STOPPED_REASON = "stopped"
EXIT_STOPPED = 130  # the shell's code for a run ended by Ctrl+C


class SearchStopped(Exception):
    """Raised inside a trial that was told to stop now."""


class QuietStops(logging.Filter):
    """Drops Optuna's traceback for trials that were stopped (by a signal, or before any work
    because the budget was reached): a stop is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SearchStopped))


class Flag(Protocol):
    def is_set(self) -> bool: ...
    def set(self) -> None: ...


class StopSignals:
    """Two flags, `finish` (start no new trial) and `now` (end the running trial too)."""

    def __init__(self, finish: Flag | None = None, now: Flag | None = None) -> None:
        self.finish: Flag = finish if finish is not None else threading.Event()
        self.now: Flag = now if now is not None else threading.Event()
        self._announce = True

    @classmethod
    def shared(cls) -> StopSignals:
        """Flags that spawned worker processes can share (see `run_search`)."""
        ctx = mp.get_context("spawn")
        return cls(ctx.Event(), ctx.Event())

    @property
    def requested(self) -> bool:
        return self.finish.is_set() or self.now.is_set()

    def check(self) -> None:
        """Raise SearchStopped when told to stop now (called between training batches)."""
        if self.now.is_set():
            raise SearchStopped(STOPPED_REASON)

    @contextmanager
    def installed(self, worker: bool = False) -> Iterator[StopSignals]:
        """Handle SIGINT and SIGTERM (in the main thread) until the block ends.

        A local `worker` process leaves SIGINT to the process that started it (a terminal's
        Ctrl+C reaches both, and counting it twice would turn "finish" into "now") and stops
        quietly on SIGTERM.
        """
        self._announce = not worker
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN if worker else self._on_interrupt)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        if self.finish.is_set():
            self._on_term(signum, frame)
            return
        self.finish.set()
        print("stopping: the running trials finish, no new one starts (Ctrl+C again to stop "
              "now)", file=sys.stderr, flush=True)

    def _on_term(self, signum: int, frame: Any) -> None:
        if self._announce and not self.now.is_set():
            print(f"stopping now ({signal.Signals(signum).name}): the running trials are "
                  f"recorded as failed, reason '{STOPPED_REASON}'", file=sys.stderr, flush=True)
        self.finish.set()
        self.now.set()
