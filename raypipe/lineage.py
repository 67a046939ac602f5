"""``raypipe.lineage``: query what each run read and wrote, from its Parquet lineage files.

Every tracked run records its executions, attempts, artifacts and every value a step read
or wrote under the lineage root (``RAYPIPE_LINEAGE_ROOT``, else ``$RAYPIPE_HOME/lineage``).
:func:`connect` returns a DuckDB connection with a view per table; the helpers answer the
common questions and return pydantic rows. DuckDB is imported on first use, not with
``raypipe``. See docs/lineage.md.

Example:
    >>> import raypipe
    >>> con = raypipe.lineage.connect()                                  # doctest: +SKIP
    >>> con.execute("SELECT task, state FROM executions WHERE run_id = ?", [run])  # doctest: +SKIP
    >>> raypipe.lineage.upstream(model_uri)                              # doctest: +SKIP
    >>> raypipe.lineage.downstream("/data/raw.csv")                      # doctest: +SKIP
    >>> raypipe.lineage.executions(run_id)                               # doctest: +SKIP
    >>> raypipe.lineage.runs_using("/data/raw.csv")                      # doctest: +SKIP
    >>> raypipe.lineage.compact()                                        # doctest: +SKIP
    >>> raypipe.lineage.openlineage_events(run_id)                       # doctest: +SKIP
"""

from raypipe.tracking.lineage import (
    TABLES,
    CompactionReport,
    ExecutionRow,
    LineageError,
    LineageRow,
    LineageWriter,
    RunRow,
    compact,
    connect,
    downstream,
    executions,
    openlineage_events,
    runs_using,
    sql,
    upstream,
)

__all__ = [
    "TABLES",
    "CompactionReport",
    "ExecutionRow",
    "LineageError",
    "LineageRow",
    "LineageWriter",
    "RunRow",
    "compact",
    "connect",
    "downstream",
    "executions",
    "openlineage_events",
    "runs_using",
    "sql",
    "upstream",
]
