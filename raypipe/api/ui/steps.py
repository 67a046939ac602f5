"""What the UI shows of a run's steps: their states (for the live graph) and one step's
details (for the step panel), read from the run's lineage records, attempt markers and
log files.

Where each state comes from, the first that knows winning:

* the run's ``executions`` rows (lineage, written within about a second of a step's end);
* for a run whose steps are not tracked, once it ended: the outcomes the service's
  executor kept (:func:`raypipe.api.run_files.save_step_outcomes`);
* the step's latest attempt marker (:mod:`raypipe.runtime.markers`): written once an
  attempt has run for 0.2 s, or at its end if it printed; running until it says how the
  attempt ended (``retrying`` is still running);
* a log without a marker: an attempt that printed and is running.

Other steps are waiting (or were too short to be seen before their record arrived).

Example:
    >>> states = step_states(RunFiles(run_id))            # doctest: +SKIP
    >>> states["add"].state                               # doctest: +SKIP
    'SUCCEEDED'
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from raypipe.api.run_files import ArtifactBody, RunFiles
from raypipe.api.store import NotFound
from raypipe.runtime.markers import MarkerRecord
from raypipe.runtime.result import TaskResult

__all__ = ["AttemptView", "StepDetail", "StepState", "ValueView", "step_detail", "step_states"]


class StepState(BaseModel):
    """Where one step of a run is: what its node in the graph shows."""

    state: str
    cached: bool = False
    duration_s: float | None = None


class AttemptView(BaseModel):
    """One try of a step, with the error of a failed one."""

    attempt: int
    start_time: datetime | None
    end_time: datetime | None
    duration_s: float | None
    succeeded: bool
    error_type: str | None
    error_message: str | None
    traceback: str | None
    log_tail: str | None


class ValueView(BaseModel):
    """One input or output of a step: a parameter's value, an artifact, or an object."""

    direction: str
    name: str
    position: int | None
    kind: str
    value: Any = None
    uri: str | None = None
    artifact_type: str | None = None
    digest: str | None = None
    size: int | None = None
    object_type: str | None = None
    producer: str | None = None  # "task/output" of the step that made an input


class StepDetail(BaseModel):
    """Everything the step panel shows of one step."""

    task: str
    state: str
    component: str | None = None
    display_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: float | None = None
    node_id: str | None = None
    node_ip: str | None = None
    cache_key: str | None = None
    cached: bool = False
    error_type: str | None = None
    error_message: str | None = None
    attempts: list[AttemptView]
    values: list[ValueView]
    artifacts: list[ArtifactBody]
    logs: list[int]  # attempts that wrote a log


def step_states(files: RunFiles, *, ended: bool = False) -> dict[str, StepState]:
    """Every step of the run that ended or started, by its path in the run.

    Reads only the run's own files (a few milliseconds, so a live page can ask every
    second); a run with no lineage files that has ``ended`` may have been compacted with
    others, and is looked up through DuckDB, or it was not tracked and its outcomes file
    answers.
    """
    attempts = files.attempt_files()
    rows = _own_executions(files.run_id)
    if not rows and ended:
        from raypipe.tracking.lineage.query import executions

        rows = [
            (r.task, r.state, bool(r.cached), r.duration_s)
            for r in executions(files.run_id, root=_lineage_root())
        ]
    recorded = {row[0] for row in rows}
    outcomes = files.step_outcomes() if ended and not rows else {}
    found: dict[str, StepState] = {
        task: StepState(state="RUNNING") for task in attempts.logs if task not in recorded
    }
    for task, markers in attempts.markers.items():
        if task in recorded or task in outcomes:
            continue
        latest = files.marker(markers[-1][1])
        if latest is not None:
            first = latest if len(markers) == 1 else files.marker(markers[0][1])
            found[task] = _marked_state(latest, first)
    for task, state, cached, duration in rows:
        found[task] = StepState(state=state, cached=cached, duration_s=duration)
    for task, outcome in outcomes.items():
        found[task] = StepState(
            state=outcome.state.value,
            cached=outcome.state.value == "CACHED",
            duration_s=outcome.duration,
        )
    return found


def _marked_state(latest: MarkerRecord, first: MarkerRecord | None) -> StepState:
    """A step's state from its latest attempt's marker (and its first one's start)."""
    if latest.outcome in (None, "retrying"):
        return StepState(state="RUNNING")
    start = (first or latest).start
    duration = None if latest.end is None else latest.end - start
    state = "SUCCEEDED" if latest.outcome == "succeeded" else "FAILED"
    return StepState(state=state, duration_s=duration)


def _own_executions(run_id: str) -> list[tuple[str, str, bool, float | None]]:
    """(task, state, cached, duration) of each step in the run's own ``executions``
    directory, the latest record of each (a resumed run records its steps again)."""
    for _ in range(_RELIST - 1):
        try:
            return _read_own_executions(run_id)
        except FileNotFoundError:  # a merge replaced a part between listing and reading
            continue
    return _read_own_executions(run_id)


_RELIST = 3


