"""Rows of the lineage tables, made from a run's events: plain dicts keyed by column.

:func:`step_rows` turns one :class:`~raypipe.runtime.events.StepEnded` into its
``executions``, ``attempts``, ``artifacts`` and ``events`` rows; :func:`run_row` turns a
run's start or end into a ``runs`` row. Parameters are described by their JSON text
(kept when at most 1024 characters), its sha256 and its length, computed the same way the
worker describes a long input, so an output's digest equals the digest of the input that
read it.

Example:
    >>> text, digest, size = parameter_json(0.1)
    >>> text, size, digest[:12]
    ('0.1', 3, '14be4b45f18e')
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from raypipe.runtime.events import InputRecord, RunEnded, RunStarted, StepEnded
from raypipe.runtime.result import ArtifactRecord, ObjectSummary, TaskResult, TaskState

__all__ = [
    "MAX_VALUE_CHARS",
    "Row",
    "StepRows",
    "execution_id",
    "parameter_json",
    "run_row",
    "step_rows",
    "to_json",
]

MAX_VALUE_CHARS = 1024  # longer parameter values are kept as digest and size only

Row = dict[str, Any]


class StepRows:
    """The rows one ended step adds to each table."""

    __slots__ = ("artifacts", "attempts", "events", "executions")

    def __init__(self) -> None:
        self.executions: list[Row] = []
        self.attempts: list[Row] = []
        self.artifacts: list[Row] = []
        self.events: list[Row] = []

    def by_table(self) -> dict[str, list[Row]]:
        return {
            "executions": self.executions,
            "attempts": self.attempts,
            "artifacts": self.artifacts,
            "events": self.events,
        }


def execution_id(run_id: str, task: str) -> str:
    """The id of a step's execution: ``"{run_id}/{task}"``.

    Example:
        >>> execution_id("3f2a", "for-loop-1[0]/train")
        '3f2a/for-loop-1[0]/train'
    """
    return f"{run_id}/{task}"


def to_json(value: Any) -> str:
    """JSON text of ``value``: keys sorted, records as objects, anything else as ``str``."""
    return json.dumps(value, sort_keys=True, default=_jsonable)


def parameter_json(value: Any) -> tuple[str | None, str, int]:
    """(JSON text or None if longer than 1024 characters, its sha256, its length).

    The JSON is the worker's (``json.dumps(value, sort_keys=True, default=str)``), so the
    digest of a parameter a step wrote equals the digest of the input that read it.
    """
    text = json.dumps(value, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return (text if len(text) <= MAX_VALUE_CHARS else None), digest, len(text)


def run_row(
    run_id: str, started: RunStarted | None, ended: RunEnded | None, recorded_at: datetime
) -> Row:
    """The ``runs`` row of a run that started (``ended`` None) or ended; what the start
    said (name, arguments...) is repeated in the end's row."""
    row: Row = {
        "run_id": run_id,
        "run_name": None,
        "pipeline": None,
        "experiment": None,
        "status": "RUNNING",
        "start_time": None,
        "end_time": None,
        "spec_digest": None,
        "git_commit": None,
        "arguments": None,
        "outputs": None,
        "error": None,
        "artifact_root": None,
        "resumed": None,
        "recorded_at": recorded_at,
    }
    if started is not None:
        row.update(
            run_name=started.run_name,
            pipeline=started.pipeline,
            experiment=started.experiment,
            start_time=started.start_time,
            spec_digest=started.spec_digest,
            git_commit=started.git_commit,
            arguments=to_json(started.arguments),
            artifact_root=started.artifact_root,
            resumed=started.resumed,
        )
    if ended is not None:
        row.update(
            pipeline=row["pipeline"] or ended.pipeline,
            status=ended.status.value,
            end_time=ended.end_time,
            outputs=to_json(ended.outputs),
            error=ended.error,
        )
    return row


def step_rows(event: StepEnded, recorded_at: datetime) -> StepRows:
    """Every row one ended step adds: its execution, attempts, artifacts and events."""
    task = event.task
    run_id = event.run_id
    eid = execution_id(run_id, task.name)
    rows = StepRows()
    rows.executions.append(_execution_row(event, eid, recorded_at))
    for attempt in task.attempts:
        error = attempt.error
        rows.attempts.append(
            {
                "run_id": run_id,
                "execution_id": eid,
                "attempt": attempt.number,
                "start_time": attempt.start_time,
                "end_time": attempt.end_time,
                "duration_s": (attempt.end_time - attempt.start_time).total_seconds(),
                "succeeded": error is None,
                "error_type": None if error is None else error.type,
                "error_message": None if error is None else error.message,
                "traceback": None if error is None else error.traceback,
                "log_tail": None if error is None else error.log_tail,
                "recorded_at": recorded_at,
            }
        )
    common = {
        "run_id": run_id,
        "execution_id": eid,
        "attempt": task.attempts[-1].number if task.attempts else None,
        "node_id": task.node_id,
        "recorded_at": recorded_at,
    }
    for record in event.inputs:
        started = {**common, "time": task.start_time}
        for row in _input_events(record, run_id, started):
            row["identity"] = record.identity
            rows.events.append(row)
    for name, value in task.outputs.items():
        _output_rows(
            rows,
            name,
            value,
            {**common, "time": task.end_time},
            reused=task.state is TaskState.CACHED,
        )
    return rows


# -- executions --------------------------------------------------------------------------


