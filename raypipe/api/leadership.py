"""Exactly one service process runs the executor and the recurring-run scheduler.

``raypipe server --workers N`` serves the API from N processes (and several servers may
share one database). Each asks the store for the ``executor`` lease; the one that holds
it runs the :class:`~raypipe.api.executor.RunExecutor` and the
:class:`~raypipe.api.recurring.RecurringScheduler`, and renews the lease every third of
its length. The others only serve requests: they store runs, which the leader starts.
When the leader stops cleanly it releases the lease and another process takes it within
a renewal period; when it dies (``kill -9``) its lease expires first.

Example:
    >>> leader = ExecutionLeader(store, executor, scheduler, lease_seconds=30)  # doctest: +SKIP
    >>> leader.start()      # executing at once if no other process holds the lease
    >>> leader.is_leader
    True
    >>> leader.stop()       # executor and scheduler stopped, lease released
"""

from __future__ import annotations

import logging
import threading

from raypipe.api.executor import RunExecutor
from raypipe.api.recurring import RecurringScheduler
from raypipe.api.store import Store

__all__ = ["EXECUTOR_LEASE", "ExecutionLeader"]

EXECUTOR_LEASE = "executor"
"""The name of the store lease whose holder runs the executor and the scheduler."""

_log = logging.getLogger("raypipe.api")


class ExecutionLeader:
    """Runs ``executor`` and ``scheduler`` while this process holds the executor lease.

    Args:
        store: the service's store (where the lease lives).
        executor: this process's executor; its ``owner_id`` names the lease's holder.
        scheduler: this process's recurring-run scheduler.
        lease_seconds: how long the lease lasts without renewal (default: the
            executor's run lease).
    """

    def __init__(
        self,
        store: Store,
        executor: RunExecutor,
        scheduler: RecurringScheduler,
        *,
        lease_seconds: float | None = None,
    ) -> None:
        self.store, self.executor, self.scheduler = store, executor, scheduler
        self.lease_seconds = lease_seconds or executor.lease.total_seconds()
        self._leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the executor now."""
        return self._leading

    def start(self) -> None:
        """Ask for the lease once now (so a lone process executes from its first
        request), then keep asking or renewing in a background thread."""
        self._step()
        self._thread = threading.Thread(target=self._loop, name="raypipe-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop executing (if leading) and release the lease for another process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._leading:
            self._resign()
            self.store.release_lease(EXECUTOR_LEASE, self.executor.owner_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._step()
            except Exception:  # a database hiccup: the lease is asked for again next time
                _log.exception("executor lease: asking for it failed; retrying")

    def _step(self) -> None:
        held = self.store.acquire_lease(
            EXECUTOR_LEASE, self.executor.owner_id, seconds=self.lease_seconds
        )
        if held and not self._leading:
            _log.info("this process (%s) runs the executor", self.executor.owner_id)
            self.executor.start()
            self.scheduler.start()
            self._leading = True
        elif not held and self._leading:
            # Another process took the lease: this one was silent longer than the lease
            # (a long stall). Stop without releasing the runs; their leases expire, and
            # the new leader takes them over as it would from a dead process.
            _log.error("executor lease lost to another process; this one stops executing")
            self._resign(release_runs=False)

    def _resign(self, *, release_runs: bool = True) -> None:
        self._leading = False
        self.scheduler.stop()
        self.executor.stop(release=release_runs)
