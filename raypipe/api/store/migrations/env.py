"""Alembic's entry point for the store's migrations (run by ``migrate``, or by the
``alembic`` command with ``-x url=...`` while writing a new revision)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, text

from raypipe.api.store.database import WRITE, create_engine, database_url
from raypipe.api.store.migrations import MIGRATION_LOCK, VERSION_TABLE
from raypipe.api.store.models import Base


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    raw: Any = connection.connection.dbapi_connection
    if sqlite:
        # Batch migrations copy and drop tables; with foreign keys on, the drop would
        # cascade. The pragma only takes effect outside a transaction.
        raw.execute("PRAGMA foreign_keys = OFF").close()
    try:
        with connection.begin():  # one transaction for every step: all or nothing
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                version_table=VERSION_TABLE,
                render_as_batch=True,
                compare_type=True,
            )
            context.run_migrations()
    finally:
        if sqlite:
            raw.execute("PRAGMA foreign_keys = ON").close()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or database_url()
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    try:
        with engine.execution_options(**{WRITE: True}).connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
