"""Where a run keeps its files: ``RAYPIPE_HOME`` and the artifact root, read when a run starts.

Example:
    >>> RuntimeConfig.from_env(artifact_root="s3://bucket/raypipe").artifact_root
    's3://bucket/raypipe'
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["RuntimeConfig"]


class RuntimeConfig(BaseModel):
    """Embedded defaults with a production counterpart for each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: str
    artifact_root: str

    @classmethod
    def from_env(cls, *, artifact_root: str | None = None) -> RuntimeConfig:
        """``RAYPIPE_HOME`` (default ``~/.raypipe``); artifacts under ``RAYPIPE_ARTIFACT_ROOT``
        (any ``pyarrow.fs`` URI), else ``$RAYPIPE_HOME/artifacts``."""
        home = Path(os.environ.get("RAYPIPE_HOME", "~/.raypipe")).expanduser().resolve()
        root = artifact_root or os.environ.get("RAYPIPE_ARTIFACT_ROOT") or str(home / "artifacts")
        return cls(home=str(home), artifact_root=root)
