"""Recurring runs: start one run per due tick of every enabled schedule.

A :class:`RecurringScheduler` sweeps the store every second or so. For each enabled
recurring run it works out the ticks due since the last one claimed
(:func:`raypipe.api.schedule.due_ticks`: every missed tick with catch-up, only the latest
without), and for each, in order, creates the tick's run, which claims the tick in the
same transaction. The store refuses a tick claimed before (so two service instances, or
one restarted, never start a tick twice) and a run beyond ``max_concurrency`` (the
remaining ticks wait for the next sweep), so nothing about ticks is kept in memory.

Example:
    >>> scheduler = RecurringScheduler(store, executor)   # doctest: +SKIP
    >>> scheduler.sweep()                                  # doctest: +SKIP
    2
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from raypipe.api.executor import RunExecutor
from raypipe.api.schedule import Trigger, due_ticks
from raypipe.api.store import AlreadyExists, Conflict, RecurringRunFilter, Store
from raypipe.api.store.records import RecurringRun

__all__ = ["RecurringScheduler"]

_log = logging.getLogger("raypipe.api")


class RecurringScheduler:
    """Starts the runs of due ticks; ``clock`` is for tests (default: now, UTC)."""

    def __init__(
        self,
        store: Store,
        executor: RunExecutor | None,
        *,
        interval_seconds: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store, self.executor = store, executor
        self.interval_seconds = interval_seconds
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Sweep in a background thread until :meth:`stop` (again after a stop)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="raypipe-recurring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def sweep(self) -> int:
        """Start the runs of every due tick now; returns how many were started."""
        started = 0
        now = self.clock()
        for namespace in self.store.namespaces():
            token: str | None = None
            while True:
                page = self.store.list_recurring_runs(
                    namespace,
                    RecurringRunFilter(enabled=True),
                    sort="created_at",
                    page_size=200,
                    page_token=token,
                    include_spec=False,
                )
                for schedule in page.items:
                    started += self._fire(schedule, now)
                token = page.next_page_token
                if token is None:
                    break
        return started

    def _fire(self, schedule: RecurringRun, now: datetime) -> int:
        trigger = Trigger(
            cron=schedule.cron,
            interval_seconds=schedule.interval_seconds,
            start_time=schedule.start_time,
            end_time=schedule.end_time,
        )
        ticks = due_ticks(
            trigger,
            last_tick=schedule.last_tick_at,
            now=now,
            catchup=not schedule.no_catchup,
            origin=schedule.created_at,
            limit=schedule.max_concurrency,
        )
        started = 0
        for tick in ticks:
            try:
                run = self.store.create_run(
                    schedule.namespace,
                    display_name=f"{schedule.display_name} {tick:%Y-%m-%d %H:%M:%S}",
                    recurring_run_id=schedule.recurring_run_id,
                    tick_time=tick,
                    run_id=uuid.uuid4().hex,
                )
            except AlreadyExists:
                continue  # another instance (or an earlier sweep) started this tick
            except Conflict as exc:  # max_concurrency reached, or disabled meanwhile
                _log.info("recurring run %s waits: %s", schedule.recurring_run_id, exc)
                break
            started += 1
            if self.executor is not None:
                self.executor.submit(run)
        return started

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.sweep()
            except Exception:  # a database hiccup must not end scheduling; it is logged
                _log.exception("recurring-run sweep failed; the next one retries")
