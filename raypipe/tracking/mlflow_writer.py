"""The MLflow writer: one background thread per tracking store sends raypipe's records in order.

A tracker turns a run's events into records (:class:`CreateRun`, :class:`LogBatch`,
:class:`LogText`, :class:`LogArtifact`, :class:`EndRun`) and hands them to the store's
:class:`Lane`, which returns at once. The lane's thread writes them with ``MlflowClient``
in the order they came, so a slow or distant server never slows a step down.

When the store cannot be reached (an HTTP server that is down, a locked SQLite file), the
records stay queued in memory, a log line marks the start of the outage, a
``RuntimeWarning`` names, for each run that has ended, what of it is not logged yet, and
the lane retries with backoff (1 s doubling to 30 s; at once on
:func:`flush` or when a run ends). Before each burst of writes to an HTTP server it
asks ``GET /health`` with a 2-second timeout, so that a dead server costs one quick
probe rather than the MLflow client's own retries (minutes). At interpreter exit every
lane gets up to 10 seconds to empty, and what is left is named in a warning.

A record MLflow refuses for good (a value it rejects, a deleted experiment) is dropped with
a warning saying what was not logged; if it was the creation of an MLflow run, the records
of that run that follow are dropped with it (the warning says so).

Example:
    >>> lane = lane_for("sqlite:////tmp/mlflow.db")                       # doctest: +SKIP
    >>> lane.submit([CreateRun("r1", "", "demo", "run-1", 0, {})])        # doctest: +SKIP
    >>> flush(timeout=10)                                                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import re
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raypipe.runtime.result import ArtifactRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from raypipe.runtime.artifacts import ArtifactStore

__all__ = [
    "MAX_ARTIFACT_BYTES",
    "CreateRun",
    "EndRun",
    "Lane",
    "LogArtifact",
    "LogBatch",
    "LogText",
    "Record",
    "flush",
    "lane_for",
]

_log = logging.getLogger("raypipe.tracking")

MAX_ARTIFACT_BYTES = 5 * 1024 * 1024  # larger step artifacts are not copied to MLflow
_MAX_BACKOFF_S = 30.0
_PROBE_TIMEOUT_S = 2.0
_MAX_TRIES_REACHABLE = 5  # a record failing this often on a reachable store is dropped
_MAX_PENDING = 200_000  # records held per store while it is down; more are dropped
_EXIT_FLUSH_S = 10.0


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRun:
    """Create the MLflow run of a pipeline run (``key == ""``) or of one of its steps
    (``key`` = task name; nested under the pipeline run's MLflow run)."""

    run: str  # the raypipe run id
    key: str
    experiment: str
    name: str
    start_ms: int
    tags: dict[str, str]
    reuse: bool = False  # a resumed run: continue the MLflow run its first driver created


@dataclass(frozen=True)
class LogBatch:
    """Metrics ``(name, value, timestamp ms, step)``, params and tags of one MLflow run,
    within MLflow's per-request limits."""

    run: str
    key: str
    metrics: tuple[tuple[str, float, int, int], ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LogText:
    """A small text file written straight into an MLflow run (e.g. ``metrics.json``)."""

    run: str
    key: str
    text: str
    file_name: str


@dataclass(frozen=True)
class LogArtifact:
    """A step's artifact copied into its MLflow run: read through the artifact store
    (``pyarrow.fs``, so remote roots work), skipped above :data:`MAX_ARTIFACT_BYTES`."""

    run: str
    key: str
    artifact: ArtifactRecord
    artifact_root: str
    file_name: str  # its name in the MLflow run, e.g. "report.md"
    as_text: bool = False


@dataclass(frozen=True)
class EndRun:
    """Set an MLflow run's final status (FINISHED, FAILED, KILLED) and end time."""

    run: str
    key: str
    status: str
    end_ms: int


Record = CreateRun | LogBatch | LogText | LogArtifact | EndRun


class _NotLogged(Exception):
    """A record that can never be written (its MLflow run does not exist, and so on)."""


# -- lanes ---------------------------------------------------------------------------------

_LANES: dict[str, Lane] = {}
_LANES_LOCK = threading.Lock()


def lane_for(tracking_uri: str) -> Lane:
    """The writer of one tracking store, started on first use."""
    with _LANES_LOCK:
        lane = _LANES.get(tracking_uri)
        if lane is None:
            if not _LANES:
                atexit.register(_flush_at_exit)
            lane = _LANES[tracking_uri] = Lane(tracking_uri)
        return lane


def flush(timeout: float | None = None) -> bool:
    """Wait until MLflow has every record raypipe queued in this process; True if it has.

    Stores that are down are retried at once, then with backoff while the wait lasts, so
    ``flush()`` with no timeout returns only when every store has taken its records.

    Example:
        >>> raypipe.run(sweep, {"lr": 0.1}, experiment="sweep")   # doctest: +SKIP
        >>> raypipe.tracking.flush(timeout=30)                      # doctest: +SKIP
        True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _LANES_LOCK:
        lanes = list(_LANES.values())
    return all(lane.wait_idle(deadline) for lane in lanes)


class Lane:
    """Writes one tracking store's records, in order, on its own daemon thread."""

    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        self._http = tracking_uri.startswith(("http://", "https://"))
        self._cond = threading.Condition()
        self._pending: collections.deque[Record] = collections.deque()
        self._outstanding: collections.Counter[str] = collections.Counter()  # run -> records
        self._labels: dict[str, str] = {}  # run -> "name (id)" for messages
        self._on_created: dict[str, Callable[[str, str], None]] = {}
        self._failures = 0  # failed attempts so far: close() waits for written or one more
        self._down_since: float | None = None
        self._closed: set[str] = set()  # runs whose records are all queued (they ended)
        self._reported: set[str] = set()  # runs named in a warning during this outage
        self._overflowed = False
        self._backoff = 0.0
        self._next_attempt = 0.0  # time.monotonic()
        self._head_tries = 0  # failed tries of the record at the head of the queue
        # Used by the lane's thread only:
        self._client: MlflowClient | None = None
        self._ids: dict[str, dict[str, str]] = {}  # run -> key -> MLflow run id
        self._refused: set[tuple[str, str]] = set()  # (run, key) whose MLflow run failed
        self._experiments: dict[str, str] = {}
        self._stores: dict[str, ArtifactStore] = {}
        self._thread = threading.Thread(
            target=self._serve, name=f"raypipe-mlflow-{_short(tracking_uri)}", daemon=True
        )
        self._thread.start()

    # -- used by trackers --------------------------------------------------------------

    def open_run(
        self, run: str, label: str, on_created: Callable[[str, str], None] | None = None
    ) -> None:
        """Name a raypipe run for messages; ``on_created(experiment_id, mlflow_run_id)``
        is called (on the lane's thread) once its MLflow run exists."""
        with self._cond:
            self._labels[run] = label
            if on_created is not None:
                self._on_created[run] = on_created

    def submit(self, records: Sequence[Record]) -> None:
        """Queue records; returns at once."""
        if not records:
            return
        message = None
        with self._cond:
            if len(self._pending) + len(records) > _MAX_PENDING:
                if not self._overflowed:
                    self._overflowed = True
                    message = (
                        f"raypipe: more than {_MAX_PENDING} records are waiting for MLflow at "
                        f"{self.uri}; new ones are dropped until it takes them (first "
                        f"dropped: {_describe(records)} of {self._label(records[0].run)})"
                    )
            else:
                self._pending.extend(records)
                for record in records:
                    self._outstanding[record.run] += 1
                self._cond.notify_all()
        if message is not None:
            _warn(message)

    def wait_run(self, run: str, timeout: float | None) -> Literal["written", "failed", "timeout"]:
        """Say that the run queued all its records, and wait until they are written, or an
        attempt to write fails (its warning, naming what of the run is not logged, is out
        by then), or ``timeout`` seconds pass.

        A store that was down is tried again at once.
        """
        with self._cond:
            self._closed.add(run)
            failures = self._failures
            self._next_attempt = min(self._next_attempt, time.monotonic())
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self._outstanding[run] == 0 or self._failures > failures, timeout
            )
            if self._outstanding[run] == 0:
                return "written"
            if self._failures > failures:
                return "failed"
        # Still writing: the lane may be inside the MLflow client's own retries (minutes)
        # against a server that died mid-request. Ask the server from here.
        problem = self._probe()
        if problem is None:
            return "timeout"
        self._failed(problem)
        return "failed"

    def wait_idle(self, deadline: float | None) -> bool:
        """Wait until nothing is queued (retrying a down store at once); False at the
        deadline (``time.monotonic()``)."""
        with self._cond:
            self._next_attempt = min(self._next_attempt, time.monotonic())
            self._cond.notify_all()
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def pending_description(self) -> str:
        """What is still queued, by run: "run 'a' (id): the run itself, 2 step runs, ..."."""
        with self._cond:
            return self._describe_runs(list(dict.fromkeys(r.run for r in self._pending)))

    # -- the lane's thread ---------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending:
                        delay = self._next_attempt - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
            try:
                self._drain()
            except Exception:  # a bug here must not stop the writer for the whole process
                _log.exception("raypipe: the MLflow writer for %s failed; it goes on", self.uri)
                with self._cond:
                    self._next_attempt = time.monotonic() + _MAX_BACKOFF_S

    def _drain(self) -> None:
        """Write queued records until none is left or the store fails."""
        if not self._reachable():
            return
        while True:
            with self._cond:
                if not self._pending:
                    break
                record = self._pending[0]
            try:
                self._apply(record)
            except Exception as exc:  # sorted below: retried, or dropped with a warning
                if _transient(exc) and self._head_tries + 1 < _MAX_TRIES_REACHABLE:
                    self._head_tries += 1
                    self._failed(exc)
                    return
                self._refuse(record, exc)
            self._done(record)
        self._recovered()

    def _reachable(self) -> bool:
        """False (after recording the failure) when an HTTP store does not answer."""
        problem = self._probe()
        if problem is not None:
            self._failed(problem)
        return problem is None

    def _probe(self) -> BaseException | None:
        """Why an HTTP store does not answer ``GET /health`` (None: it answers, or the
        store is not HTTP)."""
        if not self._http:
            return None
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=_PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            return None  # it answered; the MLflow client reports what is wrong
        except ValueError:
            return None  # a URI urllib cannot probe (credentials in it): let MLflow try
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ssl.SSLError):
                return None  # it answered; the MLflow client reports the TLS problem
            return exc
        return None

    def _failed(self, exc: BaseException) -> None:
        """An attempt failed for a reason that may pass: back off, name the ended runs with
        records not logged (once per outage), wake whoever waits for this lane.

        Called on the lane's thread, or by ``wait_run`` when the lane is stuck in a call.
        """
        with self._cond:
            starting = self._down_since is None
            if starting:
                self._down_since = time.time()
            self._backoff = min(_MAX_BACKOFF_S, max(1.0, self._backoff * 2))
            self._next_attempt = time.monotonic() + self._backoff
            runs = [
                r
                for r in dict.fromkeys(x.run for x in self._pending)
                if r in self._closed and r not in self._reported
            ]
            self._reported.update(runs)
            message = None
            if runs:
                message = (
                    f"raypipe: MLflow at {self.uri} cannot be reached or failed "
                    f"({type(exc).__name__}: {_first_line(exc)}); not logged yet: "
                    f"{self._describe_runs(runs)}. Runs are not affected by this, and the "
                    f"lineage store has them; raypipe keeps these records in memory and "
                    f"retries every {self._backoff:.0f} s (up to {_MAX_BACKOFF_S:.0f} s); "
                    f"raypipe.tracking.flush() waits until they are written"
                )
        if starting:
            _log.warning(
                "raypipe: MLflow at %s cannot be reached or failed (%s: %s); raypipe holds "
                "its records in memory and retries; each run says what is not logged when "
                "it ends",
                self.uri,
                type(exc).__name__,
                _first_line(exc),
            )
        if message is not None:
            _warn(message)
        with self._cond:
            self._failures += 1
            self._cond.notify_all()

    def _recovered(self) -> None:
        with self._cond:
            if self._down_since is None:
                return
            since, self._down_since = self._down_since, None
            self._backoff = 0.0
            self._reported.clear()
            self._overflowed = False
        _log.warning(
            "raypipe: MLflow at %s takes records again (it failed for %.0f s); "
            "the records held meanwhile are written",
            self.uri,
            time.time() - since,
        )

    def _done(self, record: Record) -> None:
        with self._cond:
            self._pending.popleft()
            self._outstanding[record.run] -= 1
            if self._outstanding[record.run] <= 0:
                del self._outstanding[record.run]
            self._head_tries = 0
            if isinstance(record, EndRun) and record.key == "":
                # the pipeline run's last record: forget the run
                self._labels.pop(record.run, None)
                self._on_created.pop(record.run, None)
                self._closed.discard(record.run)
                self._reported.discard(record.run)
                self._ids.pop(record.run, None)
                self._refused = {k for k in self._refused if k[0] != record.run}
            self._cond.notify_all()

    def _refuse(self, record: Record, exc: BaseException) -> None:
        """Drop a record MLflow will not take, saying so (once per MLflow run that could
        not be created: its later records go with it)."""
        where = self._label(record.run)
        if record.key:
            where = f"step {record.key!r} of {where}"
        if isinstance(record, CreateRun):
            self._refused.add((record.run, record.key))
            what = f"could not create the MLflow run of {where}; none of its records are logged"
        else:
            what = f"did not take {_describe([record])} of {where}; they are not logged"
        why = _first_line(exc)
        if not isinstance(exc, _NotLogged):
            why = f"{type(exc).__name__}: {why}"
        _warn(f"raypipe: MLflow at {self.uri} {what}: {why}")

    # -- writing one record --------------------------------------------------------------

    def _apply(self, record: Record) -> None:
        if (record.run, "") in self._refused or (record.run, record.key) in self._refused:
            return  # its MLflow run could not be created: announced by _refuse
        client = self._mlflow()
        ids = self._ids.setdefault(record.run, {})
        if isinstance(record, CreateRun):
            self._create(client, ids, record)
            return
        run_id = ids.get(record.key)
        if run_id is None:
            raise _NotLogged("its MLflow run was never created")
        if isinstance(record, LogBatch):
            from mlflow.entities import Metric, Param, RunTag

            client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in record.metrics],
                params=[Param(k, v) for k, v in record.params],
                tags=[RunTag(k, v) for k, v in record.tags],
                synchronous=True,
            )
        elif isinstance(record, LogText):
            client.log_text(run_id, record.text, record.file_name)
        elif isinstance(record, LogArtifact):
            self._log_artifact(client, run_id, record)
        else:
            client.set_terminated(run_id, status=record.status, end_time=record.end_ms)

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            database = _sqlite_path(self.uri)
            if database is not None and not database.exists():
                database.parent.mkdir(parents=True, exist_ok=True)
                _create_sqlite_store(self.uri, database.parent / _ARTIFACTS)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _create(self, client: MlflowClient, ids: dict[str, str], record: CreateRun) -> None:
        if record.key in ids:
            return
        tags = dict(record.tags)
        if record.key:
            parent = ids.get("")
            if parent is None:
                raise _NotLogged("the MLflow run of its pipeline run was never created")
            tags["mlflow.parentRunId"] = parent
        experiment_id = self._experiment_id(client, record.experiment)
        # A retried creation may have succeeded without our hearing so: look first.
        look = self._head_tries or record.reuse
        run_id = self._find(client, experiment_id, record) if look else None
        if run_id is not None and record.reuse:
            from mlflow.entities import RunTag

            client.update_run(run_id, status="RUNNING")  # ended again when the run ends
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        if run_id is None:
            run = client.create_run(
                experiment_id, start_time=record.start_ms, tags=tags, run_name=record.name
            )
            run_id = run.info.run_id
        ids[record.key] = run_id
        if record.key == "":
            with self._cond:
                callback = self._on_created.get(record.run)
            if callback is not None:
                callback(experiment_id, run_id)

    def _experiment_id(self, client: MlflowClient, name: str) -> str:
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                found = client.create_experiment(name, artifact_location=self._artifacts_for(name))
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)  # made meanwhile elsewhere
                if experiment is None:
                    raise
                found = experiment.experiment_id
        elif experiment.lifecycle_stage == "deleted":
            raise _NotLogged(
                f"experiment {name!r} is deleted in MLflow: restore it (mlflow experiments "
                f"restore --experiment-id {experiment.experiment_id}) or log to another "
                f"one (raypipe.run(..., experiment=...))"
            )
        else:
            found = experiment.experiment_id
        self._experiments[name] = found
        return found

    def _artifacts_for(self, experiment: str) -> str | None:
        """Where a new experiment keeps its artifacts: next to a SQLite store (MLflow's
        default would be ``./mlruns`` under whatever directory the process runs in)."""
        database = _sqlite_path(self.uri)
        if database is None:
            return None
        return str(database.parent / _ARTIFACTS / re.sub(r"[^\w.-]", "_", experiment))

    def _find(self, client: MlflowClient, experiment_id: str, record: CreateRun) -> str | None:
        """The MLflow run an earlier try of ``record`` created, if any."""
        if "'" in record.run + record.key:
            return None  # not expressible in a filter; raypipe's ids and task names never are
        query = f"tags.`raypipe.run_id` = '{record.run}'"
        if record.key:
            query += f" and tags.`raypipe.task` = '{record.key}'"
        # the pipeline run starts before its steps: it is on the first page
        runs = client.search_runs(
            [experiment_id], filter_string=query, order_by=["attributes.start_time ASC"]
        )
        for run in runs:
            if run.data.tags.get("raypipe.task", "") == record.key:
                return str(run.info.run_id)
        return None

    def _log_artifact(self, client: MlflowClient, run_id: str, record: LogArtifact) -> None:
        from raypipe.runtime.artifacts import ArtifactStore

        store = self._stores.get(record.artifact_root)
        if store is None:
            store = self._stores[record.artifact_root] = ArtifactStore(record.artifact_root)
        name = record.artifact.name
        if store.is_local:
            size = record.artifact.size
            if size is None:
                local = store.artifact_from_record(record.artifact).path
                size = _size(local)
            if size is not None and size > MAX_ARTIFACT_BYTES:
                self._skip(client, run_id, name, size)
                return
        elif record.artifact.size is not None and record.artifact.size > MAX_ARTIFACT_BYTES:
            self._skip(client, run_id, name, record.artifact.size)
            return
        with tempfile.TemporaryDirectory(prefix="raypipe-mlflow-") as staging:
            local = store.open_input(record.artifact, record.artifact.type, Path(staging)).path
            if os.path.isdir(local):
                client.log_artifacts(run_id, local, artifact_path=record.file_name)
            elif os.path.isfile(local) and os.path.getsize(local) > 0:
                if record.as_text:
                    text = Path(local).read_text(encoding="utf-8", errors="replace")
                    client.log_text(run_id, text, record.file_name)
                else:
                    client.log_artifact(run_id, local)
            # else: the step wrote no file (a Metrics output keeps its values in metadata)

    def _skip(self, client: MlflowClient, run_id: str, name: str, size: int) -> None:
        client.set_tag(
            run_id,
            f"raypipe.artifact_skipped.{name}",
            f"{size} bytes, more than the {MAX_ARTIFACT_BYTES} copied to MLflow; "
            f"see the artifact store (raypipe.artifact.{name})",
        )

    # -- messages ------------------------------------------------------------------------

    def _label(self, run: str) -> str:
        return self._labels.get(run, f"run {run}")

    def _describe_runs(self, runs: list[str]) -> str:
        wanted = set(runs)
        by_run: dict[str, list[Record]] = {run: [] for run in runs}
        for record in self._pending:
            if record.run in wanted:
                by_run[record.run].append(record)
        parts = [f"{self._label(run)}: {_describe(records)}" for run, records in by_run.items()]
        return "; ".join(parts) or "nothing"


