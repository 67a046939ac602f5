"""``MlflowTracker``: a pipeline run as an MLflow run, with nested runs for steps worth comparing.

One MLflow run per pipeline run, in the run's experiment (default: the pipeline's name):

- name: the run name; params: the pipeline arguments, flattened (``opt.lr``, ``layers.0``);
- tags: ``raypipe.run_id``, ``raypipe.pipeline``, ``raypipe.spec_digest``, the git commit
  (``mlflow.source.git.commit``), the status and step counts by state
  (``raypipe.steps.SUCCEEDED`` ...); metrics: the numeric pipeline outputs.

A nested MLflow run (tag ``mlflow.parentRunId``) for each step whose event is ``tracked``:
it logged metrics (``raypipe.log_metric``, ``Output[Metrics]``), wrote Metrics,
ClassificationMetrics, HTML or Markdown artifacts, or is marked ``track=True``. It holds
the step's scalar inputs as params, its metrics (with their steps: a learning curve), its
numeric outputs, tags ``raypipe.task``, ``raypipe.attempt``, ``raypipe.cache_hit``,
``raypipe.state``, and copies of those small artifacts. Other steps get no MLflow run: a
1,000-item loop of plain steps adds only counts to the pipeline run (lineage has them all).

Records go to MLflow through :mod:`raypipe.tracking.mlflow_writer`, off the run's path.

Example:
    >>> tracker = MlflowTracker("sqlite:////tmp/mlflow.db", experiment="churn")
    >>> result = raypipe.run(churn, {"lr": 0.1}, observers=[tracker])  # doctest: +SKIP
    >>> tracker.mlflow_run_ids[result.run_id]                         # doctest: +SKIP
    '3f2a...'
"""

from __future__ import annotations

