"""The lineage store: which execution read and wrote which artifact or parameter.

Every run appends Parquet files under the lineage root (``RAYPIPE_LINEAGE_ROOT``, else
``$RAYPIPE_HOME/lineage``; any ``pyarrow.fs`` URI): tables ``runs``, ``executions``,
``attempts``, ``artifacts`` and ``events`` (:mod:`.schema`), one directory per table and
run, so concurrent runs never contend for a lock (:mod:`.store`). :class:`LineageWriter`
writes them (:mod:`.writer`); :func:`connect` gives a DuckDB connection with a view per
table, and :func:`upstream`, :func:`downstream`, :func:`executions` and :func:`runs_using`
answer the common questions (:mod:`.query`); :func:`compact` merges small files
(:mod:`.compact`); :func:`openlineage_events` exports a run as OpenLineage run events
(:mod:`.openlineage`). Users reach this as ``raypipe.lineage``.

Example:
    >>> import raypipe
    >>> model = result.tasks["train"].outputs["model"]          # doctest: +SKIP
    >>> rows = raypipe.lineage.upstream(model.uri)              # doctest: +SKIP
    >>> {r.task: r.component_digest for r in rows}              # doctest: +SKIP
    {'train': '9c1e03aa...', 'prepare': '51b2e7f0...'}
"""

from raypipe.tracking.lineage.compact import CompactionReport, TableCompaction, compact
from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.models import ExecutionRow, LineageRow, RunRow
from raypipe.tracking.lineage.openlineage import openlineage_events
from raypipe.tracking.lineage.query import (
    connect,
    downstream,
    executions,
    runs_using,
    sql,
    upstream,
)
from raypipe.tracking.lineage.schema import TABLES
from raypipe.tracking.lineage.writer import LineageWriter

__all__ = [
    "TABLES",
    "CompactionReport",
    "ExecutionRow",
    "LineageError",
    "LineageRow",
    "LineageWriter",
    "RunRow",
    "TableCompaction",
    "compact",
    "connect",
    "downstream",
    "executions",
    "openlineage_events",
    "runs_using",
    "sql",
    "upstream",
]
