"""The service's side of running: start stored runs on Ray, follow them, record how they end.

One executor runs at a time per service (``raypipe.api.leadership`` picks the process).
The API only stores a new run, PENDING and without an owner, and returns; the executor
finds such runs every ``poll_seconds`` (at once when ``wake`` is called in its process)
and takes them with the store's lease (``acquire_run``), so a run created in any worker
process starts exactly once, and one created just before a ``kill -9`` is started by the
next instance. It owns the runs it starts (the lease, renewed every few seconds), cancels
those another process asked to cancel (state ``CANCELING``), and when it starts it takes
over the runs whose owner stopped renewing (a service killed with ``kill -9``): a run that
had started is resumed with :func:`raypipe.resume` (finished steps are not run again), a
run whose driver ended gets the status its manifest recorded, and a run that never
started is started. A run is never left ``RUNNING`` without an owner that drives it.

Example:
    >>> executor = RunExecutor(store)                          # doctest: +SKIP
    >>> executor.start()                                       # doctest: +SKIP
    >>> store.create_run("ns", display_name="r", pipeline_spec=spec_json)  # doctest: +SKIP
    >>> executor.wake()                                        # starts it now, not in 0.5 s
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from raypipe.api.spec_cache import SpecCache
from raypipe.api.store import ACTIVE_STATES, RunState, Store
from raypipe.api.store.records import Run
from raypipe.errors import ClusterConnectionError
from raypipe.runtime.cluster import connect
from raypipe.runtime.config import RuntimeConfig, tracking_enabled
from raypipe.runtime.handle import RunHandle
from raypipe.runtime.manifest import RunManifest, RunNotResumableError
from raypipe.runtime.result import RunResult, RunStatus

__all__ = ["RunExecutor"]

_log = logging.getLogger("raypipe.api")

_FINAL = {
    RunStatus.SUCCEEDED: RunState.SUCCEEDED,
    RunStatus.FAILED: RunState.FAILED,
    RunStatus.CANCELED: RunState.CANCELED,
}


@dataclass
class _Driven:
    """A run this executor drives: by a handle (started here) or a resume thread."""

    namespace: str
    run_id: str
    handle: RunHandle | None = None
    resumed: threading.Thread | None = None
    result: list[RunResult] = field(default_factory=list)  # filled by the resume thread
    failure: list[BaseException] = field(default_factory=list)
    cancel_sent: bool = False


class RunExecutor:
    """Starts, follows and ends the service's runs; takes over runs whose owner died.

    Args:
        store: the service's store.
        owner_id: this instance's id in run leases (default: a fresh one).
        address: the Ray cluster (default: the runtime's, a local Ray).
        lease_seconds: how long a run's owner may stay silent before another instance
            takes the run over.
        poll_seconds: how often new runs are looked for, ended runs collected and
            cancel requests read.
        specs: parsed IRs to share with the API (default: a cache of its own).
    """

    def __init__(
        self,
        store: Store,
        *,
        owner_id: str | None = None,
        address: str | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        specs: SpecCache | None = None,
    ) -> None:
        self.store = store
        self.specs = specs or SpecCache()
        self.owner_id = owner_id or uuid.uuid4().hex
        self.address = address
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self._driven: dict[str, _Driven] = {}
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        self._taking = threading.Lock()  # starting a new run vs. terminating it, here
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[str, str], None]] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Take over orphaned runs, then follow runs in a background thread (again after
        a stop)."""
        self._stop.clear()
        self.reconcile()
        self._thread = threading.Thread(target=self._loop, name="raypipe-executor", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop following runs; with ``release``, give up their leases so that another
        instance takes them over at once (their Ray work goes on)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if release:
            with self._lock:
                driven = list(self._driven.values())
            for item in driven:
                self.store.release_run(item.namespace, item.run_id, self.owner_id)

    def wake(self) -> None:
        """Look for new runs now (the API calls it after storing one)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether this executor is started (in this process) and not stopped."""
        return self._thread is not None and self._thread.is_alive()

    def on_change(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(namespace, run_id)`` whenever a run's state changes here."""
        self._listeners.append(listener)

    # -- runs ---------------------------------------------------------------------------

    def submit(self, run: Run) -> None:
        """Start a PENDING run on Ray; a run that cannot start ends FAILED with the reason."""
        if not self.store.acquire_run(run.namespace, run.run_id, self.owner_id):
            return  # another instance has it
        stored = self.store.get_run(run.namespace, run.run_id)  # with its IR
        if stored.state is RunState.CANCELING:  # canceled before it started
            self._end(run.namespace, run.run_id, RunState.CANCELED, None)
            return
        try:
            spec = self.specs.of_digest(
                stored.pipeline_spec_digest,
                stored.pipeline_spec or "",
                source=f"run {run.run_id}",
            )
            experiment = self._experiment_name(stored)
            self._connect()
            handle = _submit(spec, stored, experiment, self.address)
        except Exception as exc:  # a bad IR, arguments, resources, cluster: the run's end
            self._end(run.namespace, run.run_id, RunState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._driven[run.run_id] = _Driven(run.namespace, run.run_id, handle=handle)
        self.store.transition_run(
            run.namespace,
            run.run_id,
            [RunState.PENDING],
            RunState.RUNNING,
            expect_owner=self.owner_id,
        )
        self._changed(run.namespace, run.run_id)

    def terminate(self, namespace: str, run_id: str) -> bool:
        """Cancel a run: CANCELING now, CANCELED once its steps stopped. False if it ended.

        Any process may call it: a run driven here is canceled here; a run no one drives
        yet ends CANCELED at once; a run another process drives is canceled by that
        process's executor, which reads the CANCELING state within ``poll_seconds``.
        """
        moved = self.store.transition_run(
            namespace, run_id, [RunState.PENDING, RunState.RUNNING], RunState.CANCELING
        )
        if not moved:
            return False
        self._changed(namespace, run_id)
        with self._taking:  # not while this executor's loop is starting the same run
            with self._lock:
                driven = self._driven.get(run_id)
            if driven is not None:
                self._cancel(driven)
            elif self.store.acquire_run(namespace, run_id, self.owner_id):  # nobody drives it
                self._end(namespace, run_id, RunState.CANCELED, None)
        return True

    def reconcile(self) -> int:
        """Take over the active runs whose owner's lease ran out; returns how many."""
        stale_before = datetime.now(timezone.utc) - self.lease
        taken = 0
        for namespace in self.store.namespaces():
            for run in self.store.list_stale_runs(namespace, heartbeat_before=stale_before):
                if run.run_id in self._driven:
                    continue
                with self._taking:
                    if not self.store.acquire_run(
                        namespace, run.run_id, self.owner_id, stale_before=stale_before
                    ):
                        continue
                    taken += 1
                    self._take_over(run)
        return taken

    # -- inside -------------------------------------------------------------------------

    def _take_over(self, run: Run) -> None:
        if run.state is RunState.CANCELING:
            self._end(run.namespace, run.run_id, RunState.CANCELED, None)
            return
        manifest: RunManifest | None = None
        if run.state is not RunState.PENDING:
            try:
                manifest = RunManifest.load(RuntimeConfig.from_env().home, run.run_id)
            except RunNotResumableError:
                manifest = None
        if manifest is None:
            # New, retried (an old manifest ended: the cache keeps what finished), or it
            # never started: start it now.
            # Not from CANCELING: a cancel asked for meanwhile stands (submit ends it).
            self.store.transition_run(
                run.namespace, run.run_id, [RunState.PENDING, RunState.RUNNING], RunState.PENDING
            )
            self.submit(run)
        elif manifest.ended:
            state = (
                RunState(manifest.status)
                if manifest.status in RunState.__members__
                else (RunState.FAILED)
            )
            self._end(run.namespace, run.run_id, state, None)
        else:
            self._resume(run)

    def _connect(self) -> None:
        """Connect this process to Ray, one thread at a time: the loop and the recurring
        scheduler (and resume threads) calling ``ray.init`` at once on a fresh process
        collide ("Perhaps you called ray.init twice by accident?") and fail a run."""
        with self._connecting:
            connect(self.address)

    def _resume(self, run: Run) -> None:
        try:
            self._connect()
        except ClusterConnectionError as exc:
            self._end(run.namespace, run.run_id, RunState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        driven = _Driven(run.namespace, run.run_id)

        def resume() -> None:
            import raypipe

            try:
                driven.result.append(raypipe.resume(run.run_id, address=self.address, quiet=True))
            except BaseException as exc:  # the run's end: recorded by the loop
                driven.failure.append(exc)

        driven.resumed = threading.Thread(target=resume, name=f"raypipe-resume-{run.run_id}")
        with self._lock:
            self._driven[run.run_id] = driven
        self.store.transition_run(
            run.namespace,
            run.run_id,
            [RunState.PENDING],
            RunState.RUNNING,
            expect_owner=self.owner_id,
        )
        driven.resumed.start()
        _log.info("resuming run %s of namespace %s", run.run_id, run.namespace)

    def _loop(self) -> None:
        last_renewal = last_sweep = datetime.now(timezone.utc)
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                now = datetime.now(timezone.utc)
                if now - last_renewal > self.lease / 3:
                    self.store.renew_leases(self.owner_id)
                    last_renewal = now
                if now - last_sweep > self.lease / 2:  # an instance that died since we started
                    self.reconcile()
                    last_sweep = now
                self._start_new_runs()
                self._cancel_requested()
                with self._lock:
                    driven = list(self._driven.values())
                for item in driven:
                    self._collect(item)
            except Exception:  # a database hiccup must not end execution; it is logged
                _log.exception("run executor: a poll failed; the next one retries")

    def _start_new_runs(self) -> None:
        """Take and start the runs nobody drives: created, retried or released."""
        for run in self.store.list_unowned_runs():
            if run.run_id in self._driven or self._stop.is_set():
                continue
            with self._taking:  # a terminate in this process waits until it is driven
                if self.store.acquire_run(run.namespace, run.run_id, self.owner_id):
                    self._take_over(run)

    def _cancel_requested(self) -> None:
        """Cancel the runs driven here that some process moved to CANCELING."""
        if not self._driven:
            return
        for _, run_id in self.store.owned_runs(self.owner_id, [RunState.CANCELING]):
            with self._lock:
                driven = self._driven.get(run_id)
            if driven is not None:
                self._cancel(driven)

    def _cancel(self, driven: _Driven) -> None:
        if driven.handle is not None and not driven.cancel_sent:
            driven.cancel_sent = True
            driven.handle.cancel()

    def _collect(self, item: _Driven) -> None:
        result: RunResult | None = None
        failure: BaseException | None = None
        if item.handle is not None:
            if item.handle.status() is RunStatus.RUNNING:
                return
            try:
                result = item.handle.result()
            except Exception as exc:  # the driver's own failure: the run's end, recorded
                failure = exc
        elif item.resumed is not None and not item.resumed.is_alive():
            result = item.result[0] if item.result else None
            failure = item.failure[0] if item.failure else None
        else:
            return
        if result is not None:
            if not tracking_enabled(None):  # no lineage: keep the steps' outcomes for the page
                _keep_step_outcomes(result)
            message = None
            if result.error is not None:
                message = f"{result.error.task}: {result.error.type}: {result.error.message}"
            self._end(item.namespace, item.run_id, _FINAL[result.status], message)
        else:
            self._end(item.namespace, item.run_id, RunState.FAILED, f"{failure!r}")

    def _end(self, namespace: str, run_id: str, state: RunState, message: str | None) -> None:
        self.store.transition_run(namespace, run_id, ACTIVE_STATES, state, error_message=message)
        self.store.release_run(namespace, run_id, self.owner_id)
        with self._lock:
            self._driven.pop(run_id, None)
        self._changed(namespace, run_id)

    def _changed(self, namespace: str, run_id: str) -> None:
        for listener in self._listeners:
            listener(namespace, run_id)

    def _experiment_name(self, run: Run) -> str | None:
        if run.experiment_id is None:
            return None
        return self.store.get_experiment(run.namespace, run.experiment_id).display_name


def _keep_step_outcomes(result: RunResult) -> None:
    from raypipe.api.run_files import save_step_outcomes

    try:
        save_step_outcomes(RuntimeConfig.from_env().home, result)
    except OSError:  # the run's end is recorded all the same; its page shows less
        _log.exception("run %s: could not keep its steps' outcomes", result.run_id)


def _submit(spec: Any, run: Run, experiment: str | None, address: str | None) -> RunHandle:
    import raypipe

    return raypipe.submit(
        spec,
        run.arguments,
        address=address,
        run_name=run.display_name or None,
        experiment=experiment,
        run_id=run.run_id,
    )
