"""The service store on real SQLite and real PostgreSQL: CRUD, namespaces, concurrency,
pagination and migrations."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect

import raypipe
from raypipe.api.store import (
    AlreadyExists,
    Conflict,
    ExperimentFilter,
    InvalidArgument,
    ListFilter,
    NotFound,
    RecurringRunFilter,
    Run,
    RunFilter,
    RunState,
    SortOrder,
    StorageState,
    Store,
    create_engine,
    current_revision,
    database_url,
    head_revision,
    migrate,
)
from raypipe.api.store import database as store_database
from raypipe.api.store.database import sqlalchemy_url
from raypipe.api.store.migrations import VERSION_TABLE
from raypipe.api.store.models import Base
from tests.pipelines import addition

NS = "team-a"
OTHER = "team-b"
SPEC = json.dumps({"name": "demo", "root": {"dag": {"tasks": {}}}})
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

T = TypeVar("T")


def run_in_threads(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # collected, then asserted on
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def new_run(store: Store, name: str = "run", namespace: str = NS, **fields: Any) -> Run:
    fields.setdefault("pipeline_spec", SPEC)
    return store.create_run(namespace, display_name=name, **fields)


# --- migrations and configuration -------------------------------------------------------


def test_migrate_builds_the_schema_of_the_models_from_an_empty_database(store_url: str) -> None:
    assert current_revision(store_url) is None
    migrate(store_url)
    migrate(store_url)  # a second time is a no-op
    assert current_revision(store_url) == head_revision()
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, Base.metadata) == []
            unique = inspect(connection).get_unique_constraints("raypipe_schedule_ticks")
            assert [c["column_names"] for c in unique] == [["recurring_run_id", "tick_time"]]
    finally:
        engine.dispose()


def test_concurrent_migrators_on_an_empty_database_all_succeed(store_url: str) -> None:
    results = run_in_threads(3, lambda _: migrate(store_url))
    assert results == [None, None, None]
    assert current_revision(store_url) == head_revision()


def test_every_public_name_imports_and_errors_root_in_raypipe_error() -> None:
    import raypipe.api.store as public

    for name in public.__all__:
        assert getattr(public, name) is not None, name
    for error in (AlreadyExists, Conflict, InvalidArgument, NotFound):
        assert issubclass(error, public.StoreError)
        assert issubclass(error, raypipe.RaypipeError)


def test_default_store_is_sqlite_under_raypipe_home(
    raypipe_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYPIPE_DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{raypipe_home.resolve() / 'service.db'}"
    with Store() as store:
        assert store.backend == "sqlite"
        store.create_experiment(NS, "first")
    assert (raypipe_home / "service.db").is_file()
    monkeypatch.setenv("RAYPIPE_DATABASE_URL", "postgresql://u:secret@db:5432/raypipe")
    assert database_url() == "postgresql://u:secret@db:5432/raypipe"
    with pytest.raises(InvalidArgument, match="use sqlite"):
        Store("mysql://u@db/raypipe")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgresql_times_read_back_in_utc_whatever_the_sessions_zone(store_url: str) -> None:
    parsed = sqlalchemy_url(store_url)
    options = f"{parsed.query['options']} -cTimeZone=Asia/Tokyo"
    tokyo = parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)
    with Store(tokyo) as store:
        made = new_run(store, created_at=T0 + timedelta(hours=3))
        for found in (store.get_run(NS, made.run_id), store.list_runs(NS).items[0]):
            assert found.created_at == T0 + timedelta(hours=3)
            assert found.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_pooled_postgresql_connection_that_died_while_idle_is_replaced(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_database, "PING_AFTER_IDLE_S", 0.0)  # check at every use
    with Store(store_url) as store:
        made = new_run(store)
        with store._engine.connect() as connection:
            backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        # The connection back in the pool is the one the next call takes: end its server
        # process, as a database restart or an idle timeout would.
        admin = sqlalchemy.create_engine(sqlalchemy_url(store_url))
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")
        finally:
            admin.dispose()
        assert [r.run_id for r in store.list_runs(NS).items] == [made.run_id]
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() != backend


# --- experiments ------------------------------------------------------------------------


def test_experiment_lifecycle_create_archive_unarchive_delete(store: Store) -> None:
    exp = store.create_experiment(NS, "churn", description="weekly")
    assert store.get_experiment(NS, exp.experiment_id) == exp
    assert store.get_experiment_by_name(NS, "churn") == exp
    assert exp.created_at.tzinfo == timezone.utc
    with pytest.raises(AlreadyExists):
        store.create_experiment(NS, "churn")
    store.create_experiment(OTHER, "churn")  # names are unique per namespace only

    run = new_run(store, experiment_id=exp.experiment_id)
    schedule = store.create_recurring_run(
        NS,
        display_name="hourly",
        pipeline_spec=SPEC,
        interval_seconds=3600,
        experiment_id=exp.experiment_id,
    )
    assert store.get_experiment(NS, exp.experiment_id).last_run_created_at == run.created_at

    archived = store.archive_experiment(NS, exp.experiment_id)
    assert archived.storage_state is StorageState.ARCHIVED
    assert store.get_run(NS, run.run_id).storage_state is StorageState.ARCHIVED
    assert not store.get_recurring_run(NS, schedule.recurring_run_id).enabled
    with pytest.raises(Conflict, match="archived"):
        new_run(store, experiment_id=exp.experiment_id)
    with pytest.raises(Conflict, match="archived"):
        store.unarchive_run(NS, run.run_id)
    with pytest.raises(Conflict, match="archived"):
        store.set_recurring_run_enabled(NS, schedule.recurring_run_id, True)
    listed = store.list_experiments(NS, ExperimentFilter(storage_state=StorageState.AVAILABLE))
    assert listed.items == []

    store.unarchive_experiment(NS, exp.experiment_id)
    assert store.unarchive_run(NS, run.run_id).storage_state is StorageState.AVAILABLE
    assert store.set_recurring_run_enabled(NS, schedule.recurring_run_id, True).enabled

    with pytest.raises(Conflict, match="cascade"):
        store.delete_experiment(NS, exp.experiment_id)
    with pytest.raises(Conflict, match="active"):
        store.delete_experiment(NS, exp.experiment_id, cascade=True)
    store.transition_run(NS, run.run_id, [RunState.PENDING], RunState.CANCELED)
    store.delete_experiment(NS, exp.experiment_id, cascade=True)
    for gone in (
        lambda: store.get_experiment(NS, exp.experiment_id),
        lambda: store.get_run(NS, run.run_id),
        lambda: store.get_recurring_run(NS, schedule.recurring_run_id),
    ):
        with pytest.raises(NotFound):
            gone()


def test_default_experiment_is_created_once_even_by_racing_callers(store: Store) -> None:
    results = run_in_threads(4, lambda _: store.default_experiment(NS))
    ids = {r.experiment_id for r in results if not isinstance(r, BaseException)}
    assert len(ids) == 1, results
    assert store.get_experiment_by_name(NS, "Default").experiment_id in ids


# --- pipelines and versions -------------------------------------------------------------


def test_pipeline_version_keeps_the_ir_text_and_the_runtimes_digest(store: Store) -> None:
    spec_json = raypipe.compile(addition).model_dump_json()
    pipeline = store.create_pipeline(NS, "addition", description="adds")
    v1 = store.create_pipeline_version(NS, pipeline.pipeline_id, "v1", spec_json)
    assert v1.pipeline_spec == spec_json
    assert v1.digest == hashlib.sha256(spec_json.encode()).hexdigest()  # as the runtime's
    assert raypipe.spec.io.loads(v1.pipeline_spec).name == "addition"
    with pytest.raises(AlreadyExists):
        store.create_pipeline_version(NS, pipeline.pipeline_id, "v1", spec_json)
    with pytest.raises(InvalidArgument, match="pipeline_spec"):
        store.create_pipeline_version(NS, pipeline.pipeline_id, "bad", "name: yaml")
    v2 = store.create_pipeline_version(NS, pipeline.pipeline_id, "v2", SPEC)
    assert store.latest_pipeline_version(NS, pipeline.pipeline_id) == v2
    assert store.get_pipeline_by_name(NS, "addition") == pipeline

    page = store.list_pipeline_versions(NS, pipeline.pipeline_id, sort="name")
    assert [(v.display_name, v.pipeline_spec) for v in page.items] == [("v1", None), ("v2", None)]
    full = store.list_pipeline_versions(NS, pipeline.pipeline_id, include_spec=True)
    assert [v.pipeline_spec for v in full.items] == [SPEC, spec_json]

    run = store.create_run(
        NS, display_name="from v1", pipeline_version_id=v1.pipeline_version_id, arguments={"a": 1}
    )
    assert (run.pipeline_spec, run.pipeline_spec_digest) == (spec_json, v1.digest)
    store.delete_pipeline_version(NS, v1.pipeline_version_id)
    kept = store.get_run(NS, run.run_id)  # the run keeps its snapshot
    assert (kept.pipeline_version_id, kept.pipeline_spec) == (None, spec_json)

    with pytest.raises(Conflict, match="versions"):
        store.delete_pipeline(NS, pipeline.pipeline_id)
    store.delete_pipeline(NS, pipeline.pipeline_id, cascade=True)
    with pytest.raises(NotFound):
        store.get_pipeline_version(NS, v2.pipeline_version_id)


# --- runs -------------------------------------------------------------------------------


def test_run_from_uploaded_ir_keeps_given_id_arguments_and_times(store: Store) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    run = new_run(store, "uploaded", run_id=run_id, arguments={"a": 1, "b": [2.5, "x"]})
    assert (run.run_id, run.state, run.storage_state) == (
        run_id,
        RunState.PENDING,
        StorageState.AVAILABLE,
    )
    assert run.arguments == {"a": 1, "b": [2.5, "x"]}
    assert run.scheduled_at == run.created_at and run.finished_at is None
    assert store.get_run(NS, run_id) == run
    with pytest.raises(AlreadyExists):
        new_run(store, run_id=run_id)
    with pytest.raises(InvalidArgument, match="exactly one"):
        store.create_run(NS, display_name="none")
    with pytest.raises(InvalidArgument, match="timezone"):
        new_run(store, created_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument, match="arguments"):
        new_run(store, arguments={"nan": float("nan")})


def test_transition_is_compare_and_set_and_exactly_one_racer_wins(store: Store) -> None:
    run = new_run(store)
    wins = run_in_threads(
        8, lambda i: store.transition_run(NS, run.run_id, [RunState.PENDING], RunState.RUNNING)
    )
    assert sorted(wins, key=str) == [False] * 7 + [True]
    assert store.get_run(NS, run.run_id).state is RunState.RUNNING

    assert not store.transition_run(
        NS, run.run_id, [RunState.RUNNING], RunState.FAILED, expect_owner="someone-else"
    )
    assert store.transition_run(
        NS, run.run_id, [RunState.RUNNING], RunState.FAILED, error_message="train failed"
    )
    failed = store.get_run(NS, run.run_id)
    assert failed.error_message == "train failed" and failed.finished_at is not None
    # a retry leaves the terminal state and clears finished_at
    assert store.transition_run(NS, run.run_id, [RunState.FAILED], RunState.PENDING)
    assert store.get_run(NS, run.run_id).finished_at is None
    with pytest.raises(NotFound):
        store.transition_run(NS, "f" * 32, [RunState.PENDING], RunState.RUNNING)


def test_delete_run_refuses_an_active_run(store: Store) -> None:
    run = new_run(store)
    with pytest.raises(Conflict, match="PENDING"):
        store.delete_run(NS, run.run_id)
    store.transition_run(NS, run.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    store.delete_run(NS, run.run_id)
    with pytest.raises(NotFound):
        store.get_run(NS, run.run_id)


def test_owner_lease_lets_one_instance_take_over_a_stale_run(store: Store) -> None:
    now = datetime.now(timezone.utc)
    live = new_run(store, "live", owner_id="instance-1")
    assert (live.owner_id, live.heartbeat_at) == ("instance-1", live.created_at)
    done = new_run(store, "done", owner_id="instance-1")
    store.transition_run(NS, done.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    assert store.renew_leases("instance-1") == 1  # active runs only
    renewed = store.get_run(NS, live.run_id).heartbeat_at
    assert renewed is not None and renewed >= live.created_at
    # the owner of this one stopped beating an hour ago (its heartbeat is its creation)
    stale = new_run(store, "stale", owner_id="instance-0", created_at=now - timedelta(hours=1))
    unowned = new_run(store, "unowned", created_at=now - timedelta(hours=1))

    cutoff = now - timedelta(minutes=1)  # lease time: one minute
    found = store.list_stale_runs(NS, heartbeat_before=cutoff)
    assert [r.run_id for r in found] == sorted([stale.run_id, unowned.run_id])
    assert not store.acquire_run(NS, live.run_id, "instance-2", stale_before=cutoff)
    assert not store.acquire_run(NS, stale.run_id, "instance-2")  # taken unless stale_before
    wins = run_in_threads(
        4, lambda i: store.acquire_run(NS, stale.run_id, f"instance-{i + 2}", stale_before=cutoff)
    )
    assert sorted(wins, key=str) == [False, False, False, True]
    owner = store.get_run(NS, stale.run_id).owner_id
    assert owner == f"instance-{wins.index(True) + 2}"
    assert store.acquire_run(NS, unowned.run_id, "instance-9")  # no owner: free to take
    assert store.list_stale_runs(NS, heartbeat_before=cutoff) == []
    assert not store.release_run(NS, stale.run_id, "instance-9")
    assert store.release_run(NS, stale.run_id, owner)
    assert store.acquire_run(NS, stale.run_id, "instance-9")
    assert not store.acquire_run(NS, done.run_id, "instance-9")  # ended runs have no lease


# --- recurring runs and ticks -----------------------------------------------------------


def test_a_tick_makes_one_run_however_many_claim_it_concurrently(store_url: str) -> None:
    with Store(store_url) as first, Store(store_url) as second:  # two "service processes"
        schedule = first.create_recurring_run(
            NS,
            display_name="every minute",
            pipeline_spec=SPEC,
            interval_seconds=60,
            max_concurrency=100,
            arguments={"a": 1},
        )
        rr = schedule.recurring_run_id

        def create(i: int) -> Run:
            store = first if i % 2 else second
            return store.create_run(NS, display_name=f"tick-{i}", recurring_run_id=rr, tick_time=T0)

        results = run_in_threads(8, create)
        runs = [r for r in results if isinstance(r, Run)]
        assert len(runs) == 1, results
        assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, Run))
        (run,) = runs
        assert (run.scheduled_at, run.recurring_run_id, run.arguments) == (T0, rr, {"a": 1})
        assert run.pipeline_spec_digest == schedule.pipeline_spec_digest

        tick = T0 + timedelta(minutes=1)
        claims = run_in_threads(8, lambda i: (first, second)[i % 2].claim_tick(NS, rr, tick))
        assert sorted(claims, key=str) == [False] * 7 + [True]
        ticks = first.list_ticks(NS, rr)
        assert [(t.tick_time, t.run_id) for t in ticks] == [(tick, None), (T0, run.run_id)]
        assert first.get_recurring_run(NS, rr).last_tick_at == tick
        assert first.count_runs(NS, RunFilter(recurring_run_id=rr)) == 1


def test_recurring_run_honours_max_concurrency_and_enabled(store: Store) -> None:
    with pytest.raises(InvalidArgument, match="exactly one of cron"):
        store.create_recurring_run(NS, display_name="x", pipeline_spec=SPEC)
    with pytest.raises(InvalidArgument, match="end_time"):
        store.create_recurring_run(
            NS,
            display_name="x",
            pipeline_spec=SPEC,
            cron="0 * * * * *",
            start_time=T0,
            end_time=T0,
        )
    schedule = store.create_recurring_run(
        NS, display_name="nightly", pipeline_spec=SPEC, cron="0 0 2 * * *", no_catchup=True
    )
    assert (schedule.cron, schedule.max_concurrency, schedule.no_catchup) == (
        "0 0 2 * * *",
        1,
        True,
    )
    rr = schedule.recurring_run_id
    first = store.create_run(NS, display_name="t0", recurring_run_id=rr, tick_time=T0)
    t1 = T0 + timedelta(days=1)
    with pytest.raises(Conflict, match="max_concurrency is 1"):
        store.create_run(NS, display_name="t1", recurring_run_id=rr, tick_time=t1)
    store.transition_run(NS, first.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    store.create_run(NS, display_name="t1", recurring_run_id=rr, tick_time=t1)
    store.set_recurring_run_enabled(NS, rr, False)
    with pytest.raises(Conflict, match="disabled"):
        store.create_run(NS, display_name="t2", recurring_run_id=rr, tick_time=t1 + timedelta(1))
    assert store.list_recurring_runs(NS, RecurringRunFilter(enabled=True)).items == []
    store.delete_recurring_run(NS, rr)
    assert store.get_run(NS, first.run_id).recurring_run_id is None  # runs stay


# --- namespaces -------------------------------------------------------------------------


def test_another_namespace_sees_nothing_and_cannot_touch_anything(store: Store) -> None:
    exp = store.create_experiment(NS, "exp")
    pipeline = store.create_pipeline(NS, "pipe")
    version = store.create_pipeline_version(NS, pipeline.pipeline_id, "v1", SPEC)
    run = new_run(store, experiment_id=exp.experiment_id)
    schedule = store.create_recurring_run(
        NS, display_name="rr", pipeline_spec=SPEC, interval_seconds=60
    )
    rr = schedule.recurring_run_id
    new_run(store, "second")
    page = store.list_runs(NS, page_size=1)
    assert page.next_page_token is not None

    for call in (
        lambda: store.get_experiment(OTHER, exp.experiment_id),
        lambda: store.get_experiment_by_name(OTHER, "exp"),
        lambda: store.archive_experiment(OTHER, exp.experiment_id),
        lambda: store.delete_experiment(OTHER, exp.experiment_id, cascade=True),
        lambda: store.get_pipeline(OTHER, pipeline.pipeline_id),
        lambda: store.create_pipeline_version(OTHER, pipeline.pipeline_id, "v2", SPEC),
        lambda: store.get_pipeline_version(OTHER, version.pipeline_version_id),
        lambda: store.list_pipeline_versions(OTHER, pipeline.pipeline_id),
        lambda: store.delete_pipeline(OTHER, pipeline.pipeline_id, cascade=True),
        lambda: store.get_run(OTHER, run.run_id),
        lambda: store.transition_run(OTHER, run.run_id, [RunState.PENDING], RunState.RUNNING),
        lambda: store.acquire_run(OTHER, run.run_id, "intruder"),
        lambda: store.archive_run(OTHER, run.run_id),
        lambda: store.delete_run(OTHER, run.run_id),
        lambda: store.create_run(
            OTHER, display_name="x", pipeline_version_id=version.pipeline_version_id
        ),
        lambda: new_run(store, namespace=OTHER, experiment_id=exp.experiment_id),
        lambda: store.get_recurring_run(OTHER, rr),
        lambda: store.claim_tick(OTHER, rr, T0),
        lambda: store.create_run(OTHER, display_name="x", recurring_run_id=rr, tick_time=T0),
        lambda: store.set_recurring_run_enabled(OTHER, rr, False),
        lambda: store.list_ticks(OTHER, rr),
    ):
        with pytest.raises(NotFound):
            call()
    assert store.list_experiments(OTHER).items == []
    assert store.list_pipelines(OTHER).items == []
    assert store.list_runs(OTHER).items == []
    assert store.list_recurring_runs(OTHER).items == []
    assert store.count_runs(OTHER) == 0
    assert store.list_stale_runs(OTHER, heartbeat_before=T0 + timedelta(days=9999)) == []
    assert not store.release_run(OTHER, run.run_id, "intruder")
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_runs(OTHER, page_size=1, page_token=page.next_page_token)
    assert store.get_run(NS, run.run_id).state is RunState.PENDING  # untouched
    assert store.namespaces() == [NS]


# --- lists ------------------------------------------------------------------------------


def _walk(
    store: Store, sort: SortOrder, page_size: int, filter: RunFilter | None = None
) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    while True:
        page = store.list_runs(NS, filter, sort=sort, page_size=page_size, page_token=token)
        assert len(page.items) <= page_size
        ids += [r.run_id for r in page.items]
        token = page.next_page_token
        if token is None:
            return ids


def test_keyset_pages_cover_every_run_once_with_ties_in_created_at(store: Store) -> None:
    runs = [
        new_run(store, f"run-{i % 4}", created_at=T0 + timedelta(seconds=i % 3)) for i in range(23)
    ]  # 3 distinct creation times, 4 distinct names: many ties on either key
    by_time = sorted(runs, key=lambda r: (r.created_at, r.run_id))
    by_name = sorted(runs, key=lambda r: (r.display_name, r.run_id))
    expected: dict[SortOrder, list[str]] = {
        "created_at": [r.run_id for r in by_time],
        "-created_at": [r.run_id for r in reversed(by_time)],
        "name": [r.run_id for r in by_name],
        "-name": [r.run_id for r in reversed(by_name)],
    }
    for sort, order in expected.items():
        for page_size in (1, 4, 23, 50):
            assert _walk(store, sort, page_size) == order, (sort, page_size)

    first = store.list_runs(NS, page_size=5)
    newer = new_run(store, "late", created_at=T0 + timedelta(hours=1))
    rest = _walk_from(store, first.next_page_token)  # a run created meanwhile is not repeated
    assert [r.run_id for r in first.items] + rest == expected["-created_at"]
    assert newer.run_id not in rest
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_runs(NS, sort="name", page_token=first.next_page_token)
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_runs(NS, RunFilter(name_contains="run"), page_token=first.next_page_token)
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_runs(NS, page_token="not-a-token")
    with pytest.raises(InvalidArgument, match="page_size"):
        store.list_runs(NS, page_size=0)


def _walk_from(store: Store, token: str | None) -> list[str]:
    ids: list[str] = []
    while token is not None:
        page = store.list_runs(NS, page_size=5, page_token=token)
        ids += [r.run_id for r in page.items]
        token = page.next_page_token
    return ids


def test_run_filters_select_by_state_parent_name_and_time(store: Store) -> None:
    exp = store.create_experiment(NS, "exp")
    pipeline = store.create_pipeline(NS, "pipe")
    version = store.create_pipeline_version(NS, pipeline.pipeline_id, "v1", SPEC)
    schedule = store.create_recurring_run(
        NS, display_name="rr", pipeline_spec=SPEC, interval_seconds=60, max_concurrency=5
    )
    a = new_run(store, "Nightly 50%", experiment_id=exp.experiment_id, created_at=T0)
    b = store.create_run(
        NS,
        display_name="nightly_b",
        pipeline_version_id=version.pipeline_version_id,
        created_at=T0 + timedelta(hours=1),
    )
    c = store.create_run(
        NS,
        display_name="other",
        recurring_run_id=schedule.recurring_run_id,
        tick_time=T0,
        created_at=T0 + timedelta(hours=2),
    )
    store.transition_run(NS, b.run_id, [RunState.PENDING], RunState.RUNNING)
    store.archive_run(NS, c.run_id)

    def ids(filter: RunFilter) -> set[str]:
        listed = {r.run_id for r in store.list_runs(NS, filter).items}
        assert store.count_runs(NS, filter) == len(listed)
        return listed

    assert ids(RunFilter()) == {a.run_id, b.run_id, c.run_id}
    assert ids(RunFilter(states=[RunState.RUNNING])) == {b.run_id}
    assert ids(RunFilter(states=[RunState.PENDING, RunState.RUNNING])) == {
        a.run_id,
        b.run_id,
        c.run_id,
    }
    assert ids(RunFilter(experiment_id=exp.experiment_id)) == {a.run_id}
    assert ids(RunFilter(pipeline_version_id=version.pipeline_version_id)) == {b.run_id}
    assert ids(RunFilter(recurring_run_id=schedule.recurring_run_id)) == {c.run_id}
    assert ids(RunFilter(name_contains="NIGHTLY")) == {a.run_id, b.run_id}
    assert ids(RunFilter(name_contains="50%")) == {a.run_id}  # % is not a wildcard
    assert ids(RunFilter(name_contains="y_")) == {b.run_id}  # nor is _
    assert ids(RunFilter(name_contains="")) == {a.run_id, b.run_id, c.run_id}
    assert ids(RunFilter(created_after=T0)) == {b.run_id, c.run_id}
    assert ids(RunFilter(created_before=T0 + timedelta(hours=1))) == {a.run_id}
    assert ids(RunFilter(storage_state=StorageState.ARCHIVED)) == {c.run_id}
    assert ids(RunFilter(name_contains="nightly", states=[RunState.PENDING])) == {a.run_id}
    assert [
        p.display_name for p in store.list_pipelines(NS, ListFilter(name_contains="PI")).items
    ] == ["pipe"]


def test_run_counts_by_experiment_and_schedule_in_one_query(store: Store) -> None:
    exp, other, empty = (store.create_experiment(NS, n).experiment_id for n in "abc")
    schedule = store.create_recurring_run(
        NS, display_name="rr", pipeline_spec=SPEC, interval_seconds=60, max_concurrency=5
    )
    done = new_run(store, experiment_id=exp)
    store.transition_run(NS, done.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    new_run(store, experiment_id=exp)  # PENDING: active
    new_run(store, experiment_id=other)
    store.create_run(
        NS, display_name="tick", recurring_run_id=schedule.recurring_run_id, tick_time=T0
    )
    by_experiment = store.count_runs_by(NS, "experiment_id", [exp, other, empty, "nope"])
    assert {id: (c.runs, c.active) for id, c in by_experiment.items()} == {
        exp: (2, 1),
        other: (1, 1),
        empty: (0, 0),
        "nope": (0, 0),
    }
    for id, counted in by_experiment.items():
        assert counted.runs == store.count_runs(NS, RunFilter(experiment_id=id))
    by_schedule = store.count_runs_by(NS, "recurring_run_id", [schedule.recurring_run_id])
    assert by_schedule[schedule.recurring_run_id].runs == 1
    assert store.count_runs_by(NS, "experiment_id", []) == {}
    assert store.count_runs_by(OTHER, "experiment_id", [exp])[exp].runs == 0  # not theirs


def test_run_lists_are_index_range_scans_in_sqlite(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as store:
        exp = store.create_experiment(NS, "exp")
        new_run(store, experiment_id=exp.experiment_id)
        new_run(store, experiment_id=exp.experiment_id)
        statements: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
            if "FROM raypipe_runs" in sql and "LIMIT" in sql:
                statements.append((sql, params))

        event.listen(store._engine, "before_cursor_execute", capture)
        page = store.list_runs(NS, RunFilter(experiment_id=exp.experiment_id), page_size=1)
        store.list_runs(
            NS,
            RunFilter(experiment_id=exp.experiment_id),
            page_size=1,
            page_token=page.next_page_token,
        )
        store.list_runs(NS, RunFilter(states=[RunState.PENDING]), page_size=1)
        store.list_runs(NS, sort="name", page_size=1)
        event.remove(store._engine, "before_cursor_execute", capture)
        assert len(statements) == 4
        with store._engine.connect() as connection:
            for sql, params in statements:
                plan = " | ".join(
                    str(row[-1])
                    for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                )
                assert "INDEX ix_raypipe_runs_" in plan, plan
                assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives the order
