"""Metrics that reach the driver while their step still runs (a training step's reports).

A training step may run for hours; its learning curve should grow in MLflow as it trains,
not appear when it ends. Rank 0 of the training workers publishes each report's points to
Ray's cluster key-value store (``ray.experimental.internal_kv``: reachable from every
node and the driver, about 0.3 ms a write), one key per report; the driver takes them
every second or so while the step runs and hands them to the trackers as
:class:`~raypipe.runtime.events.StepMetrics` events. Taking a key deletes it, so each
point is delivered once; what a step published but the driver never took is deleted
with the run's other keys when the run ends. The step's own report still carries every
point: this is the early copy, not the record.

Example:
    >>> publish("3f2a...", "train", [["loss", 0.41, 0, 1764400000.0]])  # doctest: +SKIP
    >>> take("3f2a...", "train")                                          # doctest: +SKIP
    [['loss', 0.41, 0, 1764400000.0]]
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

__all__ = ["INTERVAL_S", "delete_run", "publish", "take"]

INTERVAL_S = 1.0
"""How often the driver takes the points of its running training steps, in seconds."""

_NAMESPACE = "raypipe"


def _prefix(run_id: str, task: str = "") -> bytes:
    return f"live-metrics/{run_id}/{task}{'/' if task else ''}".encode()


def publish(run_id: str, task: str, points: list[list[Any]]) -> None:
    """Publish ``points`` (``[name, value, step, timestamp]`` each) of a running step."""
    from ray.experimental import internal_kv

    # Keys sort in publishing order: the time, then the process (workers may restart).
    key = _prefix(run_id, task) + f"{time.time_ns():020d}-{os.getpid()}".encode()
    internal_kv._internal_kv_put(key, json.dumps(points), namespace=_NAMESPACE)


def take(run_id: str, task: str) -> list[list[Any]]:
    """The points published for ``task`` since the last take, oldest first; deletes them."""
    from ray.experimental import internal_kv

    keys = sorted(internal_kv._internal_kv_list(_prefix(run_id, task), namespace=_NAMESPACE))
    points: list[list[Any]] = []
    for key in keys:
        raw = internal_kv._internal_kv_get(key, namespace=_NAMESPACE)
        internal_kv._internal_kv_del(key, namespace=_NAMESPACE)
        if raw is not None:
            points.extend(json.loads(raw))
    return points


def delete_run(run_id: str) -> None:
    """Forget every point of run ``run_id`` that was published and not taken."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(_prefix(run_id), del_by_prefix=True, namespace=_NAMESPACE)