# -- helpers ---------------------------------------------------------------------------


def _describe(records: Sequence[Record]) -> str:
    """ "the run itself, 2 step runs, 14 metric values, 6 params, 1 artifact, ..." """
    counts: collections.Counter[str] = collections.Counter()
    for record in records:
        if isinstance(record, CreateRun):
            counts["run" if record.key == "" else "step run"] += 1
        elif isinstance(record, LogBatch):
            counts["metric value"] += len(record.metrics)
            counts["param"] += len(record.params)
            counts["tag"] += len(record.tags)
        elif isinstance(record, (LogText, LogArtifact)):
            counts["artifact"] += 1
        else:
            counts["final status"] += 1
    parts = []
    for what in _ORDER:
        n = counts[what]
        if what == "run" and n:
            parts.append("the run itself")
        elif n:
            parts.append(f"{n} {what}" if n == 1 else f"{n} {_PLURALS.get(what, what + 's')}")
    return ", ".join(parts) or "nothing"


_ORDER = ("run", "step run", "metric value", "param", "tag", "artifact", "final status")
_PLURALS = {"final status": "final statuses"}


def _transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed later (server down, busy, locked database)."""
    if isinstance(exc, _NotLogged):
        return False
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError):
        return not isinstance(
            exc, (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
        )
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


_TRANSIENT_CODES = frozenset(
    {
        "INTERNAL_ERROR",  # also what the client raises when the server does not answer
        "TEMPORARILY_UNAVAILABLE",
        "WORKSPACE_TEMPORARILY_UNAVAILABLE",
        "SERVICE_UNDER_MAINTENANCE",
        "IO_ERROR",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "REQUEST_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "COULD_NOT_ACQUIRE_LOCK",
    }
)


_ARTIFACTS = "mlartifacts"
"""The folder next to a SQLite store that holds its experiments' artifacts."""


