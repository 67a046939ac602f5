"""What a run reports: its status, outputs, and the state and attempts of every task.

Example:
    >>> result = raypipe.run(addition, {"a": 1, "b": 2})   # doctest: +SKIP
    >>> result.status, result.output, result.tasks["add-2"].state  # doctest: +SKIP
    ('SUCCEEDED', 13, 'SUCCEEDED')
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "ErrorInfo",
    "ObjectSummary",
    "RunResult",
    "RunStatus",
    "TaskResult",
    "TaskState",
]


class RunStatus(str, enum.Enum):
    """Where a run is (``RUNNING``, from ``RunHandle.status()``), or how it ended."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value


class TaskState(str, enum.Enum):
    """Where one task is, or how it ended."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"  # did not run: a task it depends on failed
    SKIPPED = "SKIPPED"
    CACHED = "CACHED"
    CANCELED = "CANCELED"  # killed by cancel(), or not started because the run stopped

    def __str__(self) -> str:
        return self.value


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Record):
    """A step's failure: where, which attempt, the original exception and its traceback."""

    task: str
    attempt: int
    type: str = Field(description="qualified exception type, e.g. builtins.ValueError")
    message: str
    traceback: str
    log_tail: str | None = Field(
        default=None, description="the last lines the failing attempt printed, if any"
    )

    def __str__(self) -> str:
        return f"{self.task} (attempt {self.attempt}): {self.type}: {self.message}"


class AttemptRecord(_Record):
    """One try of a step."""

    number: int
    start_time: datetime
    end_time: datetime
    error: ErrorInfo | None = None


class ArtifactRecord(_Record):
    """A stored artifact as it travels between steps and into results: no file content."""

    name: str
    type: str = Field(description="artifact class name, e.g. Dataset")
    uri: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    digest: str | None = Field(default=None, description="sha256 of the content")
    size: int | None = Field(default=None, description="bytes of content")


class ObjectSummary(_Record):
    """An in-memory output, described (not fetched) in task results."""

    type: str
    nbytes: int | None = None


class TaskResult(_Record):
    """The outcome of one task (a step of the pipeline)."""

    name: str
    component: str
    display_name: str | None = None
    state: TaskState
    attempts: list[AttemptRecord] = Field(default_factory=list)
    start_time: datetime | None = None
    end_time: datetime | None = None
    node_id: str | None = None
    node_ip: str | None = None
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="parameters as values, artifacts as ArtifactRecord, objects as ObjectSummary",
    )
    error: ErrorInfo | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the last one's end."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


class RunResult(BaseModel):
    """The outcome of a pipeline run.

    Example:
        >>> result = raypipe.run(addition, {"a": 1, "b": 2})   # doctest: +SKIP
        >>> result.ok, result.outputs                          # doctest: +SKIP
        (True, {'Output': 13})
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    run_name: str
    pipeline: str
    status: RunStatus
    arguments: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    error: ErrorInfo | None = None
    start_time: datetime
    end_time: datetime
    artifact_root: str

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def output(self) -> Any:
        """The pipeline's only output.

        Raises:
            ValueError: the pipeline has no output, or several (use ``outputs``).
        """
        if len(self.outputs) != 1:
            names = ", ".join(repr(n) for n in self.outputs) or "none"
            raise ValueError(
                f"pipeline {self.pipeline!r} has {len(self.outputs)} outputs ({names}); "
                "use result.outputs[name]"
            )
        return next(iter(self.outputs.values()))

    @property
    def duration(self) -> float:
        return (self.end_time - self.start_time).total_seconds()

    def summary(self) -> str:
        """A few human lines: status, outputs, tasks by state, the error if any."""
        lines = [
            f"run {self.run_name} ({self.run_id}) of {self.pipeline}: {self.status}"
            f" in {self.duration:.2f}s"
        ]
        counts: dict[str, int] = {}
        for task in self.tasks.values():
            counts[task.state.value] = counts.get(task.state.value, 0) + 1
        lines.append("tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        for name, value in self.outputs.items():
            shown = repr(value)
            lines.append(f"output {name}: {shown if len(shown) < 200 else shown[:197] + '...'}")
        lines.append(f"artifacts: {self.artifact_root}")
        if self.error is not None:
            lines.append(f"error in {self.error}")
            lines.append(self.error.traceback.rstrip())
            if self.error.log_tail:
                where = f"raypipe logs {self.run_id} {self.error.task}"
                lines.append(f"last lines of its log ({where}):")
                lines.extend("  " + line for line in self.error.log_tail.splitlines())
        return "\n".join(lines)
