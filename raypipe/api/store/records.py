"""What the store returns and takes: pydantic records of its rows, list filters, pages.

Records are frozen copies of a row taken inside one transaction; no database object
leaves the store. Times are timezone-aware UTC.

Example:
    >>> RunFilter(states=[RunState.RUNNING], name_contains="nightly").states
    [<RunState.RUNNING: 'RUNNING'>]
    >>> RunState.CANCELING in ACTIVE_STATES
    True
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "Experiment",
    "ExperimentFilter",
    "ListFilter",
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
]


class RunState(str, Enum):
    """Where a run is in its life (KFP v2beta1 ``RuntimeState`` names)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"


ACTIVE_STATES = frozenset({RunState.PENDING, RunState.RUNNING, RunState.CANCELING})
"""States of a run that has not ended: some service instance must drive it."""

TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED})
"""States of a run that has ended."""


class StorageState(str, Enum):
    """Whether an experiment or run shows in default lists (KFP's archive)."""

    AVAILABLE = "AVAILABLE"
    ARCHIVED = "ARCHIVED"


SortOrder = Literal["created_at", "-created_at", "name", "-name"]
"""How a list is ordered: by creation time or display name, ``-`` for descending. Ties
are broken by id, so every order is total and pages neither repeat nor skip a row."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Experiment(_Record):
    """A named group of runs in a namespace."""

    experiment_id: str
    namespace: str
    display_name: str
    description: str
    created_at: datetime
    storage_state: StorageState
    last_run_created_at: datetime | None


class Pipeline(_Record):
    """A named pipeline; its code lives in its versions."""

    pipeline_id: str
    namespace: str
    display_name: str
    description: str
    created_at: datetime


class PipelineVersion(_Record):
    """One compiled IR of a pipeline, kept as JSON text with its sha256 ``digest``.

    ``pipeline_spec`` is ``None`` in lists unless asked for (``include_spec=True``)."""

    pipeline_version_id: str
    pipeline_id: str
    namespace: str
    display_name: str
    description: str
    created_at: datetime
    pipeline_spec: str | None
    digest: str


class Run(_Record):
    """One execution of a pipeline, with the IR it ran (a snapshot) and its arguments.

    ``pipeline_spec`` is ``None`` in lists unless asked for (``include_spec=True``).
    ``owner_id`` is the service instance driving the run and ``heartbeat_at`` when it last
    said so: a run whose heartbeat is old has lost its executor."""

    run_id: str
    namespace: str
    display_name: str
    description: str
    experiment_id: str | None
    pipeline_version_id: str | None
    recurring_run_id: str | None
    pipeline_spec: str | None
    pipeline_spec_digest: str
    arguments: dict[str, Any]
    state: RunState
    error_message: str | None
    storage_state: StorageState
    created_at: datetime
    scheduled_at: datetime
    finished_at: datetime | None
    owner_id: str | None
    heartbeat_at: datetime | None


class RecurringRun(_Record):
    """A schedule that starts runs: a cron expression or an interval, within a window.

    ``last_tick_at`` is the latest tick claimed. ``pipeline_spec`` is ``None`` in lists
    unless asked for (``include_spec=True``)."""

    recurring_run_id: str
    namespace: str
    display_name: str
    description: str
    experiment_id: str | None
    pipeline_version_id: str | None
    pipeline_spec: str | None
    pipeline_spec_digest: str
    arguments: dict[str, Any]
    cron: str | None
    interval_seconds: int | None
    start_time: datetime | None
    end_time: datetime | None
    max_concurrency: int
    no_catchup: bool
    enabled: bool
    last_tick_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleTick(_Record):
    """A tick of a recurring run that some service instance claimed (at most one each)."""

    recurring_run_id: str
    namespace: str
    tick_time: datetime
    run_id: str | None
    claimed_at: datetime


class ServiceLease(_Record):
    """A service-wide role held by one service instance until ``expires_at``."""

    name: str
    owner_id: str
    acquired_at: datetime
    expires_at: datetime


T = TypeVar("T", bound=_Record)


class RunCounts(_Record):
    """How many runs an experiment or a recurring run has, and how many are active."""

    runs: int = 0
    active: int = 0


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_page_token`` back for the next (``None``: last)."""

    model_config = ConfigDict(frozen=True)

    items: list[T]
    next_page_token: str | None


class ListFilter(_Record):
    """Rows whose display name contains ``name_contains`` (any case) and that were created
    strictly after ``created_after`` and strictly before ``created_before``."""

    name_contains: str | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None


class ExperimentFilter(ListFilter):
    """Experiments, optionally only those in one storage state."""

    storage_state: StorageState | None = None


class RunFilter(ListFilter):
    """Runs matching every field given (``states``: any of them)."""

    states: list[RunState] | None = None
    experiment_id: str | None = None
    pipeline_version_id: str | None = None
    pipeline_id: str | None = None  # runs of any version of the pipeline
    recurring_run_id: str | None = None
    storage_state: StorageState | None = None


class RecurringRunFilter(ListFilter):
    """Recurring runs, optionally of one experiment or only enabled (or disabled) ones."""

    experiment_id: str | None = None
    enabled: bool | None = None
