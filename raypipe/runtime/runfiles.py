"""A run's scratch files on each node: the stop flag steps check before starting, timeout dumps.

A step checks its run's stop flag with one ``os.path.exists`` (about 2 µs), so stopping a
run costs nothing per step until it is used. The flag lives on the node that runs the
step; the driver closes it on every node (a zero-CPU task pinned to each other node),
and a failing step closes it on its own node at once.

Example:
    >>> gate = RunFiles(run_dir("3f2a..."))  # doctest: +SKIP
    >>> gate.close()                      # doctest: +SKIP  (no step starts from now on)
    >>> is_closed(gate.path)              # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = [
    "STOP_FLAG",
    "RunFiles",
    "close_here",
    "dump_path",
    "is_closed",
    "read_node_file",
    "run_dir",
]

STOP_FLAG = "STOP"
_READ_TIMEOUT_S = 10.0


def run_dir(run_id: str, driver: str = "") -> str:
    """Where a run's scratch files live on every node (the driver's temp dir, by path).

    ``driver`` tells apart the drivers of one run: a resumed run gets its own folder, so
    that steps left running by the driver that died (Ray may let them finish) cannot stop
    the resumed run's steps with their stop flag.
    """
    name = f"{run_id}.{driver}" if driver else run_id
    return os.path.join(tempfile.gettempdir(), "raypipe-runs", name)


def is_closed(path: str) -> bool:
    """Whether the run whose scratch directory is ``path`` must not start new steps."""
    return os.path.exists(os.path.join(path, STOP_FLAG))


def close_here(path: str) -> None:
    """Close the stop flag on this node."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, STOP_FLAG), "w"):
        pass


def dump_path(path: str, task: str, attempt: int) -> str:
    """Where the timeout watchdog of a step's attempt writes the stuck step's traceback."""
    safe = task.replace("%", "%25").replace("/", "%2F")
    return os.path.join(path, "timeouts", f"{safe}.{attempt}")


def _remove_here(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _read_here(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _current_node() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # a Ray Client driver has no node of its own
        return None


@functools.cache
def _remote(fn: Callable[..., Any]) -> Any:
    import ray

    return ray.remote(fn)


def _on_node(node_id: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a zero-CPU task on the node ``node_id``; return its ObjectRef."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = _remote(fn).options(
        num_cpus=0,
        max_retries=0,
        name=f"raypipe.{fn.__name__.strip('_')}",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    )
    return remote.remote(*args)


def _other_nodes() -> list[str]:
    import ray

    here = _current_node()
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [n["NodeID"] for n in nodes if n.get("Alive") and n["NodeID"] != here]


def read_node_file(node_id: str, path: str) -> str | None:
    """The text of a small file on node ``node_id``, or None if it (or the node) is gone."""
    import ray

    if node_id == _current_node():
        return _read_here(path)
    try:
        text: str | None = ray.get(_on_node(node_id, _read_here, path), timeout=_READ_TIMEOUT_S)
    except Exception:  # the node died, or the task could not be placed in time
        return None
    return text


class RunFiles:
    """The driver's side of a run's scratch files: close the stop flag, clean up at the end."""

    def __init__(self, path: str) -> None:
        self.path = path  # see run_dir
        self.closed = False
        self._pending: list[Any] = []  # close_here tasks on other nodes

    def close(self) -> None:
        """Stop new steps from starting, on every node of the cluster (idempotent)."""
        if self.closed:
            return
        self.closed = True
        close_here(self.path)
        self._pending = [_on_node(node, close_here, self.path) for node in _other_nodes()]

    def cleanup(self, *, remote: bool) -> None:
        """Remove the run's files here, and on other nodes if ``remote`` or the flag was closed."""
        import ray

        _remove_here(self.path)
        if not (remote or self.closed):
            return
        if self._pending:  # let the flags land before removing them
            ray.wait(self._pending, num_returns=len(self._pending), timeout=_READ_TIMEOUT_S)
        for node in _other_nodes():
            _on_node(node, _remove_here, self.path)
