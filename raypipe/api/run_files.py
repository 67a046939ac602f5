"""What the service shows of a run's files: its artifacts, their content, step logs and
attempt markers, lineage, and the outcome of each step of a run whose steps are not tracked.

Everything is read from the run's own records (the lineage store, the artifact root of its
manifest, and ``steps.json`` beside the manifest, which the executor writes when a run
without lineage ends), and a file is served only when it is an artifact the run recorded
*and* it lies under the artifact root (symbolic links resolved): no request can read
anything else.

Example:
    >>> files = RunFiles("3f2a...")                 # doctest: +SKIP
    >>> [a.uri for a in files.artifacts()]          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
from pyarrow import fs as pafs
from pydantic import BaseModel

from raypipe.api.store import NotFound
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.logs import find_attempt_files, find_logs, read_log
from raypipe.runtime.manifest import RunManifest, RunNotResumableError, manifest_dir
from raypipe.runtime.markers import MarkerRecord, parse_marker
from raypipe.runtime.result import RunResult, TaskResult

__all__ = ["ArtifactBody", "AttemptFiles", "LogBody", "RunFiles", "save_step_outcomes"]

STEP_OUTCOMES = "steps.json"  # beside the run's manifest


def save_step_outcomes(home: str, result: RunResult) -> None:
    """Keep how each step of an ended run went (no outputs), for a run without lineage.

    The service's executor calls it when a run whose steps are not tracked ends, so the
    page can still colour them; a tracked run's lineage holds the same and more.
    """
    folder = manifest_dir(home, result.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    steps = {
        name: task.model_dump(mode="json", exclude={"outputs"})
        for name, task in result.tasks.items()
    }
    temporary = folder / f".{STEP_OUTCOMES}.{os.getpid()}"
    temporary.write_bytes(json.dumps(steps).encode())
    os.replace(temporary, folder / STEP_OUTCOMES)  # readers see all of it or nothing


class ArtifactBody(BaseModel):
    """One file artifact a step of the run wrote (KFP's artifact fields, roughly)."""

    task: str
    output: str
    position: int | None
    uri: str
    type: str | None
    digest: str | None
    size: int | None
    metadata: dict[str, Any]


class LogBody(BaseModel):
    """A step's log file: one per attempt."""

    task: str
    attempt: int


class AttemptFiles(BaseModel):
    """The logs and attempt markers of a run's steps: ``{task: [(attempt, path), ...]}``."""

    logs: dict[str, list[tuple[int, str]]]
    markers: dict[str, list[tuple[int, str]]]


class RunFiles:
    """The files of one run (whose id the caller found in its namespace)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        config = RuntimeConfig.from_env()
        self._home = config.home
        self._lineage_root = config.lineage_root
        try:
            root = RunManifest.load(config.home, run_id).artifact_root
        except RunNotResumableError:  # not started yet: nothing written
            root = config.artifact_root
        self.root = root
        self.store = ArtifactStore(root)

    def artifacts(self) -> list[ArtifactBody]:
        """The artifacts the run's steps wrote, in the order they were recorded."""
        from raypipe.tracking.lineage.query import sql

        _, rows = sql(
            "SELECT execution_id, output, position, uri, type, digest, size, metadata "
            "FROM artifacts WHERE run_id = ? ORDER BY recorded_at, execution_id, output",
            [self.run_id],
            root=self._lineage_root,
        )
        prefix = f"{self.run_id}/"
        return [
            ArtifactBody(
                task=execution.removeprefix(prefix),
                output=output,
                position=position,
                uri=uri,
                type=kind,
                digest=digest,
                size=size,
                metadata=json.loads(metadata) if metadata else {},
            )
            for execution, output, position, uri, kind, digest, size, metadata in rows
        ]

    def lineage(self) -> dict[str, Any]:
        """The run's executions (every step, any state) and the artifacts they wrote."""
        from raypipe.tracking.lineage.query import executions

        steps = [
            row.model_dump(mode="json") for row in executions(self.run_id, root=self._lineage_root)
        ]
        return {
            "run_id": self.run_id,
            "executions": steps,
            "artifacts": [a.model_dump(mode="json") for a in self.artifacts()],
        }

    def read_artifact(self, uri: str) -> bytes:
        """The content of a file artifact of this run.

        Raises:
            NotFound: ``uri`` is not a file artifact of this run under the artifact root.
        """
        with self.open_artifact(uri) as stream:
            data: bytes = stream.read()
        return data

    def open_artifact(self, uri: str) -> pa.NativeFile:
        """A file artifact of this run opened for random access (a preview reads a part).

        Example:
            >>> with RunFiles(run_id).open_artifact(uri) as f:   # doctest: +SKIP
            ...     head = f.read(4096)

        Raises:
            NotFound: ``uri`` is not a file artifact of this run under the artifact root.
        """
        if uri not in {a.uri for a in self.artifacts()}:
            raise NotFound("artifact", uri)
        if self.store.is_local:
            path = os.path.realpath(self.store._path_of(uri))
            root = os.path.realpath(self.store.local_path)
            if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
                raise NotFound("artifact", uri)
            return pafs.LocalFileSystem().open_input_file(path)
        if not uri.startswith(self.store.public_root.rstrip("/") + "/"):
            raise NotFound("artifact", uri)
        filesystem, path = self.store._locate(uri)
        if filesystem.get_file_info(path).type != pafs.FileType.File:
            raise NotFound("artifact", uri)
        opened: pa.NativeFile = filesystem.open_input_file(path)
        return opened

    def attempt_files(self) -> AttemptFiles:
        """Every step's log files and attempt markers, from one listing."""
        found = find_attempt_files(self.root, self.run_id) or ({}, {})
        return AttemptFiles(logs=found[0], markers=found[1])

    def marker(self, path: str) -> MarkerRecord | None:
        """The record of an attempt marker listed by :meth:`attempt_files` (None if it is
        gone or not one)."""
        try:
            return parse_marker(read_log(self.root, path))
        except OSError:
            return None

    def step_outcomes(self) -> dict[str, TaskResult]:
        """How each step of an ended run without lineage went (see :func:`save_step_outcomes`);
        empty for other runs."""
        path = manifest_dir(self._home, self.run_id) / STEP_OUTCOMES
        try:
            found = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        return {name: TaskResult.model_validate(task) for name, task in found.items()}

    def logs(self) -> list[LogBody]:
        """The steps that wrote a log, one entry per attempt."""
        found = find_logs(self.root, self.run_id) or {}
        return [LogBody(task=t, attempt=n) for t, attempts in found.items() for n, _ in attempts]

    def log_text(self, task: str, attempt: int | None) -> str | None:
        """A step's log (its last attempt unless ``attempt``); None until it writes one.

        Raises:
            NotFound: the step has no such attempt's log.
        """
        attempts = (find_logs(self.root, self.run_id) or {}).get(task)
        if not attempts:
            return None
        chosen = (
            attempts[-1]
            if attempt is None
            else next((a for a in attempts if a[0] == attempt), None)
        )
        if chosen is None:
            raise NotFound("log", f"{task} attempt {attempt}")
        return read_log(self.root, chosen[1])
