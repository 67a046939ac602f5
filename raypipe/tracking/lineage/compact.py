"""Merge small lineage files into big sorted ones, losing nothing: ``raypipe lineage compact``.

Each run writes a few small files per table (one every second or so while it runs).
:func:`compact` merges the files of every run that has ended (or that has written
nothing for ``idle_seconds``: a driver that died), and compacted files still below
``rows_per_file``, into large files under ``{table}/compacted/``, sorted by ``run_id``
so that DuckDB reads only the row groups of the runs a query names. Runs still going are
left alone, and so are their directories; the emptied directories of merged runs go.

A merge never loses or doubles a row, even if it dies half way (see :func:`merge`): it
checks that the merged files hold as many rows as the files they replace, writes a
manifest, publishes the merged files, and only then deletes what they replace. The
next compaction finishes (or undoes) a merge that died. Readers that listed the files
before a merge finished may fail to open a deleted file: connect again.

One compaction at a time per root: a second one refuses to start while the first one's
manifest is younger than ``idle_seconds``.

Example:
    >>> report = compact("/tmp/lineage")                 # doctest: +SKIP
    >>> [(t.table, t.files_before, t.files_after) for t in report.tables]  # doctest: +SKIP
    [('runs', 24, 1), ('executions', 31, 1), ...]
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.schema import TABLES
from raypipe.tracking.lineage.sources import sql_string, table_source
from raypipe.tracking.lineage.store import (
    LineageStore,
    Listing,
    Manifest,
    PartFile,
    arrow_pool,
    file_name,
    new_token,
    release_parquet_buffers,
)

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "SORT_KEYS",
    "CompactionReport",
    "TableCompaction",
    "compact",
    "merge",
    "merge_tables",
    "stream_tables",
]

SORT_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id", "recorded_at"),
    "executions": ("run_id", "execution_id"),
    "attempts": ("run_id", "execution_id", "attempt"),
    "artifacts": ("run_id", "uri"),
    "events": ("run_id", "execution_id", "direction", "name", "position"),
}
"""How each table's merged files are sorted: by run first, since every lookup of the
helpers names its runs (DuckDB then reads only the row groups of those runs)."""

ROWS_PER_FILE = 4_000_000
ROW_GROUP_ROWS = 20_000
IDLE_SECONDS = 3600.0
SCRATCH_PREFIX = ".merge-"
"""Begins the name of a merge's hidden scratch directory in a run's directory."""


class TableCompaction(BaseModel):
    """What compaction did to one table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    files_before: int
    files_after: int
    merged_files: int = 0  # files replaced
    rows_merged: int = 0
    bytes_before: int
    bytes_after: int
    runs_left: int = 0  # runs still going (or merging), not touched
    recovered: int = 0  # merges that had died half way, finished or undone


