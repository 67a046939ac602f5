"""The lineage writer: a run's events become rows, buffered and written as Parquet parts.

:class:`LineageWriter` is a :class:`~raypipe.runtime.events.RunObserver`. Rows collect in
memory and are written (one part per table and run) when ``flush_rows`` are waiting or
the oldest has waited ``flush_seconds``, by a background thread, so a driver killed with
``kill -9`` loses at most about a second of records; ``close`` writes the rest. A run
that wrote more than ``merge_parts`` parts of a table merges them into one when it
closes, one part at a time (:func:`~.compact.stream_tables`), then records its end: a
finished run leaves few files behind, and the merge holds one part in memory at a time.

A write that fails warns, naming the run, the table and the rows not written, and those
rows are tried again at the next flush; the run itself never fails because of it.

Example:
    >>> raypipe.run(pipeline, args, observers=[LineageWriter("/tmp/lineage")])  # doctest: +SKIP
    >>> raypipe.lineage.executions(run_id, root="/tmp/lineage")                # doctest: +SKIP
"""

from __future__ import annotations

import functools
import threading
import time
import warnings
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from raypipe.runtime.events import RunEnded, RunStarted, StepEnded
from raypipe.tracking.lineage.compact import merge, stream_tables
from raypipe.tracking.lineage.records import Row, run_row, step_rows
from raypipe.tracking.lineage.schema import TABLES
from raypipe.tracking.lineage.store import (
    LineageStore,
    PartFile,
    arrow_pool,
    file_name,
    new_token,
)

__all__ = ["LineageWriter"]

_CHUNK_ROWS = 512  # a table's waiting rows become Arrow columns this many at a time
_FINAL_ATTEMPTS = 3  # tries of the last flush, at close
_FINAL_BACKOFF_S = 0.2

Packed = tuple[Any, ...]  # a row's values in its table's column order
_COLUMNS = {table: tuple(schema.names) for table, schema in TABLES.items()}