def _read_own_executions(run_id: str) -> list[tuple[str, str, bool, float | None]]:
    from pyarrow import fs as pafs

    from raypipe.tracking.lineage.store import LineageStore, Listing

    store = LineageStore(_lineage_root())
    directory = store.run_dir("executions", run_id)
    infos = store.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
    parts = [
        part
        for info in infos
        if info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
        for part in [store.part_of("executions", info.path)]
        if part is not None
    ]
    latest: dict[str, tuple[Any, tuple[str, str, bool, float | None]]] = {}
    for part in Listing(parts, store.manifests("executions", {directory})).live():
        table = (
            store.read(part)
            .select(["task", "state", "cached", "duration_s", "recorded_at"])
            .to_pylist()
        )
        for row in table:
            record = (row["task"], row["state"], bool(row["cached"]), row["duration_s"])
            seen = latest.get(row["task"])
            if seen is None or row["recorded_at"] >= seen[0]:
                latest[row["task"]] = (row["recorded_at"], record)
    return [record for _, record in latest.values()]


def step_detail(files: RunFiles, task: str) -> StepDetail:
    """One step's record, attempts, inputs and outputs, artifacts and logs.

    Raises:
        NotFound: the run has no such step (yet).
    """
    from raypipe.tracking.lineage.query import connect, executions, sql

    execution_id = f"{files.run_id}/{task}"
    listed = files.attempt_files()
    logs = [attempt for attempt, _ in listed.logs.get(task, [])]
    with connect(_lineage_root()) as con:
        rows = [r for r in executions(files.run_id, connection=con) if r.task == task]
        names, attempts = sql(
            "SELECT attempt, start_time, end_time, duration_s, succeeded, error_type, "
            "error_message, traceback, log_tail FROM attempts WHERE execution_id = ? "
            "QUALIFY row_number() OVER (PARTITION BY attempt ORDER BY recorded_at DESC) = 1 "
            "ORDER BY attempt",
            [execution_id],
            connection=con,
        )
        value_names, values = sql(
            "SELECT direction, name, position, kind, value, uri, artifact_type, digest, size, "
            "object_type, producer_execution_id, producer_output FROM events "
            "WHERE execution_id = ? ORDER BY direction, name, position",
            [execution_id],
            connection=con,
        )
    outcome = None if rows else files.step_outcomes().get(task)
    markers = [m for _, path in listed.markers.get(task, []) for m in [files.marker(path)] if m]
    if not rows and outcome is None and not logs and not markers:
        raise NotFound("step", task)
    detail = StepDetail(
        task=task,
        state="RUNNING",
        attempts=[AttemptView(**dict(zip(names, a, strict=True))) for a in attempts],
        values=[_value(dict(zip(value_names, v, strict=True)), files.run_id) for v in values],
        artifacts=[a for a in files.artifacts() if a.task == task],
        logs=logs,
    )
    if rows:
        row = rows[0]
        return detail.model_copy(
            update={
                "state": row.state,
                "cached": bool(row.cached),
                **row.model_dump(
                    include={
                        "component",
                        "display_name",
                        "start_time",
                        "end_time",
                        "duration_s",
                        "node_id",
                        "node_ip",
                        "cache_key",
                        "error_type",
                        "error_message",
                    }
                ),
            }
        )
    if outcome is not None:  # an ended run whose steps were not tracked
        return detail.model_copy(update=_from_outcome(outcome))
    if markers:  # started: when and where, from its attempt markers
        latest = markers[-1]
        return detail.model_copy(
            update={
                "state": _marked_state(latest, markers[0]).state,
                "start_time": _time(markers[0].start),
                "end_time": _time(latest.end) if latest.outcome in _FINAL else None,
                "duration_s": _marked_state(latest, markers[0]).duration_s,
                "node_id": latest.node_id,
                "node_ip": latest.node_ip,
                "attempts": detail.attempts or [_marked_attempt(m) for m in markers],
            }
        )
    return detail


_FINAL = ("succeeded", "failed")


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def _marked_attempt(marker: MarkerRecord) -> AttemptView:
    ended = marker.end if marker.outcome is not None else None
    return AttemptView(
        attempt=marker.attempt,
        start_time=_time(marker.start),
        end_time=_time(ended),
        duration_s=None if ended is None else ended - marker.start,
        succeeded=marker.outcome == "succeeded",
        error_type=None,
        error_message=None,
        traceback=None,
        log_tail=None,
    )


def _from_outcome(task: TaskResult) -> dict[str, Any]:
    """The step panel's fields from a step's outcome kept by the executor."""
    error = task.error
    return {
        "state": task.state.value,
        "cached": task.state.value == "CACHED",
        "component": task.component,
        "display_name": task.display_name,
        "start_time": task.start_time,
        "end_time": task.end_time,
        "duration_s": task.duration,
        "node_id": task.node_id,
        "node_ip": task.node_ip,
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
        "attempts": [
            AttemptView(
                attempt=a.number,
                start_time=a.start_time,
                end_time=a.end_time,
                duration_s=(a.end_time - a.start_time).total_seconds(),
                succeeded=a.error is None,
                error_type=None if a.error is None else a.error.type,
                error_message=None if a.error is None else a.error.message,
                traceback=None if a.error is None else a.error.traceback,
                log_tail=None if a.error is None else a.error.log_tail,
            )
            for a in task.attempts
        ],
    }


def _lineage_root() -> str:
    from raypipe.runtime.config import RuntimeConfig

    return RuntimeConfig.from_env().lineage_root


def _value(row: dict[str, Any], run_id: str) -> ValueView:
    producer = row.pop("producer_execution_id")
    output = row.pop("producer_output")
    if row["value"] is not None:
        row["value"] = json.loads(row["value"])
    if producer is not None:
        row["producer"] = f"{producer.removeprefix(run_id + '/')}/{output}"
    return ValueView(**row)
