"""Errors of executing a run: a step timed out or crashed, a request fits no node, a run is busy.

```
RaypipeError
 ├── StepTimeoutError           a step overran its ``timeout`` (recorded as an attempt's error)
 ├── StepCrashedError           the worker process running an attempt died (recorded likewise)
 ├── NodeLostError              nodes were lost and no alive node can run a step any more
 ├── InfeasibleResourcesError   a step asks for more than any node of the cluster has
 └── RunNotFinishedError        ``RunHandle.result()`` on a run that is still going
```

``StepTimeoutError`` is raised inside the step's worker to interrupt it;
``StepCrashedError`` is never raised, only named in ``AttemptRecord.error.type``. Both
carry ``pipeline`` and ``task`` and build their message from them.

Example:
    >>> str(StepTimeoutError(pipeline="train_eval", task="train", timeout=2.0, attempt=1))
    'train_eval.train: timed out after 2 s (timeout=2 s, attempt 1)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from raypipe.errors import Problem, RaypipeError

__all__ = [
    "InfeasibleResourcesError",
    "NodeLostError",
    "RunNotFinishedError",
    "StepCrashedError",
    "StepTimeoutError",
    "qualified_name",
]


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as ``ErrorInfo.type`` names exception types."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


class StepTimeoutError(RaypipeError):
    """A step ran longer than its ``timeout``; raised in the step to stop it.

    ``killed`` is true when the step did not stop on the signal (code stuck in C, or the
    error swallowed by ``except Exception``) and the worker process was killed instead.
    """

    def __init__(
        self,
        *,
        pipeline: str,
        task: str,
        timeout: float,
        attempt: int,
        killed_after: float | None = None,
    ) -> None:
        self.pipeline, self.task, self.field = pipeline, task, "timeout"
        self.timeout, self.attempt, self.killed_after = timeout, attempt, killed_after
        message = (
            f"{pipeline}.{task}: timed out after {_seconds(timeout)} "
            f"(timeout={_seconds(timeout)}, attempt {attempt})"
        )
        if killed_after is not None:
            message += (
                f"; it did not stop when interrupted (stuck in code that ignores signals, or "
                f"it caught the error), so its worker was killed after {_seconds(killed_after)}"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only __init__: pickle by parts
        return (
            _rebuild_timeout,
            (self.pipeline, self.task, self.timeout, self.attempt, self.killed_after),
        )


def _rebuild_timeout(
    pipeline: str, task: str, timeout: float, attempt: int, killed_after: float | None
) -> StepTimeoutError:
    return StepTimeoutError(
        pipeline=pipeline, task=task, timeout=timeout, attempt=attempt, killed_after=killed_after
    )


class StepCrashedError(RaypipeError):
    """The worker process running a step's attempt died: killed, out of memory, segfault,
    or its node was lost. Named in ``AttemptRecord.error.type``; never raised."""

    def __init__(self, *, pipeline: str, task: str, attempt: int, detail: str) -> None:
        self.pipeline, self.task, self.field = pipeline, task, None
        self.attempt, self.detail = attempt, detail
        super().__init__(f"{pipeline}.{task}: the worker died during attempt {attempt}: {detail}")


class NodeLostError(RaypipeError):
    """Nodes of the cluster were lost while a step waited to run again, and no alive node
    can hold it (its label selector or resources fit only the lost nodes). Like
    ``StepCrashedError``, it is never raised: it is the detail of the step's crash.

    Example:
        >>> str(NodeLostError(pipeline="p", task="t", lost={"ab12": "10.0.0.7"},
        ...                   problem="needs 8 CPUs"))
        'p.t: no alive node can run it since node ab12 (10.0.0.7) was lost: needs 8 CPUs'
    """

    def __init__(self, *, pipeline: str, task: str, lost: Mapping[str, str], problem: str) -> None:
        self.pipeline, self.task, self.field = pipeline, task, None
        self.lost, self.problem = dict(lost), problem
        nodes = ", ".join(f"{node} ({ip})" for node, ip in sorted(lost.items()))
        plural = "s" if len(lost) > 1 else ""
        verb = "were" if len(lost) > 1 else "was"
        super().__init__(
            f"{pipeline}.{task}: no alive node can run it since node{plural} {nodes} {verb} "
            f"lost: {problem}"
        )

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only __init__: pickle by parts
        return (_rebuild_node_lost, (self.pipeline, self.task, self.lost, self.problem))


def _rebuild_node_lost(
    pipeline: str, task: str, lost: Mapping[str, str], problem: str
) -> NodeLostError:
    return NodeLostError(pipeline=pipeline, task=task, lost=lost, problem=problem)


SKIP_FEASIBILITY_ENV = "RAYPIPE_SKIP_FEASIBILITY"


class InfeasibleResourcesError(RaypipeError):
    """Some step asks for resources that no node of the cluster has; raised before any step runs.

    ``problems`` names each step and resource, e.g.
    ``addition.train.num_cpus: needs 64 CPUs; the largest node has 2``.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("InfeasibleResourcesError needs at least one problem")
        first = self.problems[0]
        self.pipeline, self.task, self.field = first.pipeline, first.task, first.field
        lines = [str(p) for p in self.problems]
        head = (
            lines[0]
            if len(lines) == 1
            else f"{len(lines)} steps cannot run on this cluster:\n"
            + "\n".join(f"  - {line}" for line in lines)
        )
        super().__init__(
            f"{head}\nNo node of the cluster can ever run "
            f"{'this step' if len(lines) == 1 else 'these steps'}, so nothing was started. "
            "If an autoscaler will add such a node, pass check_resources=False "
            f"or set {SKIP_FEASIBILITY_ENV}=1."
        )


class RunNotFinishedError(RaypipeError):
    """``RunHandle.result()`` was called before the run finished; ``wait()`` blocks instead."""

    def __init__(self, *, pipeline: str, run_id: str, status: str) -> None:
        self.pipeline, self.task, self.field = pipeline, None, None
        self.run_id = run_id
        super().__init__(
            f"{pipeline}: run {run_id} has not finished (status {status}); "
            "call wait() to block until it does"
        )
