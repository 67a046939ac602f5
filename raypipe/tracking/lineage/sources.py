"""DuckDB relations over a lineage table's files: the SQL a view or a merge reads from.

A local root is read by DuckDB's own Parquet reader, from the exact list of live files
(so a merge in progress never shows a row twice), with the ``run_id=`` directories as a
Hive partition: a filter on ``run_id`` skips other runs' files without opening them. A
remote root (``s3://``, ``gs://``...) is read through a ``pyarrow.dataset`` registered
in the connection, with the root's own credentials; DuckDB's ``httpfs`` extension is not
needed.

Example:
    >>> con = duckdb.connect()                                        # doctest: +SKIP
    >>> store = LineageStore("/tmp/lineage")                          # doctest: +SKIP
    >>> sql = table_source(con, store, "runs", store.files("runs"))   # doctest: +SKIP
    >>> con.sql(sql).fetchall()                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from raypipe.tracking.lineage.schema import TABLES
from raypipe.tracking.lineage.store import LineageStore, PartFile

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "VIEWS",
    "columns",
    "duckdb_type",
    "empty_source",
    "register_files",
    "scoped_source",
    "sql_list",
    "sql_string",
    "table_source",
]

VIEWS = {"runs": "runs_history", **{t: t for t in TABLES if t != "runs"}}
"""The view holding every row of each table (``runs`` keeps only each run's latest)."""


def table_source(
    con: duckdb.DuckDBPyConnection,
    store: LineageStore,
    table: str,
    files: list[PartFile],
    *,
    partitioned: bool = True,
) -> str:
    """A ``SELECT`` over ``files`` with the table's columns, in order.

    ``partitioned`` reads the ``run_id=`` directories as a Hive partition (what a view
    wants, for pruning); a merge reads ``run_id`` from the files themselves.
    """
    if not files:
        return empty_source(table)
    names = columns(table)
    if not store.is_local:
        import pyarrow.dataset as ds

        dataset = ds.dataset(
            [f.path for f in files], schema=TABLES[table], format="parquet", filesystem=store.fs
        )
        registered = f"_lineage_{table}_files"
        con.register(registered, dataset)
        return f"SELECT {names} FROM {registered}"
    mixed = "true" if len({f.schema_version for f in files}) > 1 else "false"
    fresh = [f.path for f in files if f.run_id is not None]
    merged = [f.path for f in files if f.run_id is None]
    selects = []
    if fresh:
        hive = (
            "hive_partitioning = true, hive_types = {'run_id': VARCHAR}"
            if partitioned
            else "hive_partitioning = false"
        )
        selects.append(
            f"SELECT {names} FROM read_parquet({sql_list(fresh)}, {hive}, union_by_name = {mixed})"
        )
    if merged:
        selects.append(
            f"SELECT {names} FROM read_parquet({sql_list(merged)}, "
            f"hive_partitioning = false, union_by_name = {mixed})"
        )
    return " UNION ALL ".join(selects)


def register_files(
    con: duckdb.DuckDBPyConnection, store: LineageStore, files: dict[str, list[PartFile]]
) -> None:
    """Tables ``files`` (one row per live file: ``table_name``, ``run_id`` (NULL for a
    merged file of many runs), ``path``, ``bytes``, ``schema_version``) and
    ``lineage_root`` (``root``, ``local``), which :func:`scoped_source` reads."""
    listed = [(table, f) for table, found in files.items() for f in found]
    # Lists as parameters: no pandas import (which registering an Arrow table costs).
    con.execute(
        "CREATE TABLE files AS SELECT unnest($1::VARCHAR[]) AS table_name, "
        "unnest($2::VARCHAR[]) AS run_id, unnest($3::VARCHAR[]) AS path, "
        "unnest($4::BIGINT[]) AS bytes, unnest($5::INTEGER[]) AS schema_version",
        [
            [t for t, _ in listed],
            [f.run_id for _, f in listed],
            [f.path for _, f in listed],
            [f.size for _, f in listed],
            [f.schema_version for _, f in listed],
        ],
    )
    con.execute(
        "CREATE TABLE lineage_root AS SELECT ? AS root, ? AS local",
        [store.public_root, store.is_local],
    )


def scoped_source(con: duckdb.DuckDBPyConnection, table: str, runs: set[str]) -> str:
    """A ``SELECT`` of ``runs``' rows of ``table``, reading only the files that can hold
    them: those runs' directories and the merged files. On a connection from
    :func:`~raypipe.tracking.lineage.connect` over a local root this costs the same
    whatever the number of runs stored; otherwise it filters the table's view."""
    import duckdb

    in_runs = sql_list(sorted(runs), parenthesised=True)
    fallback = f"SELECT * FROM {VIEWS[table]} WHERE run_id IN {in_runs}"
    try:
        found = con.execute("SELECT local FROM lineage_root").fetchone()
    except duckdb.CatalogException:  # a connection not made by connect()
        return fallback
    if found is None or not found[0]:
        return fallback
    files = con.execute(
        "SELECT path, schema_version FROM files WHERE table_name = ? "
        f"AND (run_id IS NULL OR run_id IN {in_runs}) ORDER BY path",
        [table],
    ).fetchall()
    if not files:
        return empty_source(table)
    mixed = "true" if len({v for _, v in files}) > 1 else "false"
    return (
        f"SELECT {columns(table)} FROM read_parquet({sql_list([p for p, _ in files])}, "
        f"hive_partitioning = false, union_by_name = {mixed}) WHERE run_id IN {in_runs}"
    )


def empty_source(table: str) -> str:
    """A ``SELECT`` with the table's columns and types, and no rows."""
    typed = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {f.name}" for f in TABLES[table])
    return f"SELECT {typed} WHERE false"


def columns(table: str) -> str:
    return ", ".join(TABLES[table].names)


def duckdb_type(arrow: pa.DataType) -> str:
    """The DuckDB type of a lineage column's Arrow type."""
    if pa.types.is_string(arrow):
        return "VARCHAR"
    if pa.types.is_int32(arrow):
        return "INTEGER"
    if pa.types.is_int64(arrow):
        return "BIGINT"
    if pa.types.is_float64(arrow):
        return "DOUBLE"
    if pa.types.is_boolean(arrow):
        return "BOOLEAN"
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMPTZ"
    raise TypeError(f"no DuckDB type for lineage column type {arrow}")


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(items: list[str], *, parenthesised: bool = False) -> str:
    """``items`` as a SQL list literal ``['a', 'b']``, or ``('a', 'b')`` for ``IN``."""
    inner = ", ".join(sql_string(i) for i in items)
    return f"({inner})" if parenthesised else f"[{inner}]"
