"""The artifact store: file artifacts under one root addressed through ``pyarrow.fs``.

On a local root a step reads and writes the stored file directly. On a remote root
(``s3://``, ``gs://``, ``hdfs://``...) a step gets a local staging path: inputs are
downloaded before the call, outputs uploaded after it.

Layout: ``{root}/{pipeline}/{run_id}/{task}/{output}``. A remote root's query options
(``?endpoint_override=...&region=...``) stay at the end of every artifact URI, so the URI
opens with ``pyarrow.fs.FileSystem.from_uri``; credentials in the root's user part
(``s3://KEY:SECRET@bucket/...``) are used by the store but left out of artifact URIs.

Example:
    >>> store = ArtifactStore("/tmp/raypipe-artifacts")
    >>> store.output_uri("p", "run1", "train", "model")
    '/tmp/raypipe-artifacts/p/run1/train/model'
    >>> store = ArtifactStore("s3://K:S@bucket/arts?region=us-east-1")  # doctest: +SKIP
    >>> store.output_uri("p", "run1", "train", "model")  # doctest: +SKIP
    's3://bucket/arts/p/run1/train/model?region=us-east-1'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pyarrow import fs as pafs

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.runtime.result import ArtifactRecord

__all__ = ["IMPORTED_DIR", "ArtifactStore", "content_digest"]

IMPORTED_DIR = ".imported"  # under a local root: copies of imported remote artifacts


class ArtifactStore:
    """Creates, stores and opens file artifacts under ``root`` (a path or ``pyarrow.fs`` URI)."""

    def __init__(self, root: str) -> None:
        self.root = _normalise(root)
        self._fs, root_path = pafs.FileSystem.from_uri(_as_uri(self.root))
        self._root_path: str = str(root_path).rstrip("/")
        # A remote root's URI without credentials or query, and its query: artifact URIs are
        # "{base}/{pipeline}/{run}/{task}/{output}?{query}".
        self._base, self._query = _public_base_and_query(self.root)

    @property
    def public_root(self) -> str:
        """The root as it may be shown and stored: without credentials."""
        if self.is_local:
            return self.root
        return f"{self._base}?{self._query}" if self._query else self._base

    @property
    def is_local(self) -> bool:
        return isinstance(self._fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> str:
        """The root as a local filesystem path (a local root may be a ``file://`` URI)."""
        assert self.is_local, f"{self.public_root} is not a local root"
        return self._root_path or "/"

    def output_uri(self, pipeline: str, run_id: str, task: str, output: str) -> str:
        return self.uri(pipeline, run_id, task, output)

    def uri(self, *parts: str) -> str:
        """The URI of ``parts`` joined under the root (with the root's query, if any)."""
        if self.is_local:
            return "/".join([self.root, *parts])
        uri = "/".join([self._base, *parts])
        return f"{uri}?{self._query}" if self._query else uri

    def exists(self, uri: str) -> bool:
        """Whether a file or directory is stored at ``uri``."""
        filesystem, path = self._locate(uri)
        return bool(filesystem.get_file_info(path).type != pafs.FileType.NotFound)

    def read_bytes(self, uri: str) -> bytes | None:
        """The content of the file at ``uri``; None if there is none."""
        filesystem, path = self._locate(uri)
        try:
            with filesystem.open_input_stream(path) as stream:
                data: bytes = stream.read()
                return data
        except FileNotFoundError:
            return None

    def write_bytes_atomic(self, uri: str, data: bytes) -> None:
        """Store ``data`` at ``uri`` so that readers see the whole file or none of it.

        Locally through a temporary name and a rename; object stores publish a PUT whole.
        """
        filesystem, path = self._locate(uri)
        filesystem.create_dir(path.rpartition("/")[0], recursive=True)
        target = path
        if self.is_local or isinstance(filesystem, pafs.LocalFileSystem):
            target = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with filesystem.open_output_stream(target) as stream:
            stream.write(data)
        if target != path:
            filesystem.move(target, path)

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
        """Store what the step wrote (uploading it on a remote root) and describe it.

        An artifact at a local path outside the root (``dsl.importer`` of a local file)
        stays where it is; one at a remote URI gets no digest (it is not read).
        """
        if not self.is_local and os.path.exists(artifact.path) and _local(artifact.uri) is None:
            filesystem, target = self._locate(artifact.uri)
            filesystem.create_dir(target.rpartition("/")[0], recursive=True)
            # copy_files copies a single file or a whole directory tree
            pafs.copy_files(artifact.path, target, destination_filesystem=filesystem)
        digest, size = content_digest(artifact.path)
        return ArtifactRecord(
            name=artifact.name,
            type=type(artifact).__name__,
            uri=artifact.uri,
            metadata=dict(artifact.metadata),
            digest=digest,
            size=size,
        )

    def open_input(self, record: ArtifactRecord, declared: str, staging: Path) -> Artifact:
        """An input artifact of the declared class whose ``path`` exists locally."""
        cls = ARTIFACT_TYPES.get(declared if declared != "Artifact" else record.type, Artifact)
        at = _local(record.uri)
        if at is not None:  # under a local root, or imported from a local path: read it there
            local = self._path_of(record.uri) if self.is_local else at
        elif self.is_local:  # imported from a remote URI: one shared copy under the root
            local = self._imported_copy(record)
        else:
            # One folder per URI: two upstream outputs of the same name must not collide.
            key = hashlib.sha256(record.uri.encode()).hexdigest()[:16]
            local = str(staging / "in" / key / record.name)
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            filesystem, source = self._locate(record.uri)
            info = filesystem.get_file_info(source)
            if info.type != pafs.FileType.NotFound:
                pafs.copy_files(source, local, source_filesystem=filesystem)
        return cls(name=record.name, uri=record.uri, metadata=dict(record.metadata), path=local)

    def artifact_from_record(self, record: ArtifactRecord) -> Artifact:
        """A user-facing artifact object for a record, with a local path where there is one."""
        cls = ARTIFACT_TYPES.get(record.type, Artifact)
        path = self._path_of(record.uri) if self.is_local and _local(record.uri) else None
        return cls(name=record.name, uri=record.uri, metadata=dict(record.metadata), path=path)

    def _imported_copy(self, record: ArtifactRecord) -> str:
        """A local copy of a remote artifact outside this (local) root, downloaded once:
        ``{root}/.imported/{sha256(uri)[:16]}/{name}``."""
        key = hashlib.sha256(record.uri.encode()).hexdigest()[:16]
        folder = os.path.join(self.local_path, IMPORTED_DIR, key)
        local = os.path.join(folder, record.name or "artifact")
        if os.path.exists(local):
            return local
        filesystem, source = pafs.FileSystem.from_uri(record.uri)
        partial = f"{folder}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.makedirs(partial)
        try:
            pafs.copy_files(
                source, os.path.join(partial, os.path.basename(local)), source_filesystem=filesystem
            )
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            try:
                os.rename(partial, folder)  # whole, or not at all
            except OSError:  # another step downloaded it first
                if not os.path.exists(local):
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return local

    def step_files(self, task_uri: str, staging: Path) -> StepOutputFiles:
        """The running step's view of its output location (``dsl.get_uri``)."""
        return StepOutputFiles(self, task_uri, staging)

    def _path_of(self, uri: str) -> str:
        return self._locate(uri)[1]

    def _locate(self, uri: str) -> tuple[Any, str]:
        """The filesystem and path of ``uri``: this root's own for URIs under it.

        URIs under a remote root resolve without building a new filesystem (which could
        lack the root's credentials, or ask the network for a bucket's region).
        """
        if not self.is_local:
            base, _ = _public_base_and_query(uri)
            if base == self._base or base.startswith(self._base + "/"):
                return self._fs, self._root_path + base[len(self._base) :]
        filesystem, path = pafs.FileSystem.from_uri(_as_uri(uri))
        return filesystem, str(path)


class StepOutputFiles:
    """``dsl.get_uri`` and local paths for the artifacts a step builds and returns.

    ``task_uri`` is the URI of the step's ``Output``; URIs under it get a local path:
    the file itself on a local root, a staged file (uploaded on commit) on a remote one.
    """

    def __init__(self, store: ArtifactStore, task_uri: str, staging: Path) -> None:
        self._store, self._task_uri, self._staging = store, task_uri, staging

    def task_uri(self, suffix: str) -> str:
        return f"{self._task_uri}/{suffix.lstrip('/')}" if suffix else self._task_uri

    def local_path(self, uri: str) -> str | None:
        if uri != self._task_uri and not uri.startswith(self._task_uri + "/"):
            return None
        if self._store.is_local:
            local = self._store._path_of(uri)
        else:
            relative = uri[len(self._task_uri) :].lstrip("/")
            local = str(self._staging / "returned" / "Output" / relative)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        return local


def content_digest(path: str) -> tuple[str | None, int | None]:
    """sha256 and size in bytes of a file, or of a directory tree (names and contents);
    (None, None) when nothing is there.

    Example:
        >>> content_digest("/no/such/file")
        (None, None)
    """
    if os.path.isfile(path):
        files = [(os.path.basename(path), path)]
    elif os.path.isdir(path):
        files = sorted(
            (os.path.relpath(os.path.join(d, f), path), os.path.join(d, f))
            for d, _, names in os.walk(path)
            for f in names
        )
    else:
        return None, None
    digest, size = hashlib.sha256(), 0
    for name, full in files:
        if len(files) > 1 or os.path.isdir(path):
            digest.update(name.encode() + b"\0")
        with open(full, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


def _local(uri: str) -> str | None:
    """The local path of a path or ``file://`` URI; None for other URIs."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    return parts.path if parts.scheme == "file" else None


def _normalise(root: str) -> str:
    """Drop trailing slashes of the path (not of a URI's query)."""
    location, mark, query = root.partition("?")
    return (location.rstrip("/") or "/") + mark + query


def _public_base_and_query(uri: str) -> tuple[str, str]:
    """``scheme://host/path`` without user info or trailing slash, and the query."""
    if "://" not in uri:
        return uri.rstrip("/"), ""
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")), parts.query


def _as_uri(location: str) -> str:
    """pyarrow wants absolute local paths or URIs; accept relative paths too."""
    if "://" in location:
        return location
    return os.path.abspath(location)
