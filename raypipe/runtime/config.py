"""Where a run keeps its files: ``RAYPIPE_HOME`` and the artifact root, read when a run starts.

Example:
    >>> RuntimeConfig.from_env(artifact_root="s3://bucket/raypipe").artifact_root
    's3://bucket/raypipe'
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["RuntimeConfig", "ray_task_events", "tracking_enabled"]


class RuntimeConfig(BaseModel):
    """Embedded defaults with a production counterpart for each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: str
    artifact_root: str
    lineage_root: str
    mlflow_tracking_uri: str

    @classmethod
    def from_env(cls, *, artifact_root: str | None = None) -> RuntimeConfig:
        """``RAYPIPE_HOME`` (default ``~/.raypipe``); artifacts under ``RAYPIPE_ARTIFACT_ROOT``
        (any ``pyarrow.fs`` URI), else ``$RAYPIPE_HOME/artifacts``; lineage under
        ``RAYPIPE_LINEAGE_ROOT``, else ``$RAYPIPE_HOME/lineage``; MLflow at
        ``MLFLOW_TRACKING_URI``, else a SQLite store ``$RAYPIPE_HOME/mlflow.db``."""
        home = Path(os.environ.get("RAYPIPE_HOME", "~/.raypipe")).expanduser().resolve()
        root = artifact_root or os.environ.get("RAYPIPE_ARTIFACT_ROOT") or str(home / "artifacts")
        lineage = os.environ.get("RAYPIPE_LINEAGE_ROOT") or str(home / "lineage")
        mlflow = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        return cls(
            home=str(home), artifact_root=root, lineage_root=lineage, mlflow_tracking_uri=mlflow
        )


def tracking_enabled(tracking: bool | None) -> bool:
    """Whether a run is tracked: ``tracking`` if given, else not ``RAYPIPE_TRACKING=0``."""
    if tracking is not None:
        return tracking
    return os.environ.get("RAYPIPE_TRACKING", "1").strip().lower() not in ("0", "false", "no")


def ray_task_events() -> bool:
    """Whether a run's step tasks send Ray their task events (what Ray's dashboard task
    list, ``ray list tasks`` and ``ray timeline`` show): yes, unless
    ``RAYPIPE_RAY_TASK_EVENTS=0``.

    Ray's driver buffers the events of every task it submits; without them a run of
    10,000 trivial steps grows the driver by about 1.4 KB a step less
    (``benchmarks/README.md``, w5). raypipe itself reads none of them.
    """
    return os.environ.get("RAYPIPE_RAY_TASK_EVENTS", "1").strip().lower() not in (
        "0",
        "false",
        "no",
    )
