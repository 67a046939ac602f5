"""``raypipe.log_metric``: metrics a component logs while it runs, for MLflow and lineage.

The worker opens a :func:`collecting` block around each attempt; ``log_metric`` appends
to it, and a successful attempt's points travel back in the step's report. The points of
a step land in its nested MLflow run, with ``step`` as MLflow's step (a learning curve).

Example:
    >>> @dsl.component
    ... def train(epochs: int) -> float:
    ...     for epoch in range(epochs):
    ...         raypipe.log_metric("loss", 1 / (epoch + 1), step=epoch)
    ...     return 1 / epochs
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["collecting", "current_step", "log_metric", "record_points"]

# Points of the attempt running in this worker (a Ray worker runs one step at a time):
# [name, value, step, timestamp], plain lists so that they cross to the driver cheaply.
_current: list[list[Any]] | None = None
_step: tuple[str, str] | None = None  # (run id, task) of that attempt


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record one metric value of the running step (call it inside a component).

    Args:
        name: the metric's name, e.g. ``"loss"``.
        value: a finite number.
        step: the training step or epoch this value belongs to (MLflow's ``step``).

    Raises:
        RuntimeError: called outside a running step.
        TypeError, ValueError: ``value`` is not a finite number, or ``step`` not an int.
    """
    if _current is None:
        raise RuntimeError(
            f"raypipe.log_metric({name!r}, ...) was called outside a running step; "
            "call it inside a @dsl.component function"
        )
    if not isinstance(name, str) or not name:
        raise TypeError(f"metric name must be a non-empty string, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} must be finite, got {value}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise TypeError(f"step of metric {name!r} must be an int, got {type(step).__name__}")
    _current.append([name, float(value), step, time.time()])


def record_points(points: list[list[Any]]) -> None:
    """Add points ``[name, value, step, timestamp]`` already checked (a training step's)."""
    if _current is None:
        raise RuntimeError("metric points are recorded inside a running step")
    _current.extend(points)


def current_step() -> tuple[str, str] | None:
    """The run id and task of the step running in this process, if any."""
    return _step


@contextlib.contextmanager
def collecting(step: tuple[str, str] | None = None) -> Iterator[list[list[Any]]]:
    """Collect the points logged inside the block (one attempt of ``step``: run id, task)."""
    global _current, _step
    saved = _current, _step
    points: list[list[Any]] = []
    _current, _step = points, step
    try:
        yield points
    finally:
        _current, _step = saved
