"""What a system's module provides to the worker: setup, one runnable per workload, versions.

Example:
    >>> runnable = Runnable(run=lambda: 41 + 1, value=lambda out: out)
    >>> runnable.value(runnable.run())
    42
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from peers.workloads import Size

__all__ = ["Runnable", "System", "start_local_ray"]


@dataclass(frozen=True)
class Runnable:
    """One workload ready to run: ``run`` is timed, ``value`` (untimed) maps its return
    value to what :func:`peers.workloads.check` expects (reading files back if need be)."""

    run: Callable[[], Any]
    value: Callable[[Any], Any]


class System(Protocol):
    """One system under test (raypipe, raw Ray, Prefect, ...)."""

    name: str
    packages: tuple[str, ...]  # distributions whose versions the report prints

    def setup(self, workdir: str) -> None:
        """Start what the system needs (a local Ray, a server...); untimed."""

    def build(self, workload: str, size: Size) -> Runnable:
        """The workload, written idiomatically for this system."""
        ...

    def teardown(self) -> None:
        """Stop what ``setup`` started."""


def start_local_ray(**options: Any) -> None:
    """A new local Ray for this process (never another agent's), workers up before timing.

    Same options for every Ray-based system: no dashboard (nobody looks at it here).
    """
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, **options)

    @ray.remote
    def _noop() -> None:
        return None

    cpus = int(ray.cluster_resources().get("CPU", 1))
    ray.get([_noop.remote() for _ in range(cpus)])
