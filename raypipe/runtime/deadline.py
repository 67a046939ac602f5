"""A step's time limit inside its worker: interrupt the step, or kill its worker if it won't stop.

At ``timeout`` seconds a ``SIGALRM`` handler raises :class:`StepTimeoutError` in the step
(Ray runs a task on its worker's main thread). Code stuck in C that never returns to
Python, or that swallows the error, does not stop; so a C-level watchdog
(``faulthandler.dump_traceback_later``, which needs no GIL) writes every thread's
traceback to a dump file and exits the worker ``kill_grace(timeout)`` seconds later.
Ray then sees a dead worker and retries the step as ``retries`` allows; the next attempt
(or the driver) reads the dump and records a timeout. The alarm, the handler and the
watchdog are always cleared when the attempt ends, and an alarm that was set before
(say by pytest-timeout) is put back with the time it had left.

Example:
    >>> with Deadline(pipeline="p", task="train", timeout=2.0, attempt=1, dump=None):
    ...     pass  # the step's code
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import IO, Any

from raypipe.runtime.failures import StepTimeoutError
from raypipe.runtime.ledger import kill_grace

__all__ = ["Deadline"]


class Deadline:
    """Context manager that limits the code inside it to ``timeout`` seconds of wall time."""

    def __init__(
        self, *, pipeline: str, task: str, timeout: float, attempt: int, dump: str | None
    ) -> None:
        self.pipeline, self.task, self.timeout, self.attempt = pipeline, task, timeout, attempt
        self.dump = dump
        self.fired = False
        self._previous: Any = None
        self._outer_timer = (0.0, 0.0)
        self._started = 0.0
        self._soft = False
        self._dump_file: IO[str] | None = None

    def _error(self) -> StepTimeoutError:
        return StepTimeoutError(
            pipeline=self.pipeline, task=self.task, timeout=self.timeout, attempt=self.attempt
        )

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self.fired = True
        raise self._error()

    def __enter__(self) -> Deadline:
        if self.dump is not None:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(self.dump), exist_ok=True)
                self._dump_file = open(self.dump, "w")  # closed in __exit__
        faulthandler.dump_traceback_later(
            self.timeout + kill_grace(self.timeout),
            exit=True,
            file=self._dump_file if self._dump_file is not None else sys.stderr,
        )
        self._soft = threading.current_thread() is threading.main_thread()
        if self._soft:  # signals reach only the main thread; elsewhere the watchdog alone acts
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            self._started = time.monotonic()
            self._outer_timer = signal.setitimer(signal.ITIMER_REAL, self.timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The alarm may go off while this runs; each step is guarded so nothing stays armed.
        try:
            try:
                if self._soft:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                if self._soft:
                    signal.signal(signal.SIGALRM, self._previous)
                    self._restore_outer_timer()
        finally:
            faulthandler.cancel_dump_traceback_later()
            if self._dump_file is not None:
                self._dump_file.close()
                with contextlib.suppress(OSError):
                    os.remove(self._dump_file.name)
        if exc_type is None and self.fired:
            # The step caught the timeout error and finished anyway: it still overran.
            raise self._error()

    def _restore_outer_timer(self) -> None:
        delay, interval = self._outer_timer
        if delay > 0:  # an earlier alarm, due now if it came due while this one ran
            left = delay - (time.monotonic() - self._started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), interval)