class LineageWriter:
    """Records runs as Parquet files under ``root``: the lineage store's
    :class:`~raypipe.runtime.events.RunObserver`.

    Example:
        >>> writer = LineageWriter("/tmp/lineage")
        >>> writer.name
        'lineage'
        >>> raypipe.run(addition, {"a": 1, "b": 2}, observers=[writer])  # doctest: +SKIP

    Args:
        root: a local path or any ``pyarrow.fs`` URI (``s3://bucket/lineage``); may carry
            credentials (``s3://KEY:SECRET@bucket/...``), which are never shown.
        flush_rows: write a part once this many rows wait.
        flush_seconds: write a part once the oldest waiting row is this old.
        merge_parts: at close, merge a table's parts of the run into one if there are
            more than this many.

    Raises:
        LineageError: ``root`` cannot be opened.
    """

    name = "lineage"

    def __init__(
        self,
        root: str,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 1.0,
        merge_parts: int = 8,
    ) -> None:
        self.store = LineageStore(root)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.merge_parts = merge_parts
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # the newest rows wait as tuples in their table's column order (a third of a
        # dict's memory), the others as Arrow tables of each run (a third of the tuples')
        self._buffers: dict[str, list[Packed]] = {table: [] for table in TABLES}
        self._chunks: dict[str, dict[str, list[pa.Table]]] = {table: {} for table in TABLES}
        self._waiting = 0  # rows in the buffers and chunks
        self._oldest: float | None = None  # time.monotonic() of the oldest waiting row
        self._retry_at = 0.0  # after a failed flush, not before this
        self._token = new_token()
        self._seq = 0
        self._written: dict[tuple[str, str], list[PartFile]] = defaultdict(list)
        self._started: dict[str, RunStarted] = {}
        self._ended: list[Row] = []  # end-of-run rows, written at close (after merging)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flushing = threading.Lock()  # one flush at a time

    # -- RunObserver ---------------------------------------------------------------------

    def run_started(self, event: RunStarted) -> None:
        self._started[event.run_id] = event
        self._add({"runs": [run_row(event.run_id, event, None, _now())]})

    def step_ended(self, event: StepEnded) -> None:
        self._add(step_rows(event, _now()).by_table())

    def run_ended(self, event: RunEnded) -> None:
        row = run_row(event.run_id, self._started.pop(event.run_id, None), event, _now())
        with self._lock:
            self._ended.append(row)

    def flush(self) -> bool:
        """Write every waiting row now; False (with a warning naming what was not written)
        if some could not be, in which case they wait for the next flush."""
        return self._flush(final=False)

    def close(self) -> None:
        """Write every waiting row, merge the run's parts if there are many, then record
        the run's end. Failures warn, naming what was not written."""
        thread = self._thread
        if thread is not None:
            with self._lock:
                self._stopping = True
            self._wake.set()
            thread.join()
            self._thread = None
            self._stopping = False
        self._final_flush()
        self._merge_parts()
        with self._lock:
            ended, self._ended = self._ended, []
        if ended:
            self._add({"runs": ended}, start=False)
            self._final_flush()

    def _final_flush(self) -> None:
        """Flush, trying a few times before giving the rows up (with a warning)."""
        for attempt in range(_FINAL_ATTEMPTS):
            final = attempt == _FINAL_ATTEMPTS - 1
            if self._flush(final=final) or final:
                return
            time.sleep(_FINAL_BACKOFF_S * (attempt + 1))

    # -- buffering -----------------------------------------------------------------------

    def _add(self, rows: dict[str, list[Row]], *, start: bool = True) -> None:
        with self._lock:
            added = dropped = 0
            for table, table_rows in rows.items():
                buffer = self._buffers[table]
                buffer.extend(_pack(table_rows, _COLUMNS[table]))
                added += len(table_rows)
                if len(buffer) >= _CHUNK_ROWS:  # as columns: a third of the memory
                    self._buffers[table] = []
                    dropped += self._convert(table, buffer, self._chunks[table])
            self._waiting -= dropped
            if not added:
                return
            first = self._oldest is None
            if first:
                self._oldest = time.monotonic()
            self._waiting += added
            full = self._waiting >= self.flush_rows
        if start:
            self._ensure_thread()
            if first or full:  # the flusher sets its next deadline
                self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"raypipe-lineage-{self._token}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        """Flush when enough rows wait or the oldest has waited long enough."""
        while True:
            self._wake.clear()
            with self._lock:
                if self._stopping:
                    return
                due = None
                if self._oldest is not None:
                    due = max(self._oldest + self.flush_seconds, self._retry_at)
                    if self._waiting >= self.flush_rows:
                        due = self._retry_at
            now = time.monotonic()
            if due is not None and now >= due:
                self._flush(final=False)
                continue
            self._wake.wait(None if due is None else due - now)

    # -- writing -------------------------------------------------------------------------

    def _flush(self, *, final: bool) -> bool:
        """Write every waiting row, one part per table and run. Returns whether all were
        written; rows that were not go back to the buffer (and are reported)."""
        with self._flushing:
            with self._lock:
                taken, self._buffers = self._buffers, {table: [] for table in TABLES}
                chunks, self._chunks = self._chunks, {table: {} for table in TABLES}
                oldest, self._oldest, self._waiting = self._oldest, None, 0
                seq, self._seq = self._seq, self._seq + 1
            failed: dict[str, dict[str, pa.Table]] = {}
            problems: list[str] = []
            for table, rows in taken.items():
                by_run = chunks[table]
                self._convert(table, rows, by_run)
                for run_id, run_chunks in by_run.items():
                    data = pa.concat_tables(run_chunks) if len(run_chunks) > 1 else run_chunks[0]
                    problem = self._write(table, run_id, data, seq)
                    if problem is not None:
                        failed.setdefault(table, {})[run_id] = data
                        problems.append(problem)
            if not failed:
                return True
            with self._lock:
                for table, by_failed_run in failed.items():
                    for run_id, data in by_failed_run.items():
                        self._chunks[table].setdefault(run_id, []).insert(0, data)
                        self._waiting += data.num_rows
                if oldest is not None and (self._oldest is None or oldest < self._oldest):
                    self._oldest = oldest
                self._retry_at = time.monotonic() + self.flush_seconds
            what = "; ".join(problems)
            if final:
                warnings.warn(
                    f"raypipe: lineage at {self.store.public_root}: {what}. "
                    "These rows are lost for this run's lineage.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn(
                    f"raypipe: lineage at {self.store.public_root}: {what}. "
                    "Trying again at the next flush.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return False

    def _convert(self, table: str, rows: list[Packed], chunks: dict[str, list[pa.Table]]) -> int:
        """Add ``rows`` to ``chunks`` as an Arrow table of each run; the number of rows
        dropped (with a warning) because they do not fit the table."""
        by_run: dict[str, list[Packed]] = defaultdict(list)
        for row in rows:
            by_run[row[0]].append(row)  # run_id, every table's first column
        dropped = 0
        for run_id, run_rows in by_run.items():
            try:
                data = _arrow_table(run_rows, TABLES[table])
            except (pa.ArrowException, TypeError, ValueError) as exc:
                warnings.warn(  # a bug in raypipe: trying again would not help
                    f"raypipe: lineage at {self.store.public_root}: run {run_id}: "
                    f"{len(run_rows)} {table} rows do not fit the table and were "
                    f"dropped: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=4,
                )
                dropped += len(run_rows)
                continue
            chunks.setdefault(run_id, []).append(data)
        return dropped

    def _write(self, table: str, run_id: str, data: pa.Table, seq: int) -> str | None:
        """Write one part; None, or what went wrong."""
        try:
            part = self.store.write(
                table,
                self.store.run_dir(table, run_id),
                data,
                file_name("part", self._token, seq),
            )
        except Exception as exc:  # any filesystem error: retried, and reported
            return (
                f"run {run_id}: could not write {data.num_rows} {table} rows: "
                f"{type(exc).__name__}: {exc}"
            )
        self._written[(table, run_id)].append(part)
        return None

    def _merge_parts(self) -> None:
        """Merge the run's parts of a table into one file when there are many."""
        for (table, run_id), parts in list(self._written.items()):
            if len(parts) <= self.merge_parts:
                continue
            produce = functools.partial(stream_tables, self.store, table)
            try:
                merge(self.store, table, parts, self.store.run_dir(table, run_id), produce)
            except Exception as exc:  # nothing is lost: the parts stay as they were
                warnings.warn(
                    f"raypipe: lineage at {self.store.public_root}: run {run_id}: could not "
                    f"merge its {len(parts)} {table} parts ({type(exc).__name__}: {exc}); "
                    "they stay as they are (raypipe lineage compact merges them later)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            del self._written[(table, run_id)]


def _pack(rows: list[Row], columns: tuple[str, ...]) -> list[Packed]:
    """``rows`` as tuples in ``columns`` order (a missing key is null, an unknown one
    dropped)."""
    return [tuple(row.get(name) for name in columns) for row in rows]


def _arrow_table(rows: list[Packed], schema: pa.Schema) -> pa.Table:
    """Packed ``rows`` as a table of ``schema``, built column by column in the lineage
    files' memory pool."""
    pool = arrow_pool()
    columns = [
        pa.array([row[i] for row in rows], type=field.type, memory_pool=pool)
        for i, field in enumerate(schema)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _now() -> datetime:
    return datetime.now(timezone.utc)
