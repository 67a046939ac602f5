"""Running a compiled pipeline on Ray: plan, submit, execute steps, collect results.

Example:
    >>> from raypipe.runtime import run
    >>> run(addition, {"a": 1, "b": 2}).output  # doctest: +SKIP
    13
"""

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
from raypipe.runtime.runner import run

__all__ = [
    "ArtifactRecord",
    "AttemptRecord",
    "ErrorInfo",
    "ObjectSummary",
    "RunResult",
    "RunStatus",
    "TaskResult",
    "TaskState",
    "run",
]
