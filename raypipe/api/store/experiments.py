"""Experiments in the store: create, read, list, archive and unarchive, delete.

Example:
    >>> exp = store.create_experiment("team-a", "churn", description="weekly churn model")
    >>> store.archive_experiment("team-a", exp.experiment_id).storage_state
    <StorageState.ARCHIVED: 'ARCHIVED'>
"""

from __future__ import annotations

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raypipe.api.store.base import StoreBase, check_name, check_namespace, new_id, utc_now
from raypipe.api.store.errors import AlreadyExists, Conflict, NotFound
from raypipe.api.store.filters import apply_list_filter, filter_params, scope
from raypipe.api.store.models import ExperimentRow, RecurringRunRow, RunRow
from raypipe.api.store.paging import DEFAULT_PAGE_SIZE, fetch_page
from raypipe.api.store.records import (
    ACTIVE_STATES,
    Experiment,
    ExperimentFilter,
    Page,
    SortOrder,
    StorageState,
)

__all__ = ["DEFAULT_EXPERIMENT", "ExperimentStore", "experiment_record"]

DEFAULT_EXPERIMENT = "Default"
"""Display name of the experiment ``default_experiment`` finds or creates (as in KFP)."""


def experiment_record(row: ExperimentRow) -> Experiment:
    """The record of an experiment row."""
    return Experiment(
        experiment_id=row.id,
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        created_at=row.created_at,
        storage_state=StorageState(row.storage_state),
        last_run_created_at=row.last_run_created_at,
    )


