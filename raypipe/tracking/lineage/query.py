"""Reading lineage: a DuckDB connection with a view per table, and the common questions.

:func:`connect` lists the live files of every table (see
:meth:`~raypipe.tracking.lineage.store.Listing.live`) and returns an in-memory DuckDB
connection with these views:

=============== ===========================================================================
runs            one row per run, its latest state (``runs_history`` has every row)
executions      one row per step that ended, any state
attempts        one row per try of a step
artifacts       one row per file artifact written
events          one row per value a step read (``input``) or wrote (``output``)
edges           input events with the execution and output that produced them:
                ``source_execution_id``, ``source_output`` -> ``execution_id``, ``name``
=============== ===========================================================================

A connection sees the files that existed when it was made; connect again to see newer
runs. The helpers answer the common questions and return pydantic rows
(:mod:`.models`): :func:`upstream`, :func:`downstream`, :func:`executions`,
:func:`runs_using`. Each takes ``root=`` (default ``RAYPIPE_LINEAGE_ROOT`` or
``$RAYPIPE_HOME/lineage``) or an open ``connection=``.

Example:
    >>> con = connect()                                                    # doctest: +SKIP
    >>> con.sql("SELECT state, count(*) FROM executions GROUP BY 1").fetchall()  # doctest: +SKIP
    [('SUCCEEDED', 12), ('SKIPPED', 2)]
    >>> [r.task for r in upstream("/home/me/.raypipe/artifacts/p/3f2a/train/model")
    ...  if r.name is None or r.kind == "artifact"]                      # doctest: +SKIP
    ['train', 'prepare']
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.models import ExecutionRow, LineageRow, RunRow
from raypipe.tracking.lineage.records import parameter_json
from raypipe.tracking.lineage.schema import TABLES
from raypipe.tracking.lineage.sources import (
    VIEWS,
    register_files,
    scoped_source,
    sql_list,
    sql_string,
    table_source,
)
from raypipe.tracking.lineage.store import LineageStore

if TYPE_CHECKING:
    import duckdb

__all__ = ["connect", "downstream", "executions", "runs_using", "sql", "upstream"]

_RowT = TypeVar("_RowT", bound=BaseModel)
_RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")  # raypipe run ids: uuid4 hex
_MAX_DEPTH = 100_000

_RUNS_VIEW = """
CREATE VIEW runs AS
SELECT * EXCLUDE (recorded_at) FROM runs_history
QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY recorded_at DESC) = 1
"""

_EDGES_VIEW = """
CREATE VIEW edges AS
SELECT e.run_id,
       coalesce(e.producer_execution_id, a.execution_id) AS source_execution_id,
       coalesce(e.producer_output, a.output) AS source_output,
       e.execution_id, e.name, e.position, e.kind, e.uri, e.value, e.digest, e.size
FROM events e
LEFT JOIN artifacts a
  ON e.producer_execution_id IS NULL AND e.kind = 'artifact' AND a.uri = e.uri
WHERE e.direction = 'input'
  AND coalesce(e.producer_execution_id, a.execution_id) IS NOT NULL
"""


def connect(root: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view over each lineage table under ``root``.

    Example:
        >>> con = raypipe.lineage.connect()                               # doctest: +SKIP
        >>> con.sql("SELECT run_name, status FROM runs ORDER BY start_time").df()  # doctest: +SKIP

    Args:
        root: a local path or ``pyarrow.fs`` URI; default ``RAYPIPE_LINEAGE_ROOT``, else
            ``$RAYPIPE_HOME/lineage``. An empty or missing root gives empty views.

    Raises:
        LineageError: the root cannot be opened or listed.
    """
    import duckdb

    store = LineageStore(root if root is not None else _default_root())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET parquet_metadata_cache = true")  # file names are never reused
        files = {table: store.files(table) for table in TABLES}
        for table, found in files.items():
            con.execute(f"CREATE VIEW {VIEWS[table]} AS {table_source(con, store, table, found)}")
        register_files(con, store, files)
        con.execute(_RUNS_VIEW)
        con.execute(_EDGES_VIEW)
    except duckdb.Error as exc:
        con.close()
        raise LineageError(
            f"lineage root {store.public_root!r}: cannot open its files: {exc}"
        ) from exc
    except BaseException:
        con.close()
        raise
    return con


