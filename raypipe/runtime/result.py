"""What a run reports: its status, outputs, and the state and attempts of every task.

Example:
    >>> result = raypipe.run(addition, {"a": 1, "b": 2})   # doctest: +SKIP
    >>> result.status, result.output, result.tasks["add-2"].state  # doctest: +SKIP
    ('SUCCEEDED', 13, 'SUCCEEDED')
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "ErrorInfo",
    "ObjectSummary",
    "RunResult",
    "RunStatus",
    "SlimTask",
    "TaskResult",
    "TaskResults",
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


# Every field of these records is set when raypipe builds one, so their instances share one
# fields-set: a set per instance would be a quarter of the memory of a 100,000-step run.
ATTEMPT_FIELDS = set(AttemptRecord.model_fields)
TASK_FIELDS = set(TaskResult.model_fields)


class SlimTask(NamedTuple):
    """A step that ended on its first attempt without an error, as a run keeps it.

    A :class:`TaskResult` with its attempt, dicts and datetimes is about 1.3 KB; this tuple
    about 0.25 KB, which is most of a 10,000-step run's memory in Python. ``expand()``
    makes the ``TaskResult`` it stands for.

    Example:
        >>> slim = SlimTask("add", "add", None, TaskState.SUCCEEDED, 1, 0.0, 1.5, None,
        ...                 None, ("Output",), (3,))
        >>> slim.expand().duration, slim.expand().outputs
        (1.5, {'Output': 3})
    """

    name: str
    component: str
    display_name: str | None
    state: TaskState
    attempt: int  # 0: the step ran no attempt (served from the cache, or skipped)
    start: float  # seconds since the epoch, as the step's report gave them
    end: float
    node_id: str | None
    node_ip: str | None
    output_names: tuple[str, ...]
    output_values: tuple[Any, ...]

    def expand(self) -> TaskResult:
        attempts = []
        if self.attempt:
            attempts.append(
                AttemptRecord.model_construct(
                    ATTEMPT_FIELDS,
                    number=self.attempt,
                    start_time=datetime.fromtimestamp(self.start, timezone.utc),
                    end_time=datetime.fromtimestamp(self.end, timezone.utc),
                    error=None,
                )
            )
        return TaskResult.model_construct(
            TASK_FIELDS,
            name=self.name,
            component=self.component,
            display_name=self.display_name,
            state=self.state,
            attempts=attempts,
            start_time=attempts[0].start_time if attempts else None,
            end_time=attempts[0].end_time if attempts else None,
            node_id=self.node_id,
            node_ip=self.node_ip,
            outputs=dict(zip(self.output_names, self.output_values, strict=True)),
            error=None,
        )


class TaskResults(Mapping[str, TaskResult]):
    """A run's task results by name, in submission order (upstream first).

    A read-only mapping. It keeps a step that ended on its first try without an error as
    a :class:`SlimTask` and makes its ``TaskResult`` when it is read, so a result of many
    steps holds a fifth of the memory; two reads of one task give equal results, not the
    same object.

    Example:
        >>> results = TaskResults({"add": SlimTask("add", "add", None, TaskState.SUCCEEDED,
        ...                                        1, 0.0, 1.0, None, None, (), ())})
        >>> results["add"].state, len(results), list(results)
        (<TaskState.SUCCEEDED: 'SUCCEEDED'>, 1, ['add'])
    """

    __slots__ = ("_kept",)

    def __init__(self, kept: Mapping[str, TaskResult | SlimTask] | None = None) -> None:
        self._kept: dict[str, TaskResult | SlimTask] = dict(kept or {})

    def __getitem__(self, name: str) -> TaskResult:
        kept = self._kept[name]
        return kept.expand() if isinstance(kept, SlimTask) else kept

    def __iter__(self) -> Iterator[str]:
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, name: object) -> bool:
        return name in self._kept

    def __repr__(self) -> str:
        return f"TaskResults({dict(self.items())!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Validated from a dict of task results (JSON, or a dict in Python), dumped as one.
        as_dict = handler.generate_schema(dict[str, TaskResult])
        from_dict = core_schema.no_info_after_validator_function(cls, as_dict)
        return core_schema.json_or_python_schema(
            json_schema=from_dict,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_dict]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                dict, return_schema=as_dict
            ),
        )


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
    tasks: TaskResults = Field(default_factory=TaskResults)
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
