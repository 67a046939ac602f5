"""Running a compiled pipeline on Ray: plan, submit, execute steps, collect results.

Example:
    >>> from raypipe.runtime import run, submit
    >>> run(addition, {"a": 1, "b": 2}).output  # doctest: +SKIP
    13
    >>> submit(addition, {"a": 1, "b": 2}).wait().output  # doctest: +SKIP
    13
"""

from raypipe.runtime.failures import (
    InfeasibleResourcesError,
    RunNotFinishedError,
    StepCrashedError,
    StepTimeoutError,
)
from raypipe.runtime.handle import RunHandle
from raypipe.runtime.result import (
    ArtifactRecord,
    AttemptRecord,
    ErrorInfo,
    ObjectSummary,
    RunResult,
    RunStatus,
    TaskResult,
    TaskState,
)
from raypipe.runtime.runner import run, submit

__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "ErrorInfo",
    "InfeasibleResourcesError",
    "ObjectSummary",
    "RunHandle",
    "RunNotFinishedError",
    "RunResult",
    "RunStatus",
    "StepCrashedError",
    "StepTimeoutError",
    "TaskResult",
    "TaskState",
    "run",
    "submit",
]
