"""Every error raypipe raises on purpose, rooted in one class.

```
RaypipeError
 ├── ComponentDefinitionError    a @component function cannot be a component (bad annotation, ...)
 ├── PipelineDefinitionError     a pipeline is wrong before any step runs (type, input, cycle)
 │    └── SpecLoadError          a compiled YAML/JSON file is malformed or inconsistent
 ├── PipelineArgumentError       run arguments do not match the pipeline's inputs
 ├── ClusterConnectionError      the Ray cluster cannot be reached
 ├── StepFailedError             a step raised, or its worker died (``raise_on_failure=True``)
 ├── ApiError                    the raypipe service refused a request, or could not be reached
 ├── (in raypipe.runtime.failures, raised or recorded while a run executes)
 │    InfeasibleResourcesError   a step asks for more than any node has; nothing ran
 │    StepTimeoutError           an attempt overran its ``timeout`` (raised inside the step)
 │    StepCrashedError           an attempt's worker died (recorded, never raised)
 │    RunNotFinishedError        ``RunHandle.result()`` before the run ended
 └── (in raypipe.tracking.lineage)
      LineageError               a lineage root cannot be read or written, or a query is wrong
```

Errors that concern a pipeline carry ``pipeline``, ``task`` and ``field`` attributes and
build their message from them, e.g. ``addition.add-2.a: expected int, got str ('1')``.
Validation gathers every problem and raises once; ``problems`` lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raypipe.runtime.result import RunResult

__all__ = [
    "ApiError",
    "ClusterConnectionError",
    "ComponentDefinitionError",
    "PipelineArgumentError",
    "PipelineDefinitionError",
    "Problem",
    "RaypipeError",
    "SpecLoadError",
    "StepFailedError",
]


class RaypipeError(Exception):
    """Root of every error raypipe raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a pipeline, located by pipeline, task, field and IR path.

    Example:
        >>> p = Problem("expected int, got str ('1')", pipeline="addition", task="add-2", field="a")
        >>> str(p)
        "addition.add-2.a: expected int, got str ('1')"
    """

    message: str
    pipeline: str | None = None
    task: str | None = None
    field: str | None = None
    path: str | None = None  # where in the IR document, e.g. root.dag.tasks.add-2.inputs.a

    @property
    def location(self) -> str:
        return ".".join(p for p in (self.pipeline, self.task, self.field) if p)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def _join(problems: Sequence[Problem]) -> str:
    lines = [str(p) for p in problems]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)


class ComponentDefinitionError(RaypipeError):
    """A function decorated with ``@dsl.component`` cannot be turned into a component."""

    def __init__(self, problem: str, *, component: str, field: str | None = None) -> None:
        self.component, self.field = component, field
        where = f"{component}.{field}" if field else component
        super().__init__(f"component {where}: {problem}")


class PipelineDefinitionError(RaypipeError):
    """A pipeline is wrong before any step runs: a type, an input, a cycle, an argument.

    Example:
        >>> raise PipelineDefinitionError("expected int", pipeline="p", task="add", field="a")
        Traceback (most recent call last):
        raypipe.errors.PipelineDefinitionError: p.add.a: expected int
    """

    def __init__(
        self,
        problem: str | Sequence[Problem],
        *,
        pipeline: str | None = None,
        task: str | None = None,
        field: str | None = None,
    ) -> None:
        if isinstance(problem, str):
            problems: list[Problem] = [Problem(problem, pipeline, task, field)]
        else:
            problems = list(problem)
            if not problems:
                raise ValueError("PipelineDefinitionError needs at least one problem")
        self.problems = problems
        first = problems[0]
        self.pipeline, self.task, self.field = first.pipeline, first.task, first.field
        super().__init__(self._render())

    def _render(self) -> str:
        return _join(self.problems)


class SpecLoadError(PipelineDefinitionError):
    """A compiled pipeline file is malformed, hand-edited wrongly or inconsistent.

    Each problem names its path inside the document, e.g.
    ``p.yaml: root.dag.tasks.add-2.inputs.a: no task named 'ad'``.
    """

    def __init__(self, problems: Sequence[Problem], *, source: str) -> None:
        self.source = source
        super().__init__(problems)

    def _render(self) -> str:
        lines = [f"{p.path}: {p.message}" if p.path else p.message for p in self.problems]
        if len(lines) == 1:
            return f"{self.source}: {lines[0]}"
        return f"{self.source}: {len(lines)} problems:\n" + "\n".join(f"  - {x}" for x in lines)


class PipelineArgumentError(RaypipeError):
    """The arguments of a run do not match the pipeline's inputs (missing, unknown, wrong type)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        self.pipeline, self.task, self.field = first.pipeline, None, first.field
        super().__init__(_join(self.problems))


class ClusterConnectionError(RaypipeError):
    """The Ray cluster at ``address`` could not be reached or joined."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        super().__init__(f"cannot connect to the Ray cluster at {address!r}: {reason}")


class StepFailedError(RaypipeError):
    """A step raised (or its worker died) and the run failed; raised with ``raise_on_failure``.

    ``result`` is the whole :class:`~raypipe.RunResult`; ``error_type``, ``traceback`` and
    ``attempt`` describe the step's last attempt.
    """

    def __init__(
        self,
        *,
        pipeline: str,
        task: str,
        attempt: int,
        error_type: str,
        message: str,
        traceback: str,
        result: RunResult | None = None,
    ) -> None:
        self.pipeline, self.task, self.field = pipeline, task, None
        self.attempt, self.error_type, self.traceback = attempt, error_type, traceback
        self.result = result
        super().__init__(
            f"{pipeline}.{task}: step failed on attempt {attempt}: {error_type}: {message}\n"
            f"{traceback}"
        )


class ApiError(RaypipeError):
    """The raypipe service answered a request with an error, or could not be reached.

    ``status_code`` is the HTTP status (400 a field is wrong, 401 no valid token, 404 not
    found, 409 the resource's state forbids it), ``None`` when no answer came; ``message``
    is the server's text, which names the field; ``details`` its per-field list.

    Example:
        >>> raise ApiError(404, "run 'x' not found", method="GET", path="/apis/v2beta1/runs/x")
        Traceback (most recent call last):
        raypipe.errors.ApiError: GET /apis/v2beta1/runs/x: 404: run 'x' not found
    """

    def __init__(
        self,
        status_code: int | None,
        message: str,
        *,
        method: str,
        path: str,
        details: Sequence[dict[str, object]] = (),
    ) -> None:
        self.status_code, self.message, self.details = status_code, message, list(details)
        self.method, self.path = method, path
        status = "no answer" if status_code is None else str(status_code)
        super().__init__(f"{method} {path}: {status}: {message}")