class ExperimentStore(StoreBase):
    """The experiment methods of ``Store``."""

    def create_experiment(
        self, namespace: str, display_name: str, *, description: str = ""
    ) -> Experiment:
        """Create an experiment; its display name is unique in the namespace.

        Example:
            >>> store.create_experiment("team-a", "churn").storage_state
            <StorageState.AVAILABLE: 'AVAILABLE'>

        Raises:
            AlreadyExists: the namespace has an experiment of that name.
        """
        check_namespace(namespace)
        check_name("experiment", display_name)
        row = ExperimentRow(
            id=new_id(),
            namespace=namespace,
            display_name=display_name,
            description=description,
            created_at=utc_now(),
            storage_state=StorageState.AVAILABLE.value,
            last_run_created_at=None,
        )
        try:
            with self._write() as session:
                session.add(row)
                session.flush()
                return experiment_record(row)
        except IntegrityError as exc:
            raise AlreadyExists("experiment", repr(display_name)) from exc

    def get_experiment(self, namespace: str, experiment_id: str) -> Experiment:
        """The experiment with this id.

        Raises:
            NotFound: no such experiment in the namespace.
        """
        with self._read() as session:
            return experiment_record(
                self._get(session, ExperimentRow, namespace, experiment_id, "experiment")
            )

    def get_experiment_by_name(self, namespace: str, display_name: str) -> Experiment:
        """The experiment with this display name.

        Raises:
            NotFound: no such experiment in the namespace.
        """
        with self._read() as session:
            row = _by_name(session, namespace, display_name)
            if row is None:
                raise NotFound("experiment", repr(display_name))
            return experiment_record(row)

    def default_experiment(self, namespace: str) -> Experiment:
        """The namespace's ``Default`` experiment, created on first use (race-free: two
        callers get the same one)."""
        try:
            return self.get_experiment_by_name(namespace, DEFAULT_EXPERIMENT)
        except NotFound:
            pass
        try:
            return self.create_experiment(namespace, DEFAULT_EXPERIMENT)
        except AlreadyExists:
            return self.get_experiment_by_name(namespace, DEFAULT_EXPERIMENT)

    def list_experiments(
        self,
        namespace: str,
        filter: ExperimentFilter | None = None,
        *,
        sort: SortOrder = "-created_at",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        """One page of the namespace's experiments (newest first by default).

        Example:
            >>> page = store.list_experiments("team-a", ExperimentFilter(name_contains="churn"))
            >>> [e.display_name for e in page.items], page.next_page_token
            (['churn'], None)
        """
        filter = filter or ExperimentFilter()
        stmt: Select[ExperimentRow] = select(ExperimentRow).where(
            ExperimentRow.namespace == namespace
        )
        stmt = apply_list_filter(stmt, ExperimentRow, filter)
        if filter.storage_state is not None:
            stmt = stmt.where(ExperimentRow.storage_state == filter.storage_state.value)
        with self._read() as session:
            rows, token = fetch_page(
                session,
                stmt,
                ExperimentRow,
                sort=sort,
                page_size=page_size,
                page_token=page_token,
                params=filter_params(filter),
                scope=scope("experiments", namespace, filter),
            )
            return Page(items=[experiment_record(r) for r in rows], next_page_token=token)

    def archive_experiment(self, namespace: str, experiment_id: str) -> Experiment:
        """Archive an experiment, with all its runs, and disable its recurring runs (KFP's
        semantics).

        Raises:
            NotFound: no such experiment in the namespace.
        """
        with self._write() as session:
            row = self._get(session, ExperimentRow, namespace, experiment_id, "experiment")
            row.storage_state = StorageState.ARCHIVED.value
            session.execute(
                update(RunRow)
                .where(RunRow.namespace == namespace, RunRow.experiment_id == experiment_id)
                .values(storage_state=StorageState.ARCHIVED.value)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(RecurringRunRow)
                .where(
                    RecurringRunRow.namespace == namespace,
                    RecurringRunRow.experiment_id == experiment_id,
                    RecurringRunRow.enabled.is_(True),
                )
                .values(enabled=False, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            session.flush()
            return experiment_record(row)

    def unarchive_experiment(self, namespace: str, experiment_id: str) -> Experiment:
        """Make an archived experiment available again; its runs stay archived and its
        recurring runs disabled until unarchived or enabled one by one (as in KFP).

        Raises:
            NotFound: no such experiment in the namespace.
        """
        with self._write() as session:
            row = self._get(session, ExperimentRow, namespace, experiment_id, "experiment")
            row.storage_state = StorageState.AVAILABLE.value
            session.flush()
            return experiment_record(row)

    def delete_experiment(
        self, namespace: str, experiment_id: str, *, cascade: bool = False
    ) -> None:
        """Delete an experiment. Without ``cascade`` it must have no runs and no recurring
        runs; with it, its recurring runs and runs go too (none may be active).

        Raises:
            NotFound: no such experiment in the namespace.
            Conflict: the experiment has runs or recurring runs (without ``cascade``), or an
                active run (with it).
        """
        with self._write() as session:
            self._get(
                session, ExperimentRow, namespace, experiment_id, "experiment", for_update=True
            )
            of_experiment = RunRow.experiment_id == experiment_id
            has_runs = session.scalar(select(exists().where(of_experiment)))
            has_schedules = session.scalar(
                select(exists().where(RecurringRunRow.experiment_id == experiment_id))
            )
            if not cascade and (has_runs or has_schedules):
                raise Conflict(
                    "experiment",
                    experiment_id,
                    "has runs or recurring runs; delete them first or pass cascade=True",
                )
            active = session.scalar(
                select(func.count())
                .select_from(RunRow)
                .where(of_experiment, RunRow.state.in_([s.value for s in ACTIVE_STATES]))
            )
            if active:
                raise Conflict("experiment", experiment_id, f"{active} of its runs are active")
            session.execute(
                delete(RunRow).where(of_experiment).execution_options(synchronize_session=False)
            )
            session.execute(
                delete(RecurringRunRow)
                .where(RecurringRunRow.experiment_id == experiment_id)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                delete(ExperimentRow)
                .where(ExperimentRow.id == experiment_id)
                .execution_options(synchronize_session=False)
            )


def _by_name(session: Session, namespace: str, display_name: str) -> ExperimentRow | None:
    return session.scalars(
        select(ExperimentRow).where(
            ExperimentRow.namespace == namespace, ExperimentRow.display_name == display_name
        )
    ).first()
