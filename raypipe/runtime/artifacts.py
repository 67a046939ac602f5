"""The artifact store: file artifacts under one root addressed through ``pyarrow.fs``.

On a local root a step reads and writes the stored file directly. On a remote root
(``s3://``, ``gs://``, ``hdfs://``...) a step gets a local staging path: inputs are
downloaded before the call, outputs uploaded after it.

Layout: ``{root}/{pipeline}/{run_id}/{task}/{output}``.

Example:
    >>> store = ArtifactStore("/tmp/raypipe-artifacts")
    >>> store.output_uri("p", "run1", "train", "model")
    '/tmp/raypipe-artifacts/p/run1/train/model'
"""

from __future__ import annotations

import os
from pathlib import Path

from pyarrow import fs as pafs

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.runtime.result import ArtifactRecord

__all__ = ["ArtifactStore"]


class ArtifactStore:
    """Creates, stores and opens file artifacts under ``root`` (a path or ``pyarrow.fs`` URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self._fs, _ = pafs.FileSystem.from_uri(_as_uri(self.root))

    @property
    def is_local(self) -> bool:
        return isinstance(self._fs, pafs.LocalFileSystem)

    def output_uri(self, pipeline: str, run_id: str, task: str, output: str) -> str:
        return "/".join([self.root, pipeline, run_id, task, output])

    def new_output(self, cls: type[Artifact], name: str, uri: str, staging: Path) -> Artifact:
        """An empty output artifact whose ``path`` the step writes to."""
        if self.is_local:
            local = self._path_of(uri)
            Path(local).parent.mkdir(parents=True, exist_ok=True)
        else:
            local = str(staging / "out" / name)
            Path(local).parent.mkdir(parents=True, exist_ok=True)
        return cls(name=name, uri=uri, path=local)

    def commit_output(self, artifact: Artifact) -> ArtifactRecord:
        """Store what the step wrote (uploading it on a remote root) and describe it."""
        if not self.is_local and os.path.exists(artifact.path):
            target = self._path_of(artifact.uri)
            self._fs.create_dir(target.rpartition("/")[0], recursive=True)
            # copy_files copies a single file or a whole directory tree
            pafs.copy_files(artifact.path, target, destination_filesystem=self._fs)
        return ArtifactRecord(
            name=artifact.name,
            type=type(artifact).__name__,
            uri=artifact.uri,
            metadata=dict(artifact.metadata),
        )

    def open_input(self, record: ArtifactRecord, declared: str, staging: Path) -> Artifact:
        """An input artifact of the declared class whose ``path`` exists locally."""
        cls = ARTIFACT_TYPES.get(declared if declared != "Artifact" else record.type, Artifact)
        if self.is_local:
            local = self._path_of(record.uri)
        else:
            local = str(staging / "in" / record.name)
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            source = self._path_of(record.uri)
            info = self._fs.get_file_info(source)
            if info.type != pafs.FileType.NotFound:
                pafs.copy_files(source, local, source_filesystem=self._fs)
        return cls(name=record.name, uri=record.uri, metadata=dict(record.metadata), path=local)

    def artifact_from_record(self, record: ArtifactRecord) -> Artifact:
        """A user-facing artifact object for a record, with a local path where there is one."""
        cls = ARTIFACT_TYPES.get(record.type, Artifact)
        path = self._path_of(record.uri) if self.is_local else None
        return cls(name=record.name, uri=record.uri, metadata=dict(record.metadata), path=path)

    def _path_of(self, uri: str) -> str:
        _, path = pafs.FileSystem.from_uri(_as_uri(uri))
        return str(path)


def _as_uri(location: str) -> str:
    """pyarrow wants absolute local paths or URIs; accept relative paths too."""
    if "://" in location:
        return location
    return os.path.abspath(location)