def sql(
    query: str,
    parameters: Sequence[Any] | None = None,
    *,
    root: str | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one SQL query over the lineage views: (column names, rows).

    Example:
        >>> sql("SELECT count(*) AS n FROM executions")    # doctest: +SKIP
        (['n'], [(14,)])

    Raises:
        LineageError: the query is wrong (naming the query and DuckDB's message).
    """
    with _connection(root, connection) as con:
        names, rows = _run(con, query, parameters, what="query")
    return names, rows


def upstream(
    uri: str,
    *,
    root: str | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[LineageRow]:
    """Everything upstream of the artifact at ``uri``: each execution that led to it (its
    component and code digest) and every input it read (artifacts with digest and size,
    parameters with their value, in-memory objects), back to the pipeline's arguments and
    to data from outside. Crosses runs when a run read an artifact another run wrote.

    Rows come in order of ``depth`` (0: the execution that wrote ``uri``), then task and
    input name; an execution that read nothing has one row with ``name`` None. Empty if no
    recorded step wrote ``uri``.

    Example:
        >>> for r in upstream(result.tasks["train"].outputs["model"].uri):   # doctest: +SKIP
        ...     print(r.depth, r.task, r.component_digest[:8], r.name, r.uri or r.value)
        0 train 9c1e03aa data /home/me/.raypipe/artifacts/p/3f2a/prepare/data
        0 train 9c1e03aa lr 0.1
        1 prepare 51b2e7f0 rows 1000
    """
    with _connection(root, connection) as con:
        found: list[LineageRow] = []
        seen: set[str] = set()
        seeds = {(eid, 0) for _, eid, _ in _writers(con, [uri])}
        while seeds:
            runs = {_run_of(eid) for eid, _ in seeds}
            rows = _fetch(
                con, LineageRow, _walk_sql(con, runs, seeds, up=True), what="upstream walk"
            )
            rows = [r for r in rows if r.execution_id not in seen]
            seen.update(r.execution_id for r in rows)
            outside = {
                r.uri: r.depth
                for r in rows
                if r.kind == "artifact" and r.uri and r.source_execution_id is None
            }
            writers = _writers(con, list(outside)) if outside else []
            by_uri = {u: (eid, out) for u, eid, out in writers}
            rows = [
                r.model_copy(
                    update={
                        "source_execution_id": by_uri[r.uri][0],
                        "source_output": by_uri[r.uri][1],
                    }
                )
                if r.uri in by_uri and r.source_execution_id is None and r.kind == "artifact"
                else r
                for r in rows
            ]
            found.extend(rows)
            seeds = {(eid, outside[u] + 1) for u, eid, _ in writers if eid not in seen}
    return sorted(found, key=_order)


def downstream(
    uri: str,
    *,
    root: str | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[LineageRow]:
    """Everything downstream of the artifact (or dataset) at ``uri``: each execution that
    read it, directly or through what other steps made of it, with every output each of
    them wrote. Crosses runs when a run read an artifact another run wrote.

    Rows come in order of ``depth`` (0: the executions that read ``uri``), then task and
    output name; an execution that wrote nothing has one row with ``name`` None.

    Example:
        >>> [(r.depth, r.task, r.name) for r in downstream("/data/raw.csv")]  # doctest: +SKIP
        [(0, 'prepare', 'data'), (1, 'train', 'model'), (2, 'evaluate', 'Output')]
    """
    with _connection(root, connection) as con:
        found: list[LineageRow] = []
        seen: set[str] = set()
        seeds = {(eid, 0) for eid in _readers(con, {uri: 0}, exclude_runs=set())}
        while seeds:
            runs = {_run_of(eid) for eid, _ in seeds}
            rows = _fetch(
                con, LineageRow, _walk_sql(con, runs, seeds, up=False), what="downstream walk"
            )
            rows = [r for r in rows if r.execution_id not in seen]
            seen.update(r.execution_id for r in rows)
            found.extend(rows)
            written = {r.uri: r.depth for r in rows if r.kind == "artifact" and r.uri is not None}
            readers = _readers(con, written, exclude_runs={_run_of(e) for e in seen})
            seeds = {(eid, d + 1) for eid, d in readers.items() if eid not in seen}
    return sorted(found, key=_order)


def executions(
    run_id: str,
    *,
    root: str | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[ExecutionRow]:
    """The executions of one run (every step, whatever its state), in order of start.

    A resumed run records again, as ``CACHED``, the steps its first session finished;
    each step's latest record is returned (the ``executions`` view keeps them all).

    Example:
        >>> [(e.task, e.state) for e in executions(result.run_id)]   # doctest: +SKIP
        [('add', 'SUCCEEDED'), ('add-2', 'SUCCEEDED')]
    """
    with _connection(root, connection) as con:
        return _fetch(
            con,
            ExecutionRow,
            "SELECT * FROM executions WHERE run_id = ? QUALIFY row_number() OVER "
            "(PARTITION BY execution_id ORDER BY recorded_at DESC) = 1 "
            "ORDER BY start_time NULLS LAST, task",
            what="executions",
            parameters=[run_id],
        )


def runs_using(
    value: Any,
    *,
    root: str | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[RunRow]:
    """The runs in which some step read ``value``: an artifact URI, a content digest
    (sha256 of an artifact, or of a parameter's JSON), or a parameter value.

    Example:
        >>> [r.run_name for r in runs_using("/data/raw.csv")]   # doctest: +SKIP
        ['churn-20260101-101500', 'churn-20260102-093012']
        >>> len(runs_using(0.01))                               # a learning rate   # doctest: +SKIP
        3
    """
    _, digest, _ = parameter_json(value)
    if isinstance(value, str):
        where = "uri = $value OR digest = $value OR digest = $digest"
        parameters: dict[str, Any] = {"value": value, "digest": digest}
    else:
        where = "digest = $digest"
        parameters = {"digest": digest}
    query = (
        "SELECT * FROM runs WHERE run_id IN (SELECT run_id FROM events "
        f"WHERE direction = 'input' AND ({where})) ORDER BY start_time, run_id"
    )
    with _connection(root, connection) as con:
        return _fetch(con, RunRow, query, what="runs_using", parameters=parameters)


# -- the walk ----------------------------------------------------------------------------


def _walk_sql(
    con: duckdb.DuckDBPyConnection, runs: set[str], seeds: set[tuple[str, int]], *, up: bool
) -> str:
    """One recursive query: from ``seeds`` (execution id, depth) along the edges inside
    ``runs``, up (to producers) or down (to consumers); one row per execution reached and
    input read (up) or output written (down). Reads only those runs' files. A step
    recorded twice (a resumed run serves again what its first session finished) counts
    as its latest record."""
    events = scoped_source(con, "events", runs)
    artifacts = scoped_source(con, "artifacts", runs)
    executions = scoped_source(con, "executions", runs)
    values = ", ".join(f"({sql_string(e)}, {d})" for e, d in sorted(seeds))
    if up:
        step = (
            "SELECT i.source_execution_id, w.depth + 1 FROM walk w "
            "JOIN inputs i ON i.execution_id = w.execution_id "
            f"WHERE i.source_execution_id IS NOT NULL AND w.depth < {_MAX_DEPTH}"
        )
        listed = (
            "SELECT execution_id, 'input' AS direction, name, position, kind, uri, "
            "artifact_type, value, digest, size, object_type, source_execution_id, "
            "source_output FROM inputs"
        )
    else:
        step = (
            "SELECT i.execution_id, w.depth + 1 FROM walk w "
            "JOIN inputs i ON i.source_execution_id = w.execution_id "
            f"WHERE w.depth < {_MAX_DEPTH}"
        )
        listed = (
            "SELECT execution_id, direction, name, position, kind, uri, artifact_type, "
            "value, digest, size, object_type, NULL AS source_execution_id, "
            "NULL AS source_output FROM run_events WHERE direction = 'output'"
        )
    return f"""
WITH RECURSIVE
run_executions AS MATERIALIZED (
    SELECT * FROM ({executions})
    QUALIFY row_number() OVER (PARTITION BY execution_id ORDER BY recorded_at DESC) = 1
),
run_events AS MATERIALIZED (
    SELECT e.* FROM ({events}) e
    SEMI JOIN run_executions x
      ON x.execution_id = e.execution_id AND x.recorded_at = e.recorded_at
),
inputs AS MATERIALIZED (
    SELECT e.*,
           coalesce(e.producer_execution_id, a.execution_id) AS source_execution_id,
           coalesce(e.producer_output, a.output) AS source_output
    FROM (SELECT * FROM run_events WHERE direction = 'input') e
    LEFT JOIN (SELECT execution_id, output, uri FROM ({artifacts})) a
      ON e.producer_execution_id IS NULL AND e.kind = 'artifact' AND a.uri = e.uri
),
walk(execution_id, depth) AS (
    SELECT * FROM (VALUES {values}) seeds(execution_id, depth)
    UNION
    {step}
),
reached AS (SELECT execution_id, min(depth) AS depth FROM walk GROUP BY execution_id),
listed AS MATERIALIZED ({listed})
SELECT r.depth,
       coalesce(x.run_id, split_part(r.execution_id, '/', 1)) AS run_id,
       r.execution_id, x.task, x.component, x.component_digest, x.state,
       l.direction, l.name, l.position, l.kind, l.uri, l.artifact_type, l.value, l.digest,
       l.size, l.object_type, l.source_execution_id, l.source_output
FROM reached r
LEFT JOIN run_executions x ON x.execution_id = r.execution_id
LEFT JOIN listed l ON l.execution_id = r.execution_id
"""


def _writers(con: duckdb.DuckDBPyConnection, uris: list[str]) -> list[tuple[str, str, str]]:
    """(uri, execution id, output) of each recorded write of ``uris``.

    raypipe stores every artifact a step writes under ``{root}/{pipeline}/{run_id}/...``
    (:class:`~raypipe.runtime.artifacts.ArtifactStore`), so the run that wrote a URI is
    named in it: only those runs' files are read, whatever the size of the store. A URI
    naming no run (data from outside raypipe) was written by no recorded step.
    """
    runs = {m for u in uris for m in _RUN_ID.findall(u)}
    if not runs:
        return []
    _, rows = _run(
        con,
        f"SELECT DISTINCT uri, execution_id, output FROM ({scoped_source(con, 'artifacts', runs)}) "
        f"WHERE uri IN {sql_list(sorted(set(uris)), parenthesised=True)}",
        None,
        what="artifact lookup",
    )
    return [(str(u), str(e), str(o)) for u, e, o in rows]


def _readers(
    con: duckdb.DuckDBPyConnection, uris: dict[str, int], *, exclude_runs: set[str]
) -> dict[str, int]:
    """Executions (outside ``exclude_runs``) that read one of ``uris``, with the depth of
    the uri they read (the smallest)."""
    if not uris:
        return {}
    where = f"uri IN {sql_list(sorted(uris), parenthesised=True)}"
    if exclude_runs:
        where += f" AND run_id NOT IN {sql_list(sorted(exclude_runs), parenthesised=True)}"
    _, rows = _run(
        con,
        f"SELECT DISTINCT execution_id, uri FROM events WHERE direction = 'input' AND {where}",
        None,
        what="reader lookup",
    )
    readers: dict[str, int] = {}
    for eid, uri in rows:
        depth = uris[str(uri)]
        readers[str(eid)] = min(depth, readers.get(str(eid), depth))
    return readers


# -- plumbing ----------------------------------------------------------------------------


@contextlib.contextmanager
def _connection(
    root: str | None, connection: duckdb.DuckDBPyConnection | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    if connection is not None:
        yield connection
        return
    con = connect(root)
    try:
        yield con
    finally:
        con.close()


def _run(
    con: duckdb.DuckDBPyConnection,
    query: str,
    parameters: Sequence[Any] | dict[str, Any] | None,
    *,
    what: str,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    import duckdb

    try:
        cursor = con.execute(query, parameters) if parameters is not None else con.execute(query)
        rows = cursor.fetchall()
    except duckdb.IOException as exc:
        raise LineageError(
            f"lineage {what}: a file could not be read ({exc}); if `raypipe lineage "
            "compact` ran since this connection was made, connect again"
        ) from exc
    except duckdb.Error as exc:
        shown = " ".join(query.split())
        shown = shown if len(shown) <= 300 else shown[:297] + "..."
        raise LineageError(f"lineage {what} failed: {exc}\n  query: {shown}") from exc
    names = [d[0] for d in cursor.description or []]
    return names, rows


def _fetch(
    con: duckdb.DuckDBPyConnection,
    model: type[_RowT],
    query: str,
    *,
    what: str,
    parameters: Sequence[Any] | dict[str, Any] | None = None,
) -> list[_RowT]:
    names, rows = _run(con, query, parameters, what=what)
    return [model.model_validate(dict(zip(names, row, strict=True))) for row in rows]


def _run_of(execution_id: str) -> str:
    return execution_id.partition("/")[0]


def _order(row: LineageRow) -> tuple[int, str, str, str, int]:
    return (
        row.depth,
        row.task or "",
        row.direction or "",
        row.name or "",
        -1 if row.position is None else row.position,
    )


def _default_root() -> str:
    from raypipe.runtime.config import RuntimeConfig

    return RuntimeConfig.from_env().lineage_root