import collections
import getpass
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from raypipe.runtime.events import MetricPoint, RunEnded, RunStarted, StepEnded, StepMetrics
from raypipe.runtime.result import ArtifactRecord, TaskResult
from raypipe.tracking.mlflow_fields import (
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    cut,
    flatten_params,
    mlflow_key,
    numeric_leaves,
    param_text,
    run_status,
    step_status,
)
from raypipe.tracking.mlflow_writer import (
    CreateRun,
    EndRun,
    Lane,
    LogArtifact,
    LogBatch,
    LogText,
    Record,
    lane_for,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["MlflowTracker", "find_mlflow_run"]

_log = logging.getLogger("raypipe.tracking")

# Artifacts copied into a step's MLflow run, and the file name each gets there.
_TEXT_ARTIFACTS = {"Markdown": ".md", "HTML": ".html"}
_METRIC_ARTIFACTS = frozenset({"Metrics", "ClassificationMetrics"})

# MLflow's limits per log_batch request.
_MAX_BATCH_METRICS = 1000
_MAX_BATCH_PARAMS = 100
_MAX_BATCH_TAGS = 100
_MAX_BATCH_ENTITIES = 1000
_MAX_BATCH_CHARS = 800_000  # of keys and values; MLflow refuses requests over 1 MB


@dataclass
class _RunState:
    """What the tracker remembers of one pipeline run until it closes."""

    experiment: str
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    artifact_root: str = ""
    ended: bool = False
    # Task -> the (name, step, value) of each point it logged while running (live).
    live: dict[str, set[tuple[str, int, float]]] = field(default_factory=dict)
    resumed: bool = False  # continues a run whose first driver died: reuse its MLflow runs
    # The event bus's thread that delivers this run's events: its close() is this run's.
    thread: int = field(default_factory=threading.get_ident)


class MlflowTracker:
    """A :class:`~raypipe.runtime.events.RunObserver` that logs runs to MLflow.

    Example:
        >>> tracker = MlflowTracker("http://127.0.0.1:5000", experiment="sweep")
        >>> raypipe.run(sweep, {"lr": 0.1}, observers=[tracker])  # doctest: +SKIP

    Args:
        tracking_uri: an MLflow tracking URI: ``sqlite:///path/mlflow.db``,
            ``http://host:5000``, ``databricks``, ...
        experiment: the MLflow experiment; default: the run's (``raypipe.run``'s
            ``experiment``, else the pipeline's name).
        close_timeout: how long ``close`` (at run end) waits for the run's records to be
            written, in seconds. Default: 120 for a local store (SQLite, files), where
            the wait is short and makes the run visible in MLflow as ``raypipe.run``
            returns; 10 for a server, after which the writer goes on in the background.
            ``close`` returns early, after a warning, when the store cannot be reached.

    One tracker may serve several runs, one after another or at the same time.
    """

    name = "mlflow"

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str | None = None,
        close_timeout: float | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        remote = tracking_uri.startswith(("http://", "https://", "databricks"))
        self.close_timeout = (
            close_timeout if close_timeout is not None else (10.0 if remote else 120.0)
        )
        self.mlflow_run_ids: dict[str, str] = {}
        """raypipe run id -> MLflow run id of its pipeline run, once MLflow created it."""
        self.experiment_ids: dict[str, str] = {}
        """raypipe run id -> MLflow experiment id, once known."""
        self._runs: dict[str, _RunState] = {}
        self._lock = threading.Lock()  # runs of concurrent event buses share one tracker
        self._lane: Lane | None = None

    # -- RunObserver ---------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        """Create the pipeline run's MLflow run (at once, so its id is soon known)."""
        experiment = self.experiment or event.experiment
        with self._lock:
            self._runs[event.run_id] = _RunState(
                experiment, artifact_root=event.artifact_root, resumed=event.resumed
            )
        lane = self._lane_()
        lane.open_run(
            event.run_id,
            f"run {event.run_name!r} ({event.run_id}, experiment {experiment!r})",
            self._created(event.run_id),
        )
        tags = {
            "raypipe.run_id": event.run_id,
            "raypipe.pipeline": event.pipeline,
            "raypipe.spec_digest": event.spec_digest,
            "raypipe.artifact_root": _public_uri(event.artifact_root),
        }
        if event.git_commit:
            tags["raypipe.git_commit"] = event.git_commit
            tags["mlflow.source.git.commit"] = event.git_commit
        if event.resumed:
            tags["raypipe.resumed"] = "true"
        user = _user()
        if user is not None:
            tags["mlflow.user"] = user
        params, extra_tags = _params(event.arguments)
        lane.submit(
            [
                CreateRun(
                    event.run_id,
                    "",
                    experiment,
                    event.run_name,
                    _ms(event.start_time),
                    tags,
                    reuse=event.resumed,
                ),
                *_batches(event.run_id, "", params=params, tags=extra_tags),
            ]
        )

    def step_metrics(self, event: StepMetrics) -> None:
        """Points of a running step: its nested MLflow run opens at the first of them."""
        state = self._state(event.run_id)
        logged = state.live.get(event.task)
        records: list[Record] = []
        if logged is None:
            logged = state.live[event.task] = set()
            records.append(
                CreateRun(
                    event.run_id,
                    event.task,
                    state.experiment,
                    event.task,
                    int(min(p.timestamp for p in event.points) * 1000),
                    {
                        "raypipe.run_id": event.run_id,
                        "raypipe.pipeline": event.pipeline,
                        "raypipe.task": event.task,
                        "raypipe.component": event.component,
                        "raypipe.state": "RUNNING",
                    },
                    reuse=state.resumed,
                )
            )
        logged.update(_identity(p) for p in event.points)
        records.extend(_batches(event.run_id, event.task, metrics=_metrics(event.points)))
        self._lane_().submit(records)

    def step_ended(self, event: StepEnded) -> None:
        """Count the step; give it a nested MLflow run if it is tracked."""
        state = self._state(event.run_id)
        task = event.task
        state.counts[task.state.value] += 1
        key = task.name
        logged = state.live.pop(key, None)  # points it logged while running (its run is open)
        if not event.tracked and logged is None:
            return
        logged = logged or set()
        end = task.end_time or datetime.now().astimezone()
        tags = {
            "raypipe.run_id": event.run_id,
            "raypipe.pipeline": event.pipeline,
            "raypipe.task": task.name,
            "raypipe.component": task.component,
            "raypipe.state": task.state.value,
            "raypipe.attempt": str(task.attempts[-1].number if task.attempts else 0),
            "raypipe.cache_hit": "true" if task.state.value == "CACHED" else "false",
        }
        optional = {
            "raypipe.display_name": task.display_name,
            "raypipe.node": task.node_ip,
            "raypipe.component_digest": event.component_digest,
            "raypipe.cache_key": event.cache_key,
        }
        tags.update({k: cut(v, MAX_TAG_LENGTH)[0] for k, v in optional.items() if v})
        if task.error is not None:
            head = f"{task.error}\n"
            tail = task.error.traceback[-max(0, MAX_TAG_LENGTH - len(head)) :]
            tags["raypipe.error"] = cut(head + tail, MAX_TAG_LENGTH)[0]
        inputs: dict[str, Any] = {}
        batch_tags: dict[str, str] = {}
        for record in event.inputs:
            if record.kind == "parameter":
                if record.value is None and record.digest is not None:
                    inputs[record.name] = (
                        f"sha256:{record.digest} ({record.size} characters, too long to keep)"
                    )
                else:
                    inputs[record.name] = record.value
            elif record.artifact is not None:
                batch_tags[mlflow_key(f"raypipe.input.{record.name}")] = record.artifact.uri
            elif record.artifacts:
                uris = ", ".join(a.uri for a in record.artifacts)
                batch_tags[mlflow_key(f"raypipe.input.{record.name}")] = uris
        params, truncation = _params(inputs)
        batch_tags.update(truncation)
        metrics = _metrics(p for p in event.metrics if _identity(p) not in logged)
        for name, value in task.outputs.items():
            metrics.extend((k, v, _ms(end), 0) for k, v in numeric_leaves(name, value))
        records: list[Record] = [
            CreateRun(
                event.run_id,
                key,
                state.experiment,
                task.name,
                _ms(_start(task)),
                tags,
                reuse=state.resumed,
            ),
            *_batches(
                event.run_id,
                key,
                metrics=metrics,
                params=params,
                # a run opened while the step ran has its first tags: these replace them
                tags=(tags if logged else {})
                | {k: cut(v, MAX_TAG_LENGTH)[0] for k, v in batch_tags.items()}
                | _artifact_tags(task),
            ),
            *_artifacts(event.run_id, key, task, state.artifact_root),
            EndRun(event.run_id, key, step_status(task.state), _ms(end)),
        ]
        self._lane_().submit(records)

    def run_ended(self, event: RunEnded) -> None:
        """Numeric outputs as metrics, the status and step counts as tags; end the run."""
        state = self._state(event.run_id)
        end = _ms(event.end_time)
        metrics: list[tuple[str, float, int, int]] = []
        tags = {"raypipe.status": event.status.value}
        for name, value in event.outputs.items():
            numbers = [(k, v, end, 0) for k, v in numeric_leaves(name, value)]
            metrics.extend(numbers)
            if not numbers:
                text = param_text(value)
                tags[mlflow_key(f"raypipe.output.{name}")] = cut(text, MAX_TAG_LENGTH)[0]
        tags["raypipe.steps"] = str(sum(state.counts.values()))
        for task_state, n in sorted(state.counts.items()):
            tags[f"raypipe.steps.{task_state}"] = str(n)
        if event.error:
            tags["raypipe.error"] = cut(event.error, MAX_TAG_LENGTH)[0]
        state.ended = True
        self._lane_().submit(
            [
                *_batches(event.run_id, "", metrics=metrics, tags=tags),
                EndRun(event.run_id, "", run_status(event.status), end),
            ]
        )

    def close(self) -> None:
        """Wait (up to ``close_timeout``) until MLflow has the run this event bus delivered.

        A run that ended without a ``RunEnded`` event is ended KILLED. If the store cannot
        be reached, a warning has said what is not logged yet and the records stay queued
        for retry (:func:`raypipe.tracking.flush` waits for them).
        """
        me = threading.get_ident()
        with self._lock:
            runs = {run: state for run, state in self._runs.items() if state.thread == me}
            for run in runs:
                del self._runs[run]
        if not runs:
            return
        lane = self._lane_()
        for run_id, state in runs.items():
            if not state.ended:
                now = int(time.time() * 1000)
                lane.submit(
                    [
                        *_batches(
                            run_id, "", tags={"raypipe.status": "UNKNOWN (end not reported)"}
                        ),
                        EndRun(run_id, "", "KILLED", now),
                    ]
                )
        deadline = time.monotonic() + self.close_timeout
        for run_id in runs:
            outcome = lane.wait_run(run_id, max(0.0, deadline - time.monotonic()))
            if outcome == "timeout":
                _log.info(
                    "raypipe: run %s: MLflow at %s is still taking its records after %.0f s; "
                    "they are written in the background (raypipe.tracking.flush() waits)",
                    run_id,
                    self.tracking_uri,
                    self.close_timeout,
                )

    # -- helpers -------------------------------------------------------------------------

    def _lane_(self) -> Lane:
        if self._lane is None:
            self._lane = lane_for(self.tracking_uri)
        return self._lane

    def _state(self, run_id: str) -> _RunState:
        with self._lock:
            state = self._runs.get(run_id)
            if state is None:  # run_started was not seen (it failed): its steps fail too
                state = self._runs[run_id] = _RunState(self.experiment or "Default")
            return state

    def _created(self, run_id: str) -> Callable[[str, str], None]:
        def created(experiment_id: str, mlflow_run_id: str) -> None:
            self.experiment_ids[run_id] = experiment_id
            self.mlflow_run_ids[run_id] = mlflow_run_id

        return created


def find_mlflow_run(
    run_id: str, *, tracking_uri: str | None = None, experiment: str | None = None
) -> Run | None:
    """The MLflow run of a raypipe run (by its tag ``raypipe.run_id``), or None.

    Example:
        >>> result = raypipe.run(sweep, {"lr": 0.1})                     # doctest: +SKIP
        >>> find_mlflow_run(result.run_id).data.params["lr"]              # doctest: +SKIP
        '0.1'

    Args:
        run_id: the raypipe run id (``RunResult.run_id``).
        tracking_uri: default: where runs are tracked (``MLFLOW_TRACKING_URI``, else the
            SQLite store under ``RAYPIPE_HOME``).
        experiment: look in this experiment only (faster on a big server).
    """
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from raypipe.runtime.config import RuntimeConfig

    client = MlflowClient(tracking_uri or RuntimeConfig.from_env().mlflow_tracking_uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [] if found is None else [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
    if not experiment_ids or "'" in run_id:
        return None
    # its steps' runs carry the same tag; the pipeline run started first
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`raypipe.run_id` = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        if "raypipe.task" not in run.data.tags:
            return run
    return None


def _params(values: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Flattened params cut to MLflow's limit, and a tag naming the ones that were cut."""
    params: dict[str, str] = {}
    truncated: list[str] = []
    for key, text in flatten_params(values).items():
        params[key], was_cut = cut(text, MAX_PARAM_LENGTH)
        if was_cut:
            truncated.append(f"{key} ({len(text)} characters)")
    tags = {}
    if truncated:
        note = f"cut to {MAX_PARAM_LENGTH} characters: " + ", ".join(truncated)
        tags["raypipe.truncated_params"] = cut(note, MAX_TAG_LENGTH)[0]
    return params, tags


def _batches(
    run: str,
    key: str,
    *,
    metrics: Iterable[tuple[str, float, int, int]] = (),
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> list[LogBatch]:
    """Split metrics, params and tags into ``log_batch`` requests within MLflow's limits."""
    batches: list[LogBatch] = []
    current: dict[str, list[Any]] = {"metrics": [], "params": [], "tags": []}
    size = 0

    def close_batch() -> None:
        nonlocal size
        if any(current.values()):
            batches.append(
                LogBatch(
                    run,
                    key,
                    tuple(current["metrics"]),
                    tuple(current["params"]),
                    tuple(current["tags"]),
                )
            )
        for items in current.values():
            items.clear()
        size = 0

    limits = {"metrics": _MAX_BATCH_METRICS, "params": _MAX_BATCH_PARAMS, "tags": _MAX_BATCH_TAGS}
    entries: list[tuple[str, Any, int]] = [("metrics", m, len(m[0]) + 40) for m in metrics]
    entries += [("params", (k, v), len(k) + len(v)) for k, v in (params or {}).items()]
    entries += [("tags", (k, v), len(k) + len(v)) for k, v in (tags or {}).items()]
    for kind, entry, chars in entries:
        total = sum(len(items) for items in current.values())
        if (
            len(current[kind]) >= limits[kind]
            or total >= _MAX_BATCH_ENTITIES
            or size + chars > _MAX_BATCH_CHARS
        ):
            close_batch()
        current[kind].append(entry)
        size += chars
    close_batch()
    return batches


def _identity(point: MetricPoint) -> tuple[str, int, float]:
    return point.name, point.step or 0, point.value


def _metrics(points: Iterable[MetricPoint]) -> list[tuple[str, float, int, int]]:
    """Metric points as MLflow metrics ``(key, value, timestamp ms, step)``."""
    return [(mlflow_key(p.name), p.value, int(p.timestamp * 1000), p.step or 0) for p in points]


def _artifacts(run: str, key: str, task: TaskResult, artifact_root: str) -> list[Record]:
    """Copies of the step's Markdown, HTML and metrics artifacts for its MLflow run."""
    records: list[Record] = []
    for name, output in task.outputs.items():
        if not isinstance(output, ArtifactRecord):
            continue
        suffix = _TEXT_ARTIFACTS.get(output.type)
        if suffix is not None:
            records.append(
                LogArtifact(run, key, output, artifact_root, f"{name}{suffix}", as_text=True)
            )
        elif output.type in _METRIC_ARTIFACTS:
            records.append(LogArtifact(run, key, output, artifact_root, name))
            if output.metadata:
                text = json.dumps(output.metadata, indent=2, sort_keys=True, default=str)
                records.append(LogText(run, key, text, f"{name}.json"))
    return records


def _artifact_tags(task: TaskResult) -> dict[str, str]:
    """Where each of the step's artifacts is stored (any type): tag ``raypipe.artifact.NAME``."""
    return {
        mlflow_key(f"raypipe.artifact.{name}"): cut(output.uri, MAX_TAG_LENGTH)[0]
        for name, output in task.outputs.items()
        if isinstance(output, ArtifactRecord)
    }


def _start(task: TaskResult) -> datetime:
    if task.start_time is not None:
        return task.start_time
    if task.attempts:
        return task.attempts[0].start_time
    return task.end_time or datetime.now().astimezone()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _public_uri(uri: str) -> str:
    """A URI without credentials or query options, fit for a tag."""
    parts = urlsplit(uri)
    if len(parts.scheme) <= 1 or parts.scheme == "file":  # a path (or a Windows drive)
        return uri
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or password database
        return None
