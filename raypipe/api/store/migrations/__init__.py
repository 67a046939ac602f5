"""The store's schema migrations (Alembic), run from code: ``migrate(url)``.

The service migrates on start (``Store(url)`` does), so a new release brings its schema
up itself. Concurrent migrators are safe: threads of one process take turns (Alembic's
context is global); processes queue on an advisory lock on PostgreSQL, on the write lock
on SQLite, and whoever comes second finds the schema at head.

Example:
    >>> migrate("sqlite:////tmp/raypipe/service.db")
    >>> current_revision("sqlite:////tmp/raypipe/service.db") == head_revision()
    True
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from raypipe.api.store.database import WRITE, create_engine, database_url

__all__ = ["MIGRATION_LOCK", "VERSION_TABLE", "current_revision", "head_revision", "migrate"]

VERSION_TABLE = "raypipe_alembic_version"
"""Where Alembic records the schema revision (not ``alembic_version``: MLflow's)."""

MIGRATION_LOCK = 7_240_117_300
"""PostgreSQL advisory lock key that serialises migrators (an arbitrary constant)."""

_IN_PROCESS = threading.Lock()  # Alembic keeps its running context in module globals


def alembic_config() -> Config:
    """An Alembic configuration pointing at this package (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the store's migrations have no head revision")
    return head


def current_revision(url: str | Engine | None = None) -> str | None:
    """The revision a database is at, ``None`` when it was never migrated."""
    engine = url if isinstance(url, Engine) else create_engine(url or database_url())
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        if engine is not url:
            engine.dispose()


def migrate(url: str | Engine | None = None, *, revision: str = "head") -> None:
    """Bring a database's schema to ``revision`` (default: the newest); a no-op when it is
    there already. ``url`` defaults to ``database_url()``.

    Example:
        >>> migrate("postgresql://raypipe:secret@db:5432/raypipe")  # doctest: +SKIP
    """
    engine = url if isinstance(url, Engine) else create_engine(url or database_url())
    try:
        config = alembic_config()
        with _IN_PROCESS, engine.execution_options(**{WRITE: True}).connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if engine is not url:
            engine.dispose()
