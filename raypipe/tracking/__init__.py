"""Trackers that record runs: MLflow (experiments, comparison) and lineage (Parquet + DuckDB).

Each is a :class:`~raypipe.runtime.events.RunObserver` fed by the run's event bus, off the
hot path. :func:`default_observers` builds the ones a run gets unless tracking is off
(``tracking=False`` or ``RAYPIPE_TRACKING=0``). MLflow records are written by a
background thread: :func:`flush` waits until MLflow has them all, and
:func:`find_mlflow_run` finds the MLflow run of a raypipe run.

Example:
    >>> config = RuntimeConfig.from_env()                            # doctest: +SKIP
    >>> observers = default_observers(config, experiment="churn")   # doctest: +SKIP
    >>> raypipe.tracking.flush(timeout=30)                           # doctest: +SKIP
    True
"""

from __future__ import annotations

from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.events import RunObserver
from raypipe.tracking.explain import CacheExplanation, explain
from raypipe.tracking.mlflow_tracker import MlflowTracker, find_mlflow_run
from raypipe.tracking.mlflow_writer import flush

__all__ = [
    "CacheExplanation",
    "MlflowTracker",
    "default_observers",
    "explain",
    "find_mlflow_run",
    "flush",
]


def default_observers(config: RuntimeConfig, *, experiment: str) -> list[RunObserver]:
    """The lineage store and MLflow, where ``config`` points them."""
    from raypipe.tracking.lineage import LineageWriter
    from raypipe.tracking.mlflow_tracker import MlflowTracker

    return [
        LineageWriter(config.lineage_root),
        MlflowTracker(config.mlflow_tracking_uri, experiment=experiment),
    ]
