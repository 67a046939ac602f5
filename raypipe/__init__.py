"""raypipe: Kubeflow-style ML pipelines on Ray, with step outputs passed in memory.

Example:
    >>> import raypipe
    >>> from raypipe import dsl
    >>> @dsl.component
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> @dsl.pipeline(name="addition")
    ... def addition(a: int, b: int, c: int = 10) -> int:
    ...     return add(a=add(a=a, b=b).output, b=c).output
    >>> raypipe.run(addition, {"a": 1, "b": 2}).output  # doctest: +SKIP
    13
"""

from typing import TYPE_CHECKING

from raypipe import dsl
from raypipe._lazy import lazy_exports

if TYPE_CHECKING:  # what the names are; at run time they are imported on first use
    from raypipe import lineage
    from raypipe.client import Client
    from raypipe.errors import (
        ApiError,
        ClusterConnectionError,
        ComponentDefinitionError,
        PipelineArgumentError,
        PipelineDefinitionError,
        RaypipeError,
        SpecLoadError,
        StepFailedError,
    )
    from raypipe.replaying import replay
    from raypipe.runtime.events import RunObserver
    from raypipe.runtime.failures import (
        InfeasibleResourcesError,
        RunNotFinishedError,
        StepCrashedError,
        StepTimeoutError,
    )
    from raypipe.runtime.handle import RunHandle
    from raypipe.runtime.manifest import RunNotResumableError
    from raypipe.runtime.metrics import log_metric
    from raypipe.runtime.result import (
        ArtifactRecord,
        AttemptRecord,
        ErrorInfo,
        RunResult,
        RunStatus,
        TaskResult,
        TaskState,
    )
    from raypipe.runtime.runner import resume, run, submit
    from raypipe.spec.io import compile, json_schema, load
    from raypipe.spec.models import PipelineSpec

# Authoring (``dsl``) is imported with the package; the rest when first used, so that a
# Ray worker importing raypipe to run one step or a training loop does not load the
# runner, MLflow's tracker and the lineage writer (about 0.4 s).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Client": "raypipe.client",
        **dict.fromkeys(
            [
                "ApiError",
                "ClusterConnectionError",
                "ComponentDefinitionError",
                "PipelineArgumentError",
                "PipelineDefinitionError",
                "RaypipeError",
                "SpecLoadError",
                "StepFailedError",
            ],
            "raypipe.errors",
        ),
        "replay": "raypipe.replaying",
        "RunObserver": "raypipe.runtime.events",
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
        "RunNotResumableError": "raypipe.runtime.manifest",
        "log_metric": "raypipe.runtime.metrics",
        **dict.fromkeys(
            [
                "ArtifactRecord",
                "AttemptRecord",
                "ErrorInfo",
                "RunResult",
                "RunStatus",
                "TaskResult",
                "TaskState",
            ],
            "raypipe.runtime.result",
        ),
        **dict.fromkeys(["resume", "run", "submit"], "raypipe.runtime.runner"),
        **dict.fromkeys(["compile", "json_schema", "load"], "raypipe.spec.io"),
        "PipelineSpec": "raypipe.spec.models",
    },
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "ArtifactRecord",
    "AttemptRecord",
    "Client",
    "ClusterConnectionError",
    "ComponentDefinitionError",
    "ErrorInfo",
    "InfeasibleResourcesError",
    "PipelineArgumentError",
    "PipelineDefinitionError",
    "PipelineSpec",
    "RaypipeError",
    "RunHandle",
    "RunNotResumableError",
    "RunObserver",
    "RunNotFinishedError",
    "RunResult",
    "RunStatus",
    "SpecLoadError",
    "StepCrashedError",
    "StepFailedError",
    "StepTimeoutError",
    "TaskResult",
    "TaskState",
    "__version__",
    "compile",
    "dsl",
    "json_schema",
    "lineage",
    "load",
    "log_metric",
    "replay",
    "resume",
    "run",
    "submit",
]
