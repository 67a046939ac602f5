"""``RunHandle``: a submitted run you can poll, wait for and cancel, from any thread.

Example:
    >>> handle = raypipe.submit(addition, {"a": 1, "b": 2})   # doctest: +SKIP
    >>> handle.status()                                        # doctest: +SKIP
    <RunStatus.RUNNING: 'RUNNING'>
    >>> handle.wait(timeout=60).output                          # doctest: +SKIP
    13
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from raypipe.runtime.execution import Execution
from raypipe.runtime.failures import RunNotFinishedError
from raypipe.runtime.progress import Progress, auto_progress
from raypipe.runtime.result import RunResult, RunStatus

__all__ = ["RunHandle"]

_POLL_S = 0.1  # wait() wakes this often, so Ctrl-C reaches a waiting main thread promptly


class RunHandle:
    """A run submitted with :func:`raypipe.submit`; every method is safe from any thread.

    A background thread collects the steps' reports while the run goes on, so
    :meth:`status` never blocks.

    Example:
        >>> handle = raypipe.submit(training, {"epochs": 100})   # doctest: +SKIP
        >>> handle.cancel()                                       # doctest: +SKIP
        >>> handle.wait().status                                  # doctest: +SKIP
        <RunStatus.CANCELED: 'CANCELED'>
    """

    def __init__(self, execution: Execution) -> None:
        self._execution = execution
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._collect, name=f"raypipe-run-{self.run_id[:8]}", daemon=True
        )
        self._thread.start()

    def _collect(self) -> None:
        try:
            self._result = self._execution.collect()
        except BaseException as exc:  # handed to whoever waits
            self._error = exc
        finally:
            self._done.set()

    @property
    def run_id(self) -> str:
        return self._execution.run.run_id

    @property
    def run_name(self) -> str:
        return self._execution.run_name

    @property
    def pipeline(self) -> str:
        return self._execution.spec.name

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_name} ({self.run_id}) of {self.pipeline}: {self.status()}>"

    def done(self) -> bool:
        """Whether the run has finished (its result is ready)."""
        return self._done.is_set()

    def status(self) -> RunStatus:
        """``RUNNING`` until the run has finished, then how it ended; never blocks."""
        if not self._done.is_set():
            return RunStatus.RUNNING
        return RunStatus.FAILED if self._result is None else self._result.status

    def wait(self, timeout: float | None = None, *, progress: bool | Progress = False) -> RunResult:
        """Block until the run finishes and return its result.

        Args:
            timeout: give up waiting after this many seconds (the run goes on).
            progress: show the run's progress while waiting: True for the default display
                (live on a terminal or in a notebook, plain lines otherwise; nothing under
                ``RAYPIPE_QUIET=1``), or a :class:`~raypipe.runtime.progress.Progress`.

        Raises:
            TimeoutError: the run has not finished after ``timeout`` seconds; it goes on.
        """
        shown = auto_progress() if progress is True else progress or None
        if shown is None:  # quiet: no snapshot, no display
            return self._wait(timeout)
        seen = 0  # failures already shown

        def update() -> None:
            nonlocal seen
            snapshot = self._execution.snapshot(failures_seen=seen)
            seen = snapshot.failure_count
            shown.update(snapshot)

        shown.start(self.run_name, self.pipeline)
        result: RunResult | None = None
        try:
            result = self._wait(timeout, update, shown.interval)
            return result
        finally:
            shown.close(self._execution.snapshot(failures_seen=seen), result)

    def _wait(
        self,
        timeout: float | None,
        update: Callable[[], None] | None = None,
        interval: float = _POLL_S,
    ) -> RunResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = min(_POLL_S, interval)
        next_update = time.monotonic()
        while True:
            if update is not None and time.monotonic() >= next_update:
                update()
                next_update = time.monotonic() + interval
            remaining = poll if deadline is None else min(poll, deadline - time.monotonic())
            if self._done.wait(max(remaining, 0.0)):
                return self.result()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {self.run_name} ({self.run_id}) of {self.pipeline} has not finished "
                    f"after {timeout:g} s; it is still running (cancel() stops it)"
                )

    def result(self) -> RunResult:
        """The result of the finished run, without waiting.

        Raises:
            RunNotFinishedError: the run is still going (use :meth:`wait`).
        """
        if not self._done.is_set():
            raise RunNotFinishedError(
                pipeline=self.pipeline, run_id=self.run_id, status=self.status().value
            )
        if self._error is not None:
            raise self._error
        assert self._result is not None  # set before _done
        return self._result

    def cancel(self) -> bool:
        """Cancel the run: no new step starts, running steps are killed within a second or
        two, and the run and its unfinished steps end ``CANCELED``. Returns at once; call
        :meth:`wait` for the result. False if the run had already finished."""
        return self._execution.cancel()
