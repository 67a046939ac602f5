"""The store's tables, as SQLAlchemy declarative models (internal: records leave the store).

Every table carries ``namespace``; ids are uuid4 hex strings (a run's id is the runtime's
run id). JSON values (run arguments) are ``Text`` holding ``json.dumps`` output, and the
pipeline IR is the JSON text it was given, so both read the same on SQLite and PostgreSQL.
Table names start with ``raypipe_`` so the store may share a database with MLflow's.

Example:
    >>> RunRow.__tablename__
    'raypipe_runs'
    >>> sorted(Base.metadata.tables)[0]
    'raypipe_experiments'
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Resource",
    "ExperimentRow",
    "PipelineRow",
    "PipelineVersionRow",
    "RecurringRunRow",
    "RunRow",
    "ScheduleTickRow",
    "ServiceLeaseRow",
    "UTCDateTime",
]

ID = String(64)
NAMESPACE = String(128)
NAME = String(255)
STATE = String(16)
DIGEST = String(64)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite
    (fixed width, so text order is time order). Naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def result_processor(
        self, dialect: Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        if dialect.name == "postgresql":
            # The store's connections set the session time zone to UTC (database.py), so
            # psycopg already returns aware UTC datetimes: nothing to do per value.
            return None
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the text this type wrote ("2026-12-06 13:01:02.345678"):
        # ``fromisoformat`` reads it in C, where SQLAlchemy's reader takes a regular
        # expression and two Python calls a value (three times a listed run).
        def read(value: Any) -> datetime | None:
            if value is None:
                return None
            if not isinstance(value, str):
                raise TypeError(f"expected a time as text from SQLite, got {value!r}")
            return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)

        return read


class Base(DeclarativeBase):
    """Declarative base whose metadata names constraints the same way on every database."""

    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
        }
    )


class Resource:
    """The columns every resource's table starts with (a declarative mixin)."""

    id: Mapped[str] = mapped_column(ID, primary_key=True, sort_order=-5)
    namespace: Mapped[str] = mapped_column(NAMESPACE, sort_order=-4)
    display_name: Mapped[str] = mapped_column(NAME, sort_order=-3)
    description: Mapped[str] = mapped_column(Text, sort_order=-2)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, sort_order=-1)


class ExperimentRow(Resource, Base):
    """An experiment: unique display name per namespace."""

    __tablename__ = "raypipe_experiments"
    __table_args__ = (
        UniqueConstraint("namespace", "display_name"),
        Index("ix_raypipe_experiments_list", "namespace", "created_at", "id"),
    )

    storage_state: Mapped[str] = mapped_column(STATE)
    last_run_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PipelineRow(Resource, Base):
    """A pipeline: unique display name per namespace."""

    __tablename__ = "raypipe_pipelines"
    __table_args__ = (
        UniqueConstraint("namespace", "display_name"),
        Index("ix_raypipe_pipelines_list", "namespace", "created_at", "id"),
    )


class PipelineVersionRow(Resource, Base):
    """A version of a pipeline: unique display name per pipeline; gone with its pipeline."""

    __tablename__ = "raypipe_pipeline_versions"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "display_name"),
        Index("ix_raypipe_pipeline_versions_list", "pipeline_id", "created_at", "id"),
    )

    pipeline_id: Mapped[str] = mapped_column(
        ID, ForeignKey("raypipe_pipelines.id", ondelete="CASCADE")
    )
    pipeline_spec: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(DIGEST)


class RecurringRunRow(Resource, Base):
    """A recurring run: exactly one of ``cron`` and ``interval_seconds`` is set."""

    __tablename__ = "raypipe_recurring_runs"
    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_trigger"),
        Index("ix_raypipe_recurring_runs_list", "namespace", "created_at", "id"),
        Index(
            "ix_raypipe_recurring_runs_experiment", "namespace", "experiment_id", "created_at", "id"
        ),
    )

    experiment_id: Mapped[str | None] = mapped_column(ID, ForeignKey("raypipe_experiments.id"))
    pipeline_version_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("raypipe_pipeline_versions.id", ondelete="SET NULL")
    )
    pipeline_spec: Mapped[str] = mapped_column(Text)
    pipeline_spec_digest: Mapped[str] = mapped_column(DIGEST)
    arguments: Mapped[str] = mapped_column(Text)
    cron: Mapped[str | None] = mapped_column(String(255))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_concurrency: Mapped[int] = mapped_column(Integer)
    no_catchup: Mapped[bool] = mapped_column(Boolean)
    enabled: Mapped[bool] = mapped_column(Boolean)
    last_tick_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RunRow(Resource, Base):
    """A run. The indexes serve each list filter in (created_at, id) order, so that a
    page is an index range scan however many runs there are; ``owner_id``'s serves the
    heartbeat of a service instance."""

    __tablename__ = "raypipe_runs"
    __table_args__ = (
        Index("ix_raypipe_runs_list", "namespace", "created_at", "id"),
        Index("ix_raypipe_runs_experiment", "namespace", "experiment_id", "created_at", "id"),
        Index("ix_raypipe_runs_state", "namespace", "state", "created_at", "id"),
        Index("ix_raypipe_runs_version", "namespace", "pipeline_version_id", "created_at", "id"),
        Index("ix_raypipe_runs_recurring", "namespace", "recurring_run_id", "created_at", "id"),
        Index("ix_raypipe_runs_name", "namespace", "display_name", "id"),
        Index("ix_raypipe_runs_owner", "owner_id", "state"),
    )

    experiment_id: Mapped[str | None] = mapped_column(ID, ForeignKey("raypipe_experiments.id"))
    pipeline_version_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("raypipe_pipeline_versions.id", ondelete="SET NULL")
    )
    recurring_run_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("raypipe_recurring_runs.id", ondelete="SET NULL")
    )
    pipeline_spec: Mapped[str] = mapped_column(Text)
    pipeline_spec_digest: Mapped[str] = mapped_column(DIGEST)
    arguments: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(STATE)
    error_message: Mapped[str | None] = mapped_column(Text)
    storage_state: Mapped[str] = mapped_column(STATE)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner_id: Mapped[str | None] = mapped_column(ID)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ScheduleTickRow(Base):
    """A claimed tick of a recurring run. The unique (recurring_run_id, tick_time) makes a
    second claim of the same tick fail in the database, whichever process makes it."""

    __tablename__ = "raypipe_schedule_ticks"
    __table_args__ = (UniqueConstraint("recurring_run_id", "tick_time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recurring_run_id: Mapped[str] = mapped_column(
        ID, ForeignKey("raypipe_recurring_runs.id", ondelete="CASCADE")
    )
    namespace: Mapped[str] = mapped_column(NAMESPACE)
    tick_time: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(ID)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceLeaseRow(Base):
    """A service-wide role (such as running the executor) held by one instance until
    ``expires_at``; the holder renews it, another instance takes it once it expired."""

    __tablename__ = "raypipe_service_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ID)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
