"""Recurring runs in the store, and their schedule ticks.

The store keeps the schedule (a cron expression or an interval, a start/end window,
``max_concurrency``, ``no_catchup``, enabled) and the ticks claimed; computing when the
next tick is due is the scheduler's job. A tick is claimed by inserting it under a
UNIQUE (recurring_run_id, tick_time) constraint, so however many service processes race
for a tick, one wins: ``claim_tick`` alone, or ``create_run(..., tick_time=...)``, which
claims the tick and creates its run in one transaction.

Example:
    >>> rr = store.create_recurring_run("team-a", display_name="hourly", interval_seconds=3600,
    ...                                 pipeline_spec=spec_json, arguments={"a": 1})
    >>> store.claim_tick("team-a", rr.recurring_run_id, tick)
    True
    >>> store.claim_tick("team-a", rr.recurring_run_id, tick)
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from raypipe.api.store.base import (
    StoreBase,
    check_id,
    check_name,
    check_namespace,
    check_time,
    dump_arguments,
    load_arguments,
    new_id,
    spec_text,
    utc_now,
)
from raypipe.api.store.errors import AlreadyExists, Conflict, InvalidArgument
from raypipe.api.store.filters import apply_list_filter, filter_params, scope
from raypipe.api.store.models import (
    ExperimentRow,
    PipelineVersionRow,
    RecurringRunRow,
    ScheduleTickRow,
)
from raypipe.api.store.paging import DEFAULT_PAGE_SIZE, fetch_page
from raypipe.api.store.records import (
    Page,
    RecurringRun,
    RecurringRunFilter,
    ScheduleTick,
    SortOrder,
    StorageState,
)

__all__ = ["RecurringRunStore", "insert_tick", "recurring_run_record", "tick_claimed"]


def recurring_run_record(row: RecurringRunRow, *, include_spec: bool = True) -> RecurringRun:
    """The record of a recurring run row (``pipeline_spec`` only if ``include_spec``)."""
    return RecurringRun(
        recurring_run_id=row.id,
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        experiment_id=row.experiment_id,
        pipeline_version_id=row.pipeline_version_id,
        pipeline_spec=row.pipeline_spec if include_spec else None,
        pipeline_spec_digest=row.pipeline_spec_digest,
        arguments=load_arguments(row.arguments),
        cron=row.cron,
        interval_seconds=row.interval_seconds,
        start_time=row.start_time,
        end_time=row.end_time,
        max_concurrency=row.max_concurrency,
        no_catchup=row.no_catchup,
        enabled=row.enabled,
        last_tick_at=row.last_tick_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _tick_record(row: ScheduleTickRow) -> ScheduleTick:
    return ScheduleTick(
        recurring_run_id=row.recurring_run_id,
        namespace=row.namespace,
        tick_time=row.tick_time,
        run_id=row.run_id,
        claimed_at=row.claimed_at,
    )


class RecurringRunStore(StoreBase):
    """The recurring run and schedule tick methods of ``Store``."""

    def create_recurring_run(
        self,
        namespace: str,
        *,
        display_name: str,
        pipeline_spec: str | None = None,
        pipeline_version_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        experiment_id: str | None = None,
        description: str = "",
        cron: str | None = None,
        interval_seconds: int | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        max_concurrency: int = 1,
        no_catchup: bool = False,
        enabled: bool = True,
    ) -> RecurringRun:
        """Create a recurring run with exactly one trigger: ``cron`` (the expression is
        kept as text; the scheduler parses it) or ``interval_seconds``. The IR comes from
        exactly one of ``pipeline_spec`` and ``pipeline_version_id`` (copied: later runs
        use this snapshot even if the version is deleted).

        Example:
            >>> store.create_recurring_run("team-a", display_name="nightly",
            ...     pipeline_version_id=v.pipeline_version_id, cron="0 0 2 * * *",
            ...     max_concurrency=1, no_catchup=True).enabled
            True

        Raises:
            NotFound: the experiment or pipeline version is not in the namespace.
            Conflict: the experiment is archived.
            InvalidArgument: no trigger or two, no IR source or two, a bad window or limit.
        """
        check_namespace(namespace)
        check_name("recurring_run", display_name)
        if (cron is None) == (interval_seconds is None):
            raise InvalidArgument(
                "recurring_run", "cron", "give exactly one of cron and interval_seconds"
            )
        if cron is not None and (not cron.strip() or len(cron) > 255):
            raise InvalidArgument("recurring_run", "cron", f"not a cron expression: {cron!r}")
        if interval_seconds is not None and interval_seconds < 1:
            raise InvalidArgument(
                "recurring_run", "interval_seconds", f"must be at least 1, got {interval_seconds}"
            )
        if max_concurrency < 1:
            raise InvalidArgument(
                "recurring_run", "max_concurrency", f"must be at least 1, got {max_concurrency}"
            )
        start_time = check_time("recurring_run", "start_time", start_time)
        end_time = check_time("recurring_run", "end_time", end_time)
        if start_time is not None and end_time is not None and end_time <= start_time:
            raise InvalidArgument("recurring_run", "end_time", "must be after start_time")
        if (pipeline_spec is None) == (pipeline_version_id is None):
            raise InvalidArgument(
                "recurring_run",
                "pipeline_spec",
                "give exactly one of pipeline_spec and pipeline_version_id",
            )
        given_spec = spec_text("recurring_run", pipeline_spec) if pipeline_spec else None
        arguments_text = dump_arguments("recurring_run", arguments)
        with self._write() as session:
            if pipeline_version_id is not None:
                version = self._get(
                    session, PipelineVersionRow, namespace, pipeline_version_id, "pipeline_version"
                )
                text, digest = version.pipeline_spec, version.digest
            elif given_spec is not None:
                text, digest = given_spec
            else:  # refused above; kept for the type checker
                raise InvalidArgument("recurring_run", "pipeline_spec", "no IR source")
            if experiment_id is not None:
                _available_experiment(self, session, namespace, experiment_id)
            now = utc_now()
            row = RecurringRunRow(
                id=new_id(),
                namespace=namespace,
                display_name=display_name,
                description=description,
                experiment_id=experiment_id,
                pipeline_version_id=pipeline_version_id,
                pipeline_spec=text,
                pipeline_spec_digest=digest,
                arguments=arguments_text,
                cron=cron,
                interval_seconds=interval_seconds,
                start_time=start_time,
                end_time=end_time,
                max_concurrency=max_concurrency,
                no_catchup=no_catchup,
                enabled=enabled,
                last_tick_at=None,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            return recurring_run_record(row)

    def get_recurring_run(self, namespace: str, recurring_run_id: str) -> RecurringRun:
        """The recurring run with this id, with its IR snapshot.

        Raises:
            NotFound: no such recurring run in the namespace.
        """
        with self._read() as session:
            row = self._get(session, RecurringRunRow, namespace, recurring_run_id, "recurring_run")
            return recurring_run_record(row)

    def list_recurring_runs(
        self,
        namespace: str,
        filter: RecurringRunFilter | None = None,
        *,
        sort: SortOrder = "-created_at",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
        include_spec: bool = False,
    ) -> Page[RecurringRun]:
        """One page of the namespace's recurring runs (newest first by default), without
        their IR unless ``include_spec``. The scheduler lists ``enabled=True`` ones."""
        filter = filter or RecurringRunFilter()
        stmt: Select[RecurringRunRow] = select(RecurringRunRow).where(
            RecurringRunRow.namespace == namespace
        )
        stmt = apply_list_filter(stmt, RecurringRunRow, filter)
        if filter.experiment_id is not None:
            stmt = stmt.where(RecurringRunRow.experiment_id == filter.experiment_id)
        if filter.enabled is not None:
            stmt = stmt.where(RecurringRunRow.enabled.is_(filter.enabled))
        if not include_spec:
            stmt = stmt.options(defer(RecurringRunRow.pipeline_spec, raiseload=True))
        with self._read() as session:
            rows, token = fetch_page(
                session,
                stmt,
                RecurringRunRow,
                sort=sort,
                page_size=page_size,
                page_token=page_token,
                params=filter_params(filter),
                scope=scope("recurring_runs", namespace, filter),
            )
            items = [recurring_run_record(r, include_spec=include_spec) for r in rows]
            return Page(items=items, next_page_token=token)

    def set_recurring_run_enabled(
        self, namespace: str, recurring_run_id: str, enabled: bool
    ) -> RecurringRun:
        """Enable or disable a recurring run (KFP's enable/disable).

        Raises:
            NotFound: no such recurring run in the namespace.
            Conflict: enabling one whose experiment is archived.
        """
        with self._write() as session:
            row = self._get(
                session,
                RecurringRunRow,
                namespace,
                recurring_run_id,
                "recurring_run",
                for_update=True,
            )
            if enabled and row.experiment_id is not None:
                _available_experiment(self, session, namespace, row.experiment_id)
            if row.enabled != enabled:
                row.enabled = enabled
                row.updated_at = utc_now()
            session.flush()
            return recurring_run_record(row)

    def delete_recurring_run(self, namespace: str, recurring_run_id: str) -> None:
        """Delete a recurring run and its ticks; its runs stay (their recurring run id
        becomes ``None``).

        Raises:
            NotFound: no such recurring run in the namespace.
        """
        with self._write() as session:
            row = self._get(
                session,
                RecurringRunRow,
                namespace,
                recurring_run_id,
                "recurring_run",
                for_update=True,
            )
            session.delete(row)

    def claim_tick(
        self,
        namespace: str,
        recurring_run_id: str,
        tick_time: datetime,
        *,
        run_id: str | None = None,
    ) -> bool:
        """Claim one tick of a recurring run: ``True`` for the one caller that inserted it,
        ``False`` for everyone else (in any process). Advances ``last_tick_at``. To claim
        a tick and create its run atomically, use ``create_run(..., tick_time=...)``.

        Raises:
            NotFound: no such recurring run in the namespace.
        """
        tick = check_time("schedule_tick", "tick_time", tick_time)
        if run_id is not None:
            check_id("schedule_tick", "run_id", run_id)
        if tick is None:
            raise InvalidArgument("schedule_tick", "tick_time", "is required")
        try:
            with self._write() as session:
                row = self._get(
                    session,
                    RecurringRunRow,
                    namespace,
                    recurring_run_id,
                    "recurring_run",
                    for_update=True,
                )
                insert_tick(session, row, tick, run_id)
                return True
        except AlreadyExists:
            return False

    def list_ticks(
        self, namespace: str, recurring_run_id: str, *, limit: int = 100
    ) -> list[ScheduleTick]:
        """The latest ``limit`` ticks claimed for a recurring run, newest first.

        Raises:
            NotFound: no such recurring run in the namespace.
        """
        with self._read() as session:
            self._get(session, RecurringRunRow, namespace, recurring_run_id, "recurring_run")
            rows = session.scalars(
                select(ScheduleTickRow)
                .where(ScheduleTickRow.recurring_run_id == recurring_run_id)
                .order_by(ScheduleTickRow.tick_time.desc())
                .limit(limit)
            )
            return [_tick_record(r) for r in rows]


def _available_experiment(
    store: StoreBase, session: Session, namespace: str, experiment_id: str
) -> ExperimentRow:
    row = store._get(session, ExperimentRow, namespace, experiment_id, "experiment")
    if row.storage_state == StorageState.ARCHIVED.value:
        raise Conflict("experiment", experiment_id, "is archived; unarchive it first")
    return row


def insert_tick(
    session: Session, schedule: RecurringRunRow, tick_time: datetime, run_id: str | None
) -> None:
    """Insert a tick of ``schedule`` (whose row the caller has locked) and advance its
    ``last_tick_at``.

    Raises:
        AlreadyExists: the tick was claimed before (the unique constraint says so, in
            whichever process the other claim ran).
    """
    claimed = AlreadyExists(
        "schedule_tick", f"{tick_time.isoformat()} of recurring run {schedule.id}"
    )
    session.add(
        ScheduleTickRow(
            recurring_run_id=schedule.id,
            namespace=schedule.namespace,
            tick_time=tick_time,
            run_id=run_id,
            claimed_at=utc_now(),
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:
        raise claimed from exc
    if schedule.last_tick_at is None or tick_time > schedule.last_tick_at:
        schedule.last_tick_at = tick_time


def tick_claimed(session: Session, recurring_run_id: str, tick_time: datetime) -> bool:
    """Whether a tick was claimed already (a read; the constraint still decides races)."""
    stmt = select(ScheduleTickRow.id).where(
        ScheduleTickRow.recurring_run_id == recurring_run_id,
        ScheduleTickRow.tick_time == tick_time,
    )
    return session.scalars(stmt).first() is not None