class CompactionReport(BaseModel):
    """What :func:`compact` did, table by table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str
    tables: list[TableCompaction]
    seconds: float

    def summary(self) -> str:
        lines = [f"compacted lineage at {self.root} in {self.seconds:.2f}s"]
        for t in self.tables:
            line = (
                f"  {t.table}: {t.files_before} -> {t.files_after} files "
                f"({_bytes(t.bytes_before)} -> {_bytes(t.bytes_after)}), "
                f"{t.rows_merged} rows merged from {t.merged_files} files"
            )
            if t.runs_left:
                line += f"; {t.runs_left} runs still going, left as they are"
            if t.recovered:
                line += f"; {t.recovered} interrupted merges completed"
            lines.append(line)
        return "\n".join(lines)


def compact(
    root: str | None = None,
    *,
    rows_per_file: int = ROWS_PER_FILE,
    row_group_rows: int = ROW_GROUP_ROWS,
    idle_seconds: float = IDLE_SECONDS,
) -> CompactionReport:
    """Merge the lineage files under ``root`` (default: ``RAYPIPE_LINEAGE_ROOT`` or
    ``$RAYPIPE_HOME/lineage``) into few large sorted files, keeping every row.

    Example:
        >>> print(compact().summary())                           # doctest: +SKIP
        compacted lineage at /home/me/.raypipe/lineage in 0.41s
          runs: 24 -> 1 files (31.2 KiB -> 9.8 KiB), 24 rows merged from 24 files
          ...

    Args:
        rows_per_file: the size of a merged file; merged files below it are merged again.
        row_group_rows: rows per Parquet row group (the unit DuckDB skips by statistics).
        idle_seconds: a run that has not ended is merged once it has written nothing for
            this long (its driver died); a merge manifest this old was left by a merge
            that died, and is finished or undone.

    Raises:
        LineageError: the root cannot be read or written, or another compaction is running.
    """
    import duckdb

    started = time.monotonic()
    store = LineageStore(root if root is not None else _default_root())
    stale = datetime.now(timezone.utc) - timedelta(seconds=idle_seconds)
    recovered = {t: _recover(store, t, store.listing(t), stale) for t in TABLES}
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        # Which runs ended, before listing their files: a run's writer is done with its
        # files once its end is recorded (it merges its own parts before that).
        runs_listing = store.listing("runs")
        ended = _ended_runs(con, store, runs_listing.live())
        reports = []
        for table in TABLES:
            listing = runs_listing if table == "runs" else store.listing(table)
            reports.append(
                _compact_table(
                    con,
                    store,
                    table,
                    listing,
                    ended,
                    stale,
                    rows_per_file,
                    row_group_rows,
                    recovered[table],
                )
            )
    finally:
        con.close()
    return CompactionReport(
        root=store.public_root, tables=reports, seconds=time.monotonic() - started
    )


def _compact_table(
    con: duckdb.DuckDBPyConnection,
    store: LineageStore,
    table: str,
    listing: Listing,
    ended: set[str],
    stale: datetime,
    rows_per_file: int,
    row_group_rows: int,
    recovered: int,
) -> TableCompaction:
    live = listing.live()
    busy = {
        part.run_id
        for path in listing.manifests
        if (part := store.part_of(table, path)) is not None and part.run_id is not None
    }
    by_run: dict[str, list[PartFile]] = defaultdict(list)
    for f in live:
        if f.run_id is not None:
            by_run[f.run_id].append(f)
    inputs: list[PartFile] = []
    left = 0
    for run_id, files in by_run.items():
        idle = all(f.mtime is not None and f.mtime < stale for f in files)
        if run_id not in busy and (run_id in ended or idle):
            inputs.extend(files)
        else:
            left += 1
    small = [f for f in live if f.run_id is None and store.rows(f) < rows_per_file]
    if inputs or len(small) > 1:
        inputs.extend(small)
    rows = 0
    if inputs:
        produce = functools.partial(
            _write_sorted,
            con,
            store,
            table,
            rows_per_file=rows_per_file,
            row_group_rows=row_group_rows,
        )
        rows = merge(store, table, inputs, store.compacted_dir(table), produce)
        run_dirs = {f.path.rpartition("/")[0] for f in inputs if f.run_id}
        store.remove_dirs(run_dirs, prefix=SCRATCH_PREFIX)  # a writer died merging its parts
        store.remove_empty_dirs(run_dirs)
    after = store.files(table)
    return TableCompaction(
        table=table,
        files_before=len(live),
        files_after=len(after),
        merged_files=len(inputs),
        rows_merged=rows,
        bytes_before=sum(f.size for f in live),
        bytes_after=sum(f.size for f in after),
        runs_left=left,
        recovered=recovered,
    )


def merge(
    store: LineageStore,
    table: str,
    inputs: list[PartFile],
    directory: str,
    produce: Callable[[str, list[PartFile]], list[str]],
) -> int:
    """Replace ``inputs`` by the files ``produce(local_dir, inputs)`` writes, in ``directory``.

    ``produce`` writes Parquet files into a local directory and returns their paths. The
    merged rows are counted against the inputs' before anything changes; then a manifest
    names inputs and outputs, the outputs are published, the inputs deleted, the manifest
    removed. Returns the number of rows merged.

    Raises:
        LineageError: the merged files would not hold exactly the inputs' rows, or another
            merge of some of the same files is in progress (nothing was changed).
    """
    rows_in = sum(store.rows(f) for f in inputs)
    token = new_token()
    with _scratch(store, directory, token) as scratch:
        written = produce(scratch, inputs)
        rows_out = sum(_local_rows(path) for path in written)
        if rows_out != rows_in:
            raise LineageError(
                f"lineage root {store.public_root!r}: merging {len(inputs)} files of "
                f"{table} gave {rows_out} rows instead of {rows_in}; nothing was changed"
            )
        names = [file_name("merged", token, i) for i in range(len(written))]
        relative_dir = directory[len(store.table_dir(table)) + 1 :]
        manifest = Manifest(
            table=table,
            inputs=[f.relative for f in inputs],
            outputs=[f"{relative_dir}/{n}" for n in names],
            rows=rows_in,
            created=datetime.now(timezone.utc),
        )
        manifest_path = store.write_manifest(directory, manifest, token)
        _claim(store, table, manifest_path, manifest, directory, inputs)
        published: list[str] = []
        try:
            for name, path in zip(names, written, strict=True):
                published.append(store.publish_file(table, directory, name, path).path)
        except BaseException:
            _undo(store, published, manifest_path)
            raise
    store.delete([f.path for f in inputs])
    store.delete([manifest_path])
    return rows_in


def merge_tables(store: LineageStore, table: str, out: str, files: list[PartFile]) -> list[str]:
    """``produce`` for :func:`merge` without DuckDB (bind ``store`` and ``table``): read
    ``files`` with pyarrow, sort, write one file. For files that fit in memory together."""
    import pyarrow.parquet as pq

    data = pa.concat_tables([store.read(f) for f in files])
    data = data.sort_by([(k, "ascending") for k in SORT_KEYS[table]])
    path = os.path.join(out, "merged-0.parquet")
    pq.write_table(data, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return [path]


def stream_tables(store: LineageStore, table: str, out: str, files: list[PartFile]) -> list[str]:
    """``produce`` for :func:`merge` that holds one file in memory at a time (bind
    ``store`` and ``table``): each of ``files``, read in turn, becomes a row group of one
    file, sorted by :data:`SORT_KEYS` within itself. For a run's own parts at its end
    (each at most the writer's ``flush_rows``), however long the run was; compaction
    sorts across them later.

    Writing each part as it comes keeps the driver's memory flat: gathering parts into
    larger row groups first (concatenating and sorting 20,000 rows at a time) grew a
    10,000-step run's driver by about 20-40 MB more, which Arrow's allocators keep.
    """
    import pyarrow.parquet as pq

    path = os.path.join(out, "merged-0.parquet")
    pool = arrow_pool()
    keys = [(k, "ascending") for k in SORT_KEYS[table]]
    schema = TABLES[table].remove_metadata()
    try:
        with pq.ParquetWriter(path, schema, compression="zstd", memory_pool=pool) as writer:
            for f in files:
                data = store.read(f)
                order = pc.sort_indices(data, sort_keys=keys, memory_pool=pool)
                data = pc.take(data, order, memory_pool=pool)
                writer.write_table(data, row_group_size=max(1, data.num_rows))
    finally:  # the writer's buffers: 4-5 MB kept after a 10,000-step run's merge, otherwise
        release_parquet_buffers()
    return [path]


# -- helpers -----------------------------------------------------------------------------


def _claim(
    store: LineageStore,
    table: str,
    manifest_path: str,
    manifest: Manifest,
    directory: str,
    inputs: list[PartFile],
) -> None:
    """Back off if another merge claims some of the same files (two compactions at once,
    or a compaction and a run merging its own parts).

    Each merge writes its manifest before looking for the others', so of two merges of
    the same files at least one sees the other, and backs off before publishing anything.
    """
    places = {directory, store.compacted_dir(table)}
    places.update(f.path.rpartition("/")[0] for f in inputs)
    mine = set(manifest.inputs)
    for path, other in store.manifests(table, places).items():
        if path != manifest_path and mine & set(other.inputs):
            store.delete([manifest_path])
            raise LineageError(
                f"lineage root {store.public_root!r}: another merge of the same {table} "
                f"files is in progress ({path}, since {other.created:%Y-%m-%d %H:%M:%S} "
                "UTC); nothing was changed"
            )


def _undo(store: LineageStore, published: list[str], manifest_path: str) -> None:
    """Remove what a failed merge published, then its manifest; if that fails too, the
    manifest (its outputs not all there) keeps them hidden until compaction cleans up."""
    try:
        store.delete(published)
        store.delete([manifest_path])
    except Exception as exc:  # the merge's own error is what the caller sees
        warnings.warn(
            f"raypipe: lineage root {store.public_root!r}: could not undo a failed merge "
            f"({exc}); its manifest {manifest_path} keeps the files hidden, and the next "
            "compaction removes them",
            RuntimeWarning,
            stacklevel=3,
        )


def _write_sorted(
    con: duckdb.DuckDBPyConnection,
    store: LineageStore,
    table: str,
    out: str,
    files: list[PartFile],
    *,
    rows_per_file: int,
    row_group_rows: int,
) -> list[str]:
    """``produce`` for :func:`merge` with DuckDB: sorted, split into files of at most
    ``rows_per_file`` rows; DuckDB spills to disk if the rows do not fit in memory."""
    source = table_source(con, store, table, files, partitioned=False)
    order = ", ".join(f"{k} NULLS FIRST" for k in SORT_KEYS[table])
    groups = max(1, rows_per_file // row_group_rows)
    target = os.path.join(out, "data")
    con.execute(
        f"COPY ({source} ORDER BY {order}) TO {sql_string(target)} (FORMAT parquet, "
        "COMPRESSION zstd, "
        f"ROW_GROUP_SIZE {row_group_rows}, ROW_GROUPS_PER_FILE {groups})"
    )
    return sorted(
        os.path.join(target, name) for name in os.listdir(target) if name.endswith(".parquet")
    )


def _recover(store: LineageStore, table: str, listing: Listing, stale: datetime) -> int:
    """Finish (outputs all there) or undo (some missing) merges whose manifest is older than
    ``stale``: their merge died. A younger one in ``compacted/`` means another compaction
    is running."""
    present = {f.relative for f in listing.files}
    recovered = 0
    for path, manifest in listing.manifests.items():
        if manifest.created >= stale:
            part = store.part_of(table, path)
            if part is not None and part.run_id is None:
                raise LineageError(
                    f"lineage root {store.public_root!r}: another compaction of {table} "
                    f"has been running since {manifest.created:%Y-%m-%d %H:%M:%S} UTC "
                    f"({path}); if it died, run compact again once that is "
                    "idle_seconds old, or pass a smaller idle_seconds"
                )
            continue
        if all(o in present for o in manifest.outputs):
            store.delete([store.relative_path(table, i) for i in manifest.inputs])
        else:
            store.delete([store.relative_path(table, o) for o in manifest.outputs if o in present])
        store.delete([path])
        recovered += 1
    return recovered


def _ended_runs(
    con: duckdb.DuckDBPyConnection, store: LineageStore, files: list[PartFile]
) -> set[str]:
    """Runs whose latest ``runs`` row says they ended."""
    source = table_source(con, store, "runs", files, partitioned=False)
    rows = con.execute(
        f"SELECT run_id FROM ({source}) GROUP BY run_id "
        "HAVING arg_max(status, recorded_at) <> 'RUNNING'"
    ).fetchall()
    return {str(r[0]) for r in rows}


@contextlib.contextmanager
def _scratch(store: LineageStore, directory: str, token: str) -> Iterator[str]:
    """A local directory for the merged files before they are published: hidden inside
    ``directory`` on a local root (so publishing is a rename), a temporary one otherwise."""
    if store.is_local:
        path = os.path.join(directory, f"{SCRATCH_PREFIX}{token}")
        os.makedirs(path)
    else:
        path = tempfile.mkdtemp(prefix=f"raypipe-merge-{token}-")
    try:
        yield path
    finally:
        try:
            shutil.rmtree(path)
        except OSError as exc:  # the merge itself is done (or failed and says so)
            warnings.warn(
                f"raypipe: could not remove the merge's scratch directory {path}: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )


def _local_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def _default_root() -> str:
    from raypipe.runtime.config import RuntimeConfig

    return RuntimeConfig.from_env().lineage_root


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
