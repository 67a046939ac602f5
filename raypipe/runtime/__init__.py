"""Running a compiled pipeline on Ray: plan, submit, execute steps, collect results.

Example:
    >>> from raypipe.runtime import run, submit
    >>> run(addition, {"a": 1, "b": 2}).output  # doctest: +SKIP
    13
    >>> submit(addition, {"a": 1, "b": 2}).wait().output  # doctest: +SKIP
    13
"""

from typing import TYPE_CHECKING

from raypipe._lazy import lazy_exports

if TYPE_CHECKING:  # what the names are; at run time they are imported on first use
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

# A worker imports raypipe.runtime.worker (and a training worker raypipe.runtime's small
# modules): not the runner, the scheduler and what they import.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            [
                "InfeasibleResourcesError",
                "RunNotFinishedError",
                "StepCrashedError",
                "StepTimeoutError",
            ],
            "raypipe.runtime.failures",
        ),
        "RunHandle": "raypipe.runtime.handle",
        **dict.fromkeys(
            [
                "ArtifactRecord",
                "AttemptRecord",
                "ErrorInfo",
                "ObjectSummary",
                "RunResult",
                "RunStatus",
                "TaskResult",
                "TaskState",
            ],
            "raypipe.runtime.result",
        ),
        **dict.fromkeys(["run", "submit"], "raypipe.runtime.runner"),
    },
)

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
