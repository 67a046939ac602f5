"""``Store``: the raypipe service's state in a SQL database (SQLite or PostgreSQL).

Example:
    >>> from raypipe.api.store import RunState, Store
    >>> with Store("sqlite:////tmp/raypipe/service.db") as store:
    ...     exp = store.create_experiment("team-a", "churn")
    ...     run = store.create_run("team-a", display_name="first", experiment_id=exp.experiment_id,
    ...                            pipeline_spec='{"name": "churn"}', arguments={"a": 1})
    ...     store.transition_run("team-a", run.run_id, [RunState.PENDING], RunState.RUNNING)
    True
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.engine import make_url

from raypipe.api.store.database import create_engine, database_url
from raypipe.api.store.experiments import ExperimentStore
from raypipe.api.store.leases import LeaseStore
from raypipe.api.store.migrations import migrate as migrate_schema
from raypipe.api.store.pipelines import PipelineStore
from raypipe.api.store.recurring_runs import RecurringRunStore
from raypipe.api.store.runs import RunStore

__all__ = ["Store"]


class Store(ExperimentStore, PipelineStore, RunStore, RecurringRunStore, LeaseStore):
    """Experiments, pipelines and versions, runs, recurring runs and schedule ticks, each in
    a namespace, and service leases (which instance runs the executor): every method takes
    the namespace and never sees another's rows (an id of another namespace is not found).

    Methods are thread-safe and each is one transaction; several service processes may
    share one database. State changes that can race are compare-and-set
    (``transition_run``, ``acquire_run``) or guarded by a unique constraint
    (``claim_tick``). Errors are ``StoreError``s (``NotFound``, ``AlreadyExists``,
    ``Conflict``, ``InvalidArgument``); what is returned are frozen pydantic records.

    Args:
        url: ``sqlite:///path`` or ``postgresql://user:password@host:port/database``;
            default ``database_url()`` (``RAYPIPE_DATABASE_URL``, else
            ``$RAYPIPE_HOME/service.db``).
        migrate: bring the schema to the newest revision first (default), as the service
            does on start.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self._url = url or database_url()
        engine = create_engine(self._url)
        try:
            if migrate:
                migrate_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        super().__init__(engine)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close the store's database connections (the store is unusable afterwards)."""
        self._engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({make_url(self._url).render_as_string(hide_password=True)!r})"
