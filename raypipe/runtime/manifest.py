"""A run's manifest: what ``raypipe resume`` needs to finish a run whose driver died.

Written when a run is submitted, under ``$RAYPIPE_HOME/runs/{run_id}/``: the pipeline's IR,
its arguments (parameters as JSON, in-memory arguments pickled beside it) and the run's
options; marked ended when the run ends. A manifest still marked running belongs to a run
whose driver never finished it.

Example:
    >>> manifest = RunManifest.load(home, "3f2a...")   # doctest: +SKIP
    >>> manifest.ended                                   # doctest: +SKIP
    False
"""

from __future__ import annotations

import os
import pickle
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import cloudpickle
from pydantic import BaseModel, ConfigDict, Field

from raypipe.errors import RaypipeError

__all__ = ["RunManifest", "RunNotResumableError", "manifest_dir"]


class RunNotResumableError(RaypipeError):
    """A run cannot be resumed: unknown here, or it already ended."""


def manifest_dir(home: str, run_id: str) -> Path:
    """Where a run's manifest lives."""
    return Path(home) / "runs" / run_id


class RunManifest(BaseModel):
    """How a run was started, enough to start it again under the same id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    run_name: str
    pipeline: str
    experiment: str
    spec: str = Field(description="the pipeline's IR as JSON")
    arguments: dict[str, Any] = Field(description="parameter arguments")
    pickled: list[str] = Field(
        default_factory=list, description="arguments kept in arguments.pkl (objects)"
    )
    artifact_root: str
    fail_fast: bool
    cache: bool
    started: datetime
    ended: bool = False
    status: str | None = None

    def save(self, home: str, objects: dict[str, Any] | None = None) -> None:
        """Write the manifest (and the pickled arguments), replacing any earlier one."""
        folder = manifest_dir(home, self.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        if objects:
            _write_atomic(folder / "arguments.pkl", cloudpickle.dumps(objects))
        _write_atomic(folder / "manifest.json", self.model_dump_json(indent=2).encode())

    def ended_as(self, home: str, status: str) -> None:
        """Mark the run ended (so it is not resumed) with its final status."""
        self.model_copy(update={"ended": True, "status": status}).save(home)

    def all_arguments(self, home: str) -> dict[str, Any]:
        """Parameters and the pickled in-memory arguments together."""
        values = dict(self.arguments)
        if self.pickled:
            data = (manifest_dir(home, self.run_id) / "arguments.pkl").read_bytes()
            values.update(pickle.loads(data))
        return values

    @classmethod
    def load(cls, home: str, run_id: str) -> RunManifest:
        """The manifest of ``run_id``.

        Raises:
            RunNotResumableError: no run with that id was started with this RAYPIPE_HOME.
        """
        path = manifest_dir(home, run_id) / "manifest.json"
        if not path.exists():
            raise RunNotResumableError(
                f"run {run_id}: no manifest at {path}; resume runs from the machine and "
                "RAYPIPE_HOME that started them"
            )
        return cls.model_validate_json(path.read_text())


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
