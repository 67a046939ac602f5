"""What every part of the store shares: the engine, transactions, lookups, validation.

Reads run in a plain transaction; writes in one that takes the write lock first on SQLite
(see ``database.WRITE``), queued on the store's ``SqliteWriteLock`` so that they take
turns. Each public store method is one transaction, so a record it returns is a
consistent snapshot.

Example:
    >>> class Counter(StoreBase):
    ...     def count(self, ns: str) -> int:
    ...         with self._read() as session:
    ...             return len(session.scalars(select(RunRow).where(RunRow.namespace == ns)).all())
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any, TypeVar

import pydantic_core
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session, sessionmaker

from raypipe.api.store.database import WRITE
from raypipe.api.store.errors import InvalidArgument, NotFound
from raypipe.api.store.models import Resource
from raypipe.api.store.write_lock import sqlite_write_lock

__all__ = ["StoreBase", "new_id", "utc_now"]

R = TypeVar("R", bound=Resource)

MAX_NAMESPACE = 128
MAX_NAME = 255
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what every stored time is)."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A fresh id: 32 lowercase hex digits (a uuid4), like the runtime's run ids."""
    return uuid.uuid4().hex


class StoreBase:
    """The engine and its two session factories; helpers for the resource mixins."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._write_lock = sqlite_write_lock(engine)
        self._reads = sessionmaker(engine, expire_on_commit=False)
        self._writes = sessionmaker(
            engine.execution_options(**{WRITE: True}), expire_on_commit=False
        )

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A session for reading, rolled back (nothing to keep) when the block ends."""
        with self._reads() as session:
            yield session

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A plain connection for one read statement, without an ORM session's bookkeeping
        (for the lists the service answers most: they read rows, not objects) and without
        a transaction (one statement reads one snapshot anyway): on PostgreSQL that saves
        the round trip of a ROLLBACK when the connection goes back to the pool."""
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without error
        (must not be nested: one write transaction per thread at a time)."""
        with self._write_lock or nullcontext(), self._writes.begin() as session:
            yield session

    @staticmethod
    def _get(
        session: Session,
        model: type[R],
        namespace: str,
        id: str,
        resource: str,
        *,
        for_update: bool = False,
    ) -> R:
        """The row of ``model`` with this id in ``namespace`` (another's is not found)."""
        stmt = select(model).where(
            model.id == id,
            model.namespace == namespace,
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = session.scalars(stmt).first()
        if row is None:
            raise NotFound(resource, id)
        return row


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a usable namespace name."""
    if not isinstance(namespace, str) or not 0 < len(namespace) <= MAX_NAMESPACE:
        raise InvalidArgument(
            "namespace", "namespace", f"must be 1 to {MAX_NAMESPACE} characters, got {namespace!r}"
        )
    return namespace


def check_name(resource: str, name: str) -> str:
    """``name`` if it is a usable display name (1 to 255 characters, not blank)."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidArgument(
            resource, "display_name", f"must be 1 to {MAX_NAME} characters, got {name!r}"
        )
    return name


def check_id(resource: str, field: str, id: str) -> str:
    """``id`` if it is a usable id: 1 to 64 letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(id, str) or not _ID.fullmatch(id):
        raise InvalidArgument(resource, field, f"must be 1 to 64 of [A-Za-z0-9_.-], got {id!r}")
    return id


def check_time(resource: str, field: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(resource, field, f"must be timezone-aware, got {value!r}")
    return value.astimezone(timezone.utc)


def spec_text(resource: str, pipeline_spec: str) -> tuple[str, str]:
    """The IR JSON text as given and its sha256 (the runtime's digest of the same text).

    Raises:
        InvalidArgument: the text is not a JSON object.
    """
    if not isinstance(pipeline_spec, str):
        raise InvalidArgument(resource, "pipeline_spec", "must be JSON text (a str)")
    try:
        document = json.loads(pipeline_spec)
    except ValueError as exc:
        raise InvalidArgument(resource, "pipeline_spec", f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidArgument(resource, "pipeline_spec", "must be a JSON object")
    return pipeline_spec, hashlib.sha256(pipeline_spec.encode()).hexdigest()


def dump_arguments(resource: str, arguments: Mapping[str, Any] | None) -> str:
    """Run arguments as JSON text (strict JSON: no NaN or infinity)."""
    try:
        return json.dumps(dict(arguments or {}), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(resource, "arguments", f"not JSON-serializable: {exc}") from exc


def load_arguments(text: str) -> dict[str, Any]:
    """Run arguments back from their JSON text (pydantic-core's reader: a fifth of
    ``json.loads``'s time on a listed run's small object)."""
    value = pydantic_core.from_json(text)
    if not isinstance(value, dict):
        raise TypeError(f"stored arguments are not a JSON object: {text[:80]!r}")
    return value
