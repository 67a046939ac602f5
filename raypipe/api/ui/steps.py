"""What the UI shows of a run's steps: their states (for the live graph) and one step's
details (for the step panel), read from the run's lineage records and log files.

A step that ended has an ``executions`` row (written within about a second of its end);
a step that wrote to its log and has no row yet is running; the others are waiting. So a
step that runs silently shows ``PENDING`` until it ends: the runtime knows when a step was
submitted and when it ended, not when it started (see :mod:`raypipe.runtime.progress`).

Example:
    >>> states = step_states(RunFiles(run_id))            # doctest: +SKIP
    >>> states["add"].state                               # doctest: +SKIP
    'SUCCEEDED'
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from raypipe.api.run_files import ArtifactBody, RunFiles
from raypipe.api.store import NotFound

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

    Reads only the run's own lineage files (a few milliseconds, so a live page can ask
    every second); a run with none that has ``ended`` may have been compacted with others,
    and is looked up through DuckDB instead.
    """
    found: dict[str, StepState] = {
        task: StepState(state="RUNNING") for task in {log.task for log in files.logs()}
    }
    rows = _own_executions(files.run_id)
    if not rows and ended:
        from raypipe.tracking.lineage.query import executions

        rows = [
            (r.task, r.state, bool(r.cached), r.duration_s)
            for r in executions(files.run_id, root=_lineage_root())
        ]
    for task, state, cached, duration in rows:
        found[task] = StepState(state=state, cached=cached, duration_s=duration)
    return found


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
    logs = [log.attempt for log in files.logs() if log.task == task]
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
    if not rows and not logs:
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
        detail = detail.model_copy(
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
    return detail


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