def _execution_row(event: StepEnded, eid: str, recorded_at: datetime) -> Row:
    task: TaskResult = event.task
    error = task.error
    return {
        "run_id": event.run_id,
        "execution_id": eid,
        "task": task.name,
        "scope": task.name.rpartition("/")[0] or None,
        "component": task.component,
        "display_name": task.display_name,
        "component_digest": event.component_digest,
        "state": task.state.value,
        "attempts": len(task.attempts),
        "start_time": task.start_time,
        "end_time": task.end_time,
        "duration_s": task.duration,
        "node_id": task.node_id,
        "node_ip": task.node_ip,
        "error_type": None if error is None else error.type,
        "error_message": None if error is None else error.message,
        "cache_key": event.cache_key,
        "cached": task.state is TaskState.CACHED,
        "tracked": event.tracked,
        "recorded_at": recorded_at,
    }


# -- events ------------------------------------------------------------------------------


def _event(common: Row, direction: str, name: str, kind: str, position: int | None) -> Row:
    return {
        **common,
        "direction": direction,
        "name": name,
        "position": position,
        "kind": kind,
        "uri": None,
        "artifact_type": None,
        "value": None,
        "digest": None,
        "size": None,
        "object_type": None,
        "producer_execution_id": None,
        "producer_output": None,
        "identity": None,
    }


def _with_producer(row: Row, run_id: str, producer: str | None) -> Row:
    """Fill the producer columns from ``"task/output"`` (task names may contain ``/``)."""
    if producer:
        task, _, output = producer.rpartition("/")
        row["producer_execution_id"] = execution_id(run_id, task)
        row["producer_output"] = output
    return row


def _describe_artifact(row: Row, record: ArtifactRecord | None) -> Row:
    if record is not None:
        row.update(
            uri=record.uri, artifact_type=record.type, digest=record.digest, size=record.size
        )
    return row


def _describe_parameter(row: Row, value: Any, digest: str | None, size: int | None) -> Row:
    if digest is not None:  # the worker kept only the digest of a long value
        row.update(digest=digest, size=size)
    else:
        row["value"], row["digest"], row["size"] = parameter_json(value)
    return row


def _input_events(record: InputRecord, run_id: str, common: Row) -> list[Row]:
    """One event per value read: a collected input gives one per item (with ``position``)."""
    producers: list[str | None] = list(record.producers) or [None]
    collected = len(record.producers) > 1
    rows: list[Row] = []
    if record.kind == "artifact":
        if record.artifact is not None or not record.artifacts:
            row = _event(common, "input", record.name, "artifact", None)
            rows.append(
                _with_producer(_describe_artifact(row, record.artifact), run_id, producers[0])
            )
            return rows
        aligned = len(record.artifacts) == len(record.producers)
        for i, artifact in enumerate(record.artifacts):
            row = _describe_artifact(_event(common, "input", record.name, "artifact", i), artifact)
            rows.append(_with_producer(row, run_id, record.producers[i] if aligned else None))
        return rows
    if record.kind == "object":
        for i, producer in enumerate(producers):
            row = _event(common, "input", record.name, "object", i if collected else None)
            if record.object is not None and not collected:  # a list's summary is not an item's
                row.update(object_type=record.object.type, size=record.object.nbytes)
            rows.append(_with_producer(row, run_id, producer))
        return rows
    value = record.value
    items = value if isinstance(value, list) and record.digest is None else None
    if collected and items is not None and len(items) == len(producers):
        for i, (item, producer) in enumerate(zip(items, producers, strict=True)):
            if isinstance(item, ArtifactRecord):  # collected artifacts, read as a list
                row = _event(common, "input", record.name, "artifact", i)
                row = _describe_artifact(row, item)
            else:
                row = _event(common, "input", record.name, "parameter", i)
                row = _describe_parameter(row, item, None, None)
            rows.append(_with_producer(row, run_id, producer))
        return rows
    for i, producer in enumerate(producers):
        row = _event(common, "input", record.name, "parameter", i if collected else None)
        row = _describe_parameter(row, value, record.digest, record.size)
        rows.append(_with_producer(row, run_id, producer))
    return rows


def _output_rows(rows: StepRows, name: str, value: Any, common: Row, *, reused: bool) -> None:
    """The events (and artifacts) of one output; a list of artifacts or objects gives one
    of each per item. A step served from the cache wrote no artifact: its output events
    point at the artifacts the cached execution wrote (the ``artifacts`` table has those)."""
    items = value if isinstance(value, list) and value and _is_record(value[0]) else None
    for position, item in enumerate(items) if items is not None else [(None, value)]:
        if isinstance(item, ArtifactRecord):
            rows.events.append(
                _describe_artifact(_event(common, "output", name, "artifact", position), item)
            )
            if reused:
                continue
            rows.artifacts.append(
                {
                    "run_id": common["run_id"],
                    "execution_id": common["execution_id"],
                    "output": name,
                    "position": position,
                    "uri": item.uri,
                    "type": item.type,
                    "digest": item.digest,
                    "size": item.size,
                    "metadata": to_json(item.metadata),
                    "recorded_at": common["recorded_at"],
                }
            )
        elif isinstance(item, ObjectSummary):
            row = _event(common, "output", name, "object", position)
            row.update(object_type=item.type, size=item.nbytes)
            rows.events.append(row)
        else:
            row = _event(common, "output", name, "parameter", position)
            rows.events.append(_describe_parameter(row, item, None, None))


def _is_record(value: Any) -> bool:
    return isinstance(value, (ArtifactRecord, ObjectSummary))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
