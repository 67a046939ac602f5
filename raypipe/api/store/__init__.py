"""The raypipe service's store: experiments, pipelines, runs and schedules in SQL.

SQLite under ``RAYPIPE_HOME`` by default, PostgreSQL with ``RAYPIPE_DATABASE_URL``;
the schema migrates itself when a ``Store`` opens (or with ``migrate(url)``).

Example:
    >>> from raypipe.api.store import RunFilter, RunState, Store
    >>> store = Store()  # $RAYPIPE_HOME/service.db, migrated
    >>> run = store.create_run("team-a", display_name="try", pipeline_spec=spec_json)
    >>> pending = store.list_runs("team-a", RunFilter(states=[RunState.PENDING]))
    >>> [r.run_id for r in pending.items] == [run.run_id]
    True
"""

from raypipe.api.store.database import create_engine, database_url
from raypipe.api.store.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    StoreError,
)
from raypipe.api.store.migrations import current_revision, head_revision, migrate
from raypipe.api.store.records import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Experiment,
    ExperimentFilter,
    ListFilter,
    Page,
    Pipeline,
    PipelineVersion,
    RecurringRun,
    RecurringRunFilter,
    Run,
    RunCounts,
    RunFilter,
    RunState,
    ScheduleTick,
    ServiceLease,
    SortOrder,
    StorageState,
)
from raypipe.api.store.store import Store

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "AlreadyExists",
    "Conflict",
    "Experiment",
    "ExperimentFilter",
    "InvalidArgument",
    "ListFilter",
    "NotFound",
    "Page",
    "Pipeline",
    "PipelineVersion",
    "RecurringRun",
    "RecurringRunFilter",
    "Run",
    "RunCounts",
    "RunFilter",
    "RunState",
    "ScheduleTick",
    "ServiceLease",
    "SortOrder",
    "StorageState",
    "Store",
    "StoreError",
    "create_engine",
    "current_revision",
    "database_url",
    "head_revision",
    "migrate",
]
