"""Where lineage files live under a root, and how they are written, listed and removed.

Layout, per table::

    {root}/{table}/run_id={run_id}/part-v1-{token}-{seq}.parquet    what a run wrote
    {root}/{table}/run_id={run_id}/merged-v1-{token}-{seq}.parquet  a run's parts, merged
    {root}/{table}/compacted/merged-v1-{token}-{seq}.parquet        many runs, merged
    {root}/{table}/.../{token}.manifest.json                        a merge in progress

A run writes only into its own ``run_id=`` directories (Hive-style, so DuckDB skips other
runs' files without opening them), under names no one else uses, so concurrent runs never
share a file or take a lock. Each file appears whole: on a local root it is written under
a hidden temporary name and renamed; on an object store (``s3://``, ``gs://``) an object
is visible only once uploaded. A merge (:mod:`.compact`) first writes a manifest naming
the files it replaces and the files replacing them; :meth:`Listing.live` reads it so that
every row is seen once, whether the merge finished, is running, or died half way.

The root is a path or any ``pyarrow.fs`` URI; credentials may travel in it
(``s3://KEY:SECRET@bucket/lineage?endpoint_override=...``) and are never shown.

Example:
    >>> store = LineageStore("/tmp/lineage")
    >>> store.run_dir("executions", "3f2a")
    '/tmp/lineage/executions/run_id=3f2a'
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pyarrow import fs as pafs
from pydantic import BaseModel, ConfigDict, ValidationError

from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.schema import SCHEMA_VERSION, TABLES

__all__ = [
    "COMPACTED",
    "LineageStore",
    "Listing",
    "Manifest",
    "PartFile",
    "arrow_pool",
    "conform",
    "file_name",
    "new_token",
    "public_uri",
    "release_parquet_buffers",
]

COMPACTED = "compacted"  # the directory of files merged across runs, in each table's
_PARTITION = "run_id="
_SUFFIX = ".parquet"
_MANIFEST_SUFFIX = ".manifest.json"
_VERSION = re.compile(r"-v(\d+)-")
_FEW_DIRECTORIES = 16  # list more directories than this as one listing of the table
_METADATA = {b"raypipe.lineage.schema_version": str(SCHEMA_VERSION).encode()}


@dataclass(frozen=True)
class PartFile:
    """One Parquet file of a table: its path on the store's filesystem, run and size.

    ``run_id`` is None for a compacted file, which holds many runs.
    """

    table: str
    run_id: str | None
    path: str
    relative: str  # to the table's directory
    size: int
    mtime: datetime | None = None

    @property
    def schema_version(self) -> int | None:
        found = _VERSION.search(self.relative.rpartition("/")[2])
        return int(found.group(1)) if found else None


class Manifest(BaseModel):
    """A merge of files: which files it replaces and which replace them (relative to the
    table's directory). Written before the merged files appear, removed once the files it
    replaces are gone; readers use it to see each row exactly once meanwhile."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    inputs: list[str]
    outputs: list[str]
    rows: int
    created: datetime


@dataclass(frozen=True)
class Listing:
    """A table's files and manifests, as one listing found them."""

    files: list[PartFile]
    manifests: dict[str, Manifest]  # path -> manifest

    def live(self) -> list[PartFile]:
        """The files holding each row once: a finished merge hides the files it replaced;
        an unfinished one (its outputs not all there) hides the outputs it published."""
        present = {f.relative for f in self.files}
        hidden: set[str] = set()
        for manifest in self.manifests.values():
            if all(o in present for o in manifest.outputs):
                hidden.update(manifest.inputs)
            else:
                hidden.update(manifest.outputs)
        return [f for f in self.files if f.relative not in hidden]


class LineageStore:
    """The lineage files under one root (a local path or a ``pyarrow.fs`` URI).

    Raises:
        LineageError: the root cannot be opened (unknown scheme, bad URI, no credentials).
    """

    def __init__(self, root: str) -> None:
        location = root.strip()
        if not location:
            raise LineageError("lineage root is empty: give a path or a pyarrow.fs URI")
        self.uri = location if "://" in location else os.path.abspath(location)
        self.public_root = public_uri(self.uri)
        try:
            self.fs, path = pafs.FileSystem.from_uri(self.uri)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise LineageError(
                f"lineage root {self.public_root!r}: cannot be opened: {exc} "
                "(expected a local path or a pyarrow.fs URI such as s3://bucket/lineage)"
            ) from exc
        self.path: str = str(path).rstrip("/") or "/"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def table_dir(self, table: str) -> str:
        _check_table(table)
        return f"{self.path}/{table}"

    def run_dir(self, table: str, run_id: str) -> str:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise LineageError(f"run id {run_id!r} cannot name a lineage directory")
        return f"{self.table_dir(table)}/{_PARTITION}{run_id}"

    def compacted_dir(self, table: str) -> str:
        return f"{self.table_dir(table)}/{COMPACTED}"

    def write(self, table: str, directory: str, data: pa.Table, name: str) -> PartFile:
        """Write ``data`` as ``{directory}/{name}``, whole or not at all.

        Raises what the filesystem raises (``OSError``, ``pyarrow.ArrowException``).
        """
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), **_METADATA})

        def write_to(sink: Any) -> None:
            try:
                pq.write_table(data, sink, compression="zstd", memory_pool=arrow_pool())
            finally:
                release_parquet_buffers()

        return self.publish(table, directory, name, write_to)

    def publish(
        self, table: str, directory: str, name: str, write_to: Callable[[Any], None]
    ) -> PartFile:
        """Create ``{directory}/{name}`` with what ``write_to(stream)`` writes; readers see
        the whole file or none of it."""
        final = f"{directory}/{name}"
        self.fs.create_dir(directory, recursive=True)
        if not self.is_local:  # an object appears only once its upload completes
            with self.fs.open_output_stream(final) as sink:
                write_to(sink)
        else:
            temporary = f"{directory}/.{name}.{new_token()}.tmp"
            try:
                with self.fs.open_output_stream(temporary) as sink:
                    write_to(sink)
                self.fs.move(temporary, final)
            except BaseException:
                self._remove_quietly(temporary)
                raise
        size = self.fs.get_file_info(final).size or 0
        return self._part(table, final, size)

    def listing(self, table: str) -> Listing:
        """The table's Parquet files (sorted by path) and its merge manifests.

        Hidden and temporary files (a write in progress) are left out.

        Raises:
            LineageError: the table's directory cannot be listed.
        """
        selector = pafs.FileSelector(self.table_dir(table), recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except (pa.ArrowException, OSError) as exc:
            raise LineageError(
                f"lineage root {self.public_root!r}: cannot list table {table}: {exc}"
            ) from exc
        files: list[PartFile] = []
        manifests: dict[str, Manifest] = {}
        for info in infos:
            if info.type != pafs.FileType.File or info.base_name.startswith("."):
                continue
            if info.base_name.endswith(_MANIFEST_SUFFIX):
                manifest = self._read_manifest(info.path)
                if manifest is not None:
                    manifests[info.path] = manifest
            elif info.base_name.endswith(_SUFFIX):
                part = self._part(table, info.path, info.size or 0, info.mtime)
                if part.relative.count("/") == 1:  # {run_id=...|compacted}/{file}
                    files.append(part)
        return Listing(sorted(files, key=lambda f: f.path), manifests)

    def files(self, table: str) -> list[PartFile]:
        """The table's files holding each row exactly once (see :meth:`Listing.live`)."""
        return self.listing(table).live()

    def manifests(self, table: str, directories: set[str]) -> dict[str, Manifest]:
        """The merge manifests in ``directories`` (a listing of the whole table when
        there are many)."""
        if len(directories) > _FEW_DIRECTORIES:
            return self.listing(table).manifests
        found: dict[str, Manifest] = {}
        for directory in sorted(directories):
            selector = pafs.FileSelector(directory, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.base_name.endswith(_MANIFEST_SUFFIX) and not info.base_name.startswith("."):
                    manifest = self._read_manifest(info.path)
                    if manifest is not None:
                        found[info.path] = manifest
        return found

    def write_manifest(self, directory: str, manifest: Manifest, token: str) -> str:
        path = f"{directory}/{token}{_MANIFEST_SUFFIX}"
        text = manifest.model_dump_json(indent=1).encode()

        def write_to(sink: Any) -> None:
            sink.write(text)

        self.publish(manifest.table, directory, f"{token}{_MANIFEST_SUFFIX}", write_to)
        return path

    def read(self, part: PartFile) -> pa.Table:
        """One file's rows, in the table's current schema (columns it lacks are null)."""
        fragment = pads.ParquetFileFormat().make_fragment(part.path, filesystem=self.fs)
        try:
            data = fragment.to_table(use_threads=False, memory_pool=arrow_pool())
        finally:
            release_parquet_buffers()
        return conform(data, TABLES[part.table])

    def delete(self, paths: list[str]) -> None:
        """Remove files; one already gone is not an error."""
        for path in paths:
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:
                continue

    def part_of(self, table: str, path: str) -> PartFile | None:
        """Where ``path`` (a file under the table's directory) sits: its run, if any."""
        if not path.startswith(self.table_dir(table) + "/"):
            return None
        return self._part(table, path, 0)

    def relative_path(self, table: str, relative: str) -> str:
        return f"{self.table_dir(table)}/{relative}"

    def publish_file(self, table: str, directory: str, name: str, local: str) -> PartFile:
        """Move (local root) or upload (remote root) the local file ``local`` into place
        as ``{directory}/{name}``, whole or not at all."""
        if self.is_local:
            final = f"{directory}/{name}"
            self.fs.create_dir(directory, recursive=True)
            self.fs.move(local, final)
            return self._part(table, final, self.fs.get_file_info(final).size or 0)

        def write_to(sink: Any) -> None:
            with open(local, "rb") as source:
                while chunk := source.read(1 << 22):
                    sink.write(chunk)

        return self.publish(table, directory, name, write_to)

    def remove_dirs(self, directories: set[str], *, prefix: str) -> None:
        """Remove the subdirectories of ``directories`` whose names begin with ``prefix``,
        with all they hold."""
        for directory in sorted(directories):
            selector = pafs.FileSelector(directory, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix):
                    self.fs.delete_dir(info.path)

    def remove_empty_dirs(self, directories: set[str]) -> None:
        """Remove each of ``directories`` that holds nothing (a run's, once merged away)."""
        for directory in sorted(directories):
            selector = pafs.FileSelector(directory, allow_not_found=True)
            if not self.fs.get_file_info(selector):
                self.fs.delete_dir(directory)

    def rows(self, part: PartFile) -> int:
        """Rows in one file, from its footer."""
        with self.fs.open_input_file(part.path) as source:
            return int(pq.read_metadata(source).num_rows)

    def _part(self, table: str, path: str, size: int, mtime: datetime | None = None) -> PartFile:
        relative = path[len(self.table_dir(table)) + 1 :]
        folder = relative.partition("/")[0]
        run_id = folder[len(_PARTITION) :] if folder.startswith(_PARTITION) else None
        return PartFile(table, run_id, path, relative, size, mtime)

    def _read_manifest(self, path: str) -> Manifest | None:
        """A manifest, or None (with a warning) if it cannot be read: its merge then
        counts as unfinished only if its files say so."""
        try:
            with self.fs.open_input_stream(path) as source:
                return Manifest.model_validate_json(source.read())
        except (OSError, pa.ArrowException, ValidationError) as exc:
            warnings.warn(
                f"raypipe: lineage root {self.public_root!r}: merge manifest {path} "
                f"cannot be read ({exc}); ignoring it",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _remove_quietly(self, path: str) -> None:
        """Remove a temporary file after a failed write; the write's own error is raised."""
        try:
            self.fs.delete_file(path)
        except (pa.ArrowException, OSError):
            return  # nothing was left behind, or the filesystem is gone: the caller reports


def arrow_pool() -> pa.MemoryPool:
    """The memory pool of the lineage files' Arrow work (building, reading, writing,
    merging): the C library's allocator.

    Arrow's default pool (mimalloc or jemalloc) keeps what it freed for the thread that
    freed it; the writer works in short bursts on background threads of the driver, where
    that kept memory (tens of MB after merging a run's parts) would stay for nothing.
    """
    return pa.system_memory_pool()


def release_parquet_buffers() -> None:
    """Give back to the system what Parquet's own buffers left free in Arrow's default
    pool, on the thread that wrote or read the file.

    Parquet's writer and reader take their buffers from the default pool whatever pool
    they are given. Mimalloc, its usual backend, keeps the pages they freed for the
    thread that freed them, in 2 MB huge pages where the system allows them: writing one
    second of a 10,000-step run (about 1,300 steps) touched 8-12 MB of them for 0.5 MB of
    buffers, kept for as long as the process lived. Releasing after each file brings that
    back to the 2 MB the first file took, for under 0.1 ms a file. A default pool the user made
    the C library's allocator is left alone: releasing it (``malloc_trim``) would walk
    every heap of the process.
    """
    pool = pa.default_memory_pool()
    if pool.backend_name != "system":
        pool.release_unused()


def file_name(kind: str, token: str, seq: int) -> str:
    """A data file's name: ``{kind}-v{schema version}-{token}-{seq}.parquet``.

    Example:
        >>> file_name("part", "a1b2c3", 7)
        'part-v1-a1b2c3-000007.parquet'
    """
    return f"{kind}-v{SCHEMA_VERSION}-{token}-{seq:06d}{_SUFFIX}"


def new_token() -> str:
    """A short random token that keeps file names of different writers apart."""
    return uuid.uuid4().hex[:12]


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` with exactly ``schema``'s columns, in order: missing ones null, extra dropped.

    Files written by an older raypipe may lack newer columns; compaction and the
    benchmark read them through this.
    """
    columns = []
    for field in schema:
        if field.name in data.column_names:
            columns.append(data.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(data.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def public_uri(uri: str) -> str:
    """``uri`` without the user part (credentials) of a remote URI; paths unchanged.

    Example:
        >>> public_uri("s3://KEY:SECRET@bucket/lineage?region=us-east-1")
        's3://bucket/lineage?region=us-east-1'
    """
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, ""))


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise LineageError(f"no lineage table {table!r} (tables: {', '.join(TABLES)})")
