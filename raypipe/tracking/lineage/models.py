"""What the lineage helpers return: one pydantic row per run, execution or lineage step.

Rows are plain data (JSON-serialisable with ``model_dump(mode="json")``); turn a list into
a DataFrame with ``pandas.DataFrame([r.model_dump() for r in rows])``, or query the
views of :func:`~raypipe.tracking.lineage.connect` directly for anything else.

Example:
    >>> row = LineageRow(depth=0, run_id="3f2a", execution_id="3f2a/train", task="train",
    ...                  name="data", kind="artifact", uri="/a/data")
    >>> row.source
    >>> row.model_dump()["uri"]
    '/a/data'
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExecutionRow", "LineageRow", "RunRow"]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RunRow(_Row):
    """A run as it stands: its latest ``runs`` row (``status`` RUNNING until it ends)."""

    run_id: str
    run_name: str | None = None
    pipeline: str | None = None
    experiment: str | None = None
    status: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    spec_digest: str | None = None
    git_commit: str | None = None
    arguments: str | None = Field(default=None, description="JSON object")
    outputs: str | None = Field(default=None, description="JSON object, once ended")
    error: str | None = None
    artifact_root: str | None = None
    resumed: bool | None = None


class ExecutionRow(_Row):
    """One step of a run as it ended (any state), from the ``executions`` table."""

    run_id: str
    execution_id: str
    task: str
    scope: str | None = None
    component: str | None = None
    display_name: str | None = None
    component_digest: str | None = None
    state: str
    attempts: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: float | None = None
    node_id: str | None = None
    node_ip: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    cache_key: str | None = None
    cached: bool | None = None
    tracked: bool | None = None


class LineageRow(_Row):
    """One step of a lineage walk: an execution and one thing it read (``upstream``) or
    wrote (``downstream``).

    ``depth`` counts steps from the start: 0 is the execution that wrote the artifact
    (``upstream``) or that read it (``downstream``). An execution that read (or wrote)
    nothing has one row with ``name`` None. For an input, ``source_execution_id`` and
    ``source_output`` name the execution and output that produced it, when a step did
    (None for constants, pipeline arguments and data from outside).
    """

    depth: int
    run_id: str
    execution_id: str
    task: str | None = None
    component: str | None = None
    component_digest: str | None = Field(default=None, description="sha256 of the code")
    state: str | None = None
    direction: Literal["input", "output"] | None = None
    name: str | None = None
    position: int | None = None
    kind: Literal["parameter", "artifact", "object"] | None = None
    uri: str | None = None
    artifact_type: str | None = None
    value: str | None = Field(default=None, description="a parameter's JSON")
    digest: str | None = None
    size: int | None = None
    object_type: str | None = None
    source_execution_id: str | None = None
    source_output: str | None = None

    @property
    def source(self) -> str | None:
        """``"execution_id/output"`` of what produced this input, if a step did."""
        if self.source_execution_id is None:
            return None
        return f"{self.source_execution_id}/{self.source_output}"
