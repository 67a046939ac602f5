"""What the runtime tells trackers about a run: it started, a step ended, it ended.

The runtime posts events to an :class:`EventBus`; the bus hands them, in order, to each
:class:`RunObserver` (MLflow, the lineage store) on its own thread, so a slow or broken
tracker never slows a step down. An observer that raises is reported with a warning
naming the run and the tracker, and the other observers still get every event.

Example:
    >>> class Printer:
    ...     name = "printer"
    ...     def run_started(self, event): print("started", event.run_id)
    ...     def step_ended(self, event): print(event.task.name, event.task.state)
    ...     def run_ended(self, event): print("ended", event.status)
    ...     def close(self): pass
    >>> raypipe.run(addition, {"a": 1, "b": 2}, observers=[Printer()])  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from raypipe.runtime.result import ArtifactRecord, ObjectSummary, RunStatus, TaskResult

__all__ = [
    "EventBus",
    "InputRecord",
    "MetricPoint",
    "RunEnded",
    "RunEvent",
    "RunObserver",
    "RunStarted",
    "StepEnded",
    "StepMetrics",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricPoint(_Event):
    """One metric value a step logged (``raypipe.log_metric`` or an ``Output[Metrics]``)."""

    name: str
    value: float
    step: int | None = None
    timestamp: float = Field(description="seconds since the epoch")


class InputRecord(_Event):
    """What a step read through one input.

    ``producers`` names the outputs that made the value, as ``"task/output"`` (several for
    a ``dsl.Collected`` input); empty when it is a constant or a pipeline argument.
    """

    name: str
    kind: Literal["parameter", "artifact", "object"]
    value: Any = Field(default=None, description="a parameter's value (JSON)")
    artifact: ArtifactRecord | None = None
    artifacts: list[ArtifactRecord] = Field(
        default_factory=list, description="a collected list of artifacts"
    )
    object: ObjectSummary | None = None
    producers: list[str] = Field(default_factory=list)
    pipeline_input: str | None = Field(
        default=None, description="the pipeline input it came from, if any"
    )
    digest: str | None = Field(
        default=None, description="sha256 of a parameter too long to keep (its JSON)"
    )
    size: int | None = Field(default=None, description="characters of that JSON")
    identity: str | None = Field(
        default=None, description="what the step's cache key saw of this input"
    )


class RunStarted(_Event):
    """A run was submitted."""

    run_id: str
    run_name: str
    pipeline: str
    experiment: str
    arguments: dict[str, Any] = Field(description="parameter arguments; objects summarised")
    spec_digest: str = Field(description="sha256 of the pipeline's IR")
    git_commit: str | None = None
    start_time: datetime
    artifact_root: str
    resumed: bool = False


class StepEnded(_Event):
    """A step ended (succeeded, failed, was skipped, canceled or served from the cache)."""

    run_id: str
    pipeline: str
    task: TaskResult
    component_digest: str | None = Field(
        default=None, description="sha256 of the component's code (None if not run)"
    )
    inputs: list[InputRecord] = Field(default_factory=list)
    metrics: list[MetricPoint] = Field(default_factory=list)
    tracked: bool = Field(
        default=False, description="has something to compare: gets its own MLflow run"
    )
    cache_key: str | None = Field(
        default=None,
        description="the key its outputs are stored under; unique to the run when the "
        "step has cache=False (then only a resume of the run reuses it)",
    )


class StepMetrics(_Event):
    """Metric points a step reported while it runs (a training step's learning curve so far).

    The step's :class:`StepEnded` lists every point again; an observer that logged these
    already skips them there.
    """

    run_id: str
    pipeline: str
    task: str
    component: str
    points: list[MetricPoint]


class RunEnded(_Event):
    """A run ended; ``outputs`` holds its parameter outputs and artifact records."""

    run_id: str
    pipeline: str
    status: RunStatus
    end_time: datetime
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


RunEvent = RunStarted | StepMetrics | StepEnded | RunEnded


@runtime_checkable
class RunObserver(Protocol):
    """Receives a run's events in order, on the bus's thread; ``close`` flushes."""

    name: str

    def run_started(self, event: RunStarted) -> None: ...

    def step_ended(self, event: StepEnded) -> None: ...

    # Optional: ``step_metrics(event: StepMetrics)``, points of a step still running; an
    # observer without it sees them in the step's StepEnded.

    def run_ended(self, event: RunEnded) -> None: ...

    def close(self) -> None: ...


_STOP = object()


class EventBus:
    """Delivers a run's events to its observers on one background thread.

    ``post`` only enqueues (about a microsecond); ``close`` waits until every event has
    been delivered and every observer closed (flushed).
    """

    def __init__(self, run_id: str, observers: Sequence[RunObserver]) -> None:
        self.run_id = run_id
        self.observers = list(observers)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._deliver, name=f"raypipe-events-{run_id[:8]}", daemon=True
        )
        self._thread.start()

    def post(self, event: RunEvent) -> None:
        """Queue ``event`` for every observer."""
        self._queue.put(event)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, close every observer, stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            warnings.warn(
                f"raypipe: run {self.run_id}: trackers "
                f"{', '.join(o.name for o in self.observers)} did not finish within "
                f"{timeout} s; their records of this run may be incomplete",
                RuntimeWarning,
                stacklevel=2,
            )

    def _deliver(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                for observer in self.observers:
                    self._call(observer, "close", None)
                return
            method = _METHODS[type(event)]
            for observer in self.observers:
                if hasattr(observer, method):
                    self._call(observer, method, event)

    def _call(self, observer: RunObserver, method: str, event: RunEvent | None) -> None:
        try:
            if event is None:
                getattr(observer, method)()
            else:
                getattr(observer, method)(event)
        except Exception as exc:  # a tracker's failure must not stop the run or the others
            what = "closing" if event is None else f"recording {type(event).__name__}"
            warnings.warn(
                f"raypipe: run {self.run_id}: tracker {observer.name!r} failed "
                f"{what}: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=1,
            )


_METHODS: dict[type[Any], str] = {
    RunStarted: "run_started",
    StepMetrics: "step_metrics",
    StepEnded: "step_ended",
    RunEnded: "run_ended",
}