def _create_sqlite_store(uri: str, artifacts: Path) -> None:
    """Create a SQLite store whose built-in ``Default`` experiment (id 0) keeps its
    artifacts in ``artifacts/0``: made by MLflow's client, it would keep them in
    ``./mlruns/0`` under whatever directory the process runs in (a run of the service's
    ``Default`` experiment logs there)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, str(artifacts))  # type: ignore[no-untyped-call]


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return None
    return Path(uri[len("sqlite:///") :].split("?", 1)[0]).expanduser().resolve()


def _size(path: str) -> int | None:
    if os.path.isfile(path):
        return os.path.getsize(path)
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names
        )
    return None


def _short(uri: str) -> str:
    return re.sub(r"[^\w.:-]+", "_", uri.split("@")[-1])[-40:]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 300 else line[:297] + "..."


def _warn(message: str) -> None:
    """A RuntimeWarning from a background thread; if a filter turns it into an error,
    nobody up this thread's stack would see it, so it goes to the log instead."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    except RuntimeWarning:
        _log.error("%s", message)


def _flush_at_exit() -> None:
    """At interpreter exit, give every store a bounded time (10 s, or
    ``RAYPIPE_MLFLOW_EXIT_FLUSH`` seconds) and name what is left."""
    wait = _EXIT_FLUSH_S
    setting = os.environ.get("RAYPIPE_MLFLOW_EXIT_FLUSH")
    if setting:
        try:
            wait = float(setting)
        except ValueError:
            _warn(f"raypipe: RAYPIPE_MLFLOW_EXIT_FLUSH={setting!r} is not a number of seconds")
    if flush(timeout=wait):
        return
    with _LANES_LOCK:
        lanes = list(_LANES.values())
    for lane in lanes:
        left = lane.pending_description()
        if left != "nothing":
            _warn(
                f"raypipe: exiting with records MLflow at {lane.uri} did not take within "
                f"{wait:g} s; they are not logged to MLflow: {left}. "
                f"The lineage store has these runs"
            )
