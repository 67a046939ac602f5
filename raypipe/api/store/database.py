"""Which database the service uses and how to connect to it (SQLite or PostgreSQL).

``RAYPIPE_DATABASE_URL`` chooses the database; without it the store is a SQLite file,
``$RAYPIPE_HOME/service.db``. A plain ``postgresql://`` URL uses the psycopg 3 driver.

Example:
    >>> os.environ["RAYPIPE_DATABASE_URL"] = "postgresql://u:p@db:5432/raypipe"
    >>> database_url()
    'postgresql://u:p@db:5432/raypipe'
    >>> sqlalchemy_url(database_url()).drivername
    'postgresql+psycopg'
    >>> engine = create_engine("sqlite:////tmp/raypipe/service.db")
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from raypipe.api.store.errors import InvalidArgument
from raypipe.runtime.config import RuntimeConfig

__all__ = ["WRITE", "create_engine", "database_url", "sqlalchemy_url"]

WRITE = "raypipe_write"
"""Execution option of an engine whose transactions write: on SQLite they begin with
``BEGIN IMMEDIATE`` (take the write lock first, wait for it up to the busy timeout) so two
writers never deadlock upgrading a read lock; on PostgreSQL it changes nothing."""

SQLITE_BUSY_TIMEOUT_S = 30


def database_url() -> str:
    """The database URL from ``RAYPIPE_DATABASE_URL``, else ``sqlite:///$RAYPIPE_HOME/service.db``
    (``RAYPIPE_HOME`` as the runtime reads it: ``~/.raypipe`` by default)."""
    url = os.environ.get("RAYPIPE_DATABASE_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{Path(RuntimeConfig.from_env().home) / 'service.db'}"


def sqlalchemy_url(url: str) -> URL:
    """``url`` parsed, with ``postgres://`` and ``postgresql://`` mapped to psycopg 3.

    Raises:
        InvalidArgument: the URL is malformed, or names a database other than SQLite or
            PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidArgument("database", "url", f"not a database URL: {exc}") from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        shown = parsed.render_as_string(hide_password=True)
        raise InvalidArgument("database", "url", f"{shown}: use sqlite:/// or postgresql://")
    return parsed


def create_engine(url: str) -> Engine:
    """An engine for ``url``, configured for the store (see ``WRITE``).

    A SQLite file gets its folder created, write-ahead logging, foreign keys and a busy
    timeout. PostgreSQL connections speak UTC (``_postgresql_connect``) and are checked
    before use when they have been idle for ``PING_AFTER_IDLE_S`` (``_ping_if_idle``):
    a restarted server does not break the pool.
    """
    parsed = sqlalchemy_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(parsed)
        event.listen(engine, "connect", _postgresql_connect)
        event.listen(engine, "checkin", _note_return)
        event.listen(engine, "checkout", _ping_if_idle)
        return engine
    if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
        raise InvalidArgument("database", "url", "the SQLite store must be a file path")
    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sqlalchemy.create_engine(
        parsed, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _postgresql_connect(dbapi_connection: psycopg.Connection[Any], _record: Any) -> None:
    # The session's time zone is UTC, so psycopg returns ``timestamptz`` values as UTC
    # datetimes and UTCDateTime has nothing left to convert when reading.
    _run_outside_transaction(dbapi_connection, "SET TIME ZONE 'UTC'")


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle this long is checked before use."""

_RETURNED_AT = "raypipe_returned_at"


def _note_return(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_RETURNED_AT] = time.monotonic()


def _ping_if_idle(
    dbapi_connection: psycopg.Connection[Any],
    record: ConnectionPoolEntry,
    _proxy: PoolProxiedConnection,
) -> None:
    # SQLAlchemy's pool_pre_ping checks every connection at every checkout: a round trip
    # a request, a third of a listed page's time, during which an API process's event
    # loop waits (its routes call the store directly). A connection in use under load is
    # back in the pool within milliseconds, and one that outlived a database restart has
    # been idle at least as long as the restart took (uses during it fail and replace
    # it), so only connections idle for a while are checked, as PgBouncer's
    # ``server_check_delay`` does. A failed check discards the connection, and the pool
    # makes a new one (SQLAlchemy's DisconnectionError protocol).
    returned_at = record.info.get(_RETURNED_AT)
    if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_S:
        return  # a new connection, or one used moments ago
    try:
        _run_outside_transaction(dbapi_connection, ";")  # an empty query: a round trip
    except psycopg.Error as exc:
        if dbapi_connection.closed or dbapi_connection.broken:
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc
        raise


def _run_outside_transaction(dbapi_connection: psycopg.Connection[Any], sql: str) -> None:
    """Run ``sql`` in autocommit (a SET inside a transaction would be rolled back)."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute(sql)
    finally:
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = autocommit


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is off, so that _sqlite_begin decides how each
    # transaction begins (the SQLAlchemy recipe for SQLite's locking).
    dbapi_connection.isolation_level = None
    for pragma in (
        f"busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}",
        "journal_mode = WAL",
        "synchronous = NORMAL",
        "foreign_keys = ON",
    ):
        dbapi_connection.execute(f"PRAGMA {pragma}").close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
