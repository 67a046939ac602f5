"""Service leases and the executor's queries, on SQLite and PostgreSQL: one process holds
the executor role at a time; new runs wait, unowned, for whichever executor takes them."""

from __future__ import annotations

import time
from pathlib import Path

from raypipe.api.executor import RunExecutor
from raypipe.api.leadership import EXECUTOR_LEASE, ExecutionLeader
from raypipe.api.recurring import RecurringScheduler
from raypipe.api.store import Conflict, NotFound, RunState, Store
from raypipe.api.store.write_lock import SqliteWriteLock
from tests.service.test_store import NS, OTHER, new_run, run_in_threads


def test_one_instance_holds_a_lease_until_it_expires_or_is_released(store: Store) -> None:
    wins = run_in_threads(6, lambda i: store.acquire_lease("executor", f"proc-{i}", seconds=60))
    assert sorted(wins, key=str) == [False] * 5 + [True]
    holder = store.lease_holder("executor")
    assert holder is not None and holder.owner_id == f"proc-{wins.index(True)}"
    assert store.acquire_lease("executor", holder.owner_id, seconds=60)  # renewal
    assert not store.acquire_lease("executor", "newcomer", seconds=60)
    assert not store.release_lease("executor", "newcomer")  # not the newcomer's to give up
    assert store.release_lease("executor", holder.owner_id)
    assert store.lease_holder("executor") is None
    assert store.acquire_lease("executor", "newcomer", seconds=0.05)
    time.sleep(0.1)  # the newcomer went silent past its lease
    assert store.acquire_lease("executor", "successor", seconds=60)
    successor = store.lease_holder("executor")
    assert successor is not None and successor.owner_id == "successor"
    assert successor.expires_at > successor.acquired_at


def test_new_runs_wait_unowned_for_an_executor_in_any_namespace(store: Store) -> None:
    first, second = new_run(store, "first"), new_run(store, "second", namespace=OTHER)
    driven = new_run(store, "driven", owner_id="proc-1")
    ended = new_run(store, "ended")
    store.transition_run(NS, ended.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    assert [r.run_id for r in store.list_unowned_runs()] == [first.run_id, second.run_id]
    assert store.list_unowned_runs()[0].pipeline_spec is None  # lists leave the IR out

    assert store.acquire_run(OTHER, second.run_id, "proc-1")
    assert [r.run_id for r in store.list_unowned_runs()] == [first.run_id]
    store.transition_run(OTHER, second.run_id, [RunState.PENDING], RunState.CANCELING)
    assert store.owned_runs("proc-1", [RunState.CANCELING]) == [(OTHER, second.run_id)]
    assert store.owned_runs("proc-1", [RunState.PENDING]) == [(NS, driven.run_id)]
    assert store.owned_runs("proc-2", [RunState.CANCELING]) == []


def test_a_run_in_an_archived_or_missing_experiment_is_refused(store: Store) -> None:
    experiment = store.create_experiment(NS, "exp")
    store.archive_experiment(NS, experiment.experiment_id)
    refusals: list[tuple[str, type[Exception]]] = [
        (experiment.experiment_id, Conflict),
        ("missing", NotFound),
    ]
    for experiment_id, error in refusals:
        try:
            new_run(store, "refused", experiment_id=experiment_id)
        except error as exc:
            assert experiment_id in str(exc)
        else:
            raise AssertionError(f"a run in {experiment_id} was created")
    assert store.count_runs(NS) == 0
    assert store.get_experiment(NS, experiment.experiment_id).last_run_created_at is None


def test_sqlite_writers_of_two_stores_on_one_file_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    with Store(url) as one, Store(url) as two:  # as two server processes would
        runs = run_in_threads(
            20, lambda i: new_run(one if i % 2 else two, f"run-{i}", owner_id=None)
        )
        assert all(not isinstance(r, BaseException) for r in runs), runs
        assert one.count_runs(NS) == 20
        lock = one._write_lock
        assert isinstance(lock, SqliteWriteLock) and lock.path.endswith("service.db.write-lock")


def test_one_of_two_service_processes_executes_and_the_other_takes_over(store: Store) -> None:
    def leader(owner: str) -> ExecutionLeader:
        executor = RunExecutor(store, owner_id=owner, lease_seconds=0.6, poll_seconds=0.05)
        return ExecutionLeader(store, executor, RecurringScheduler(store, executor))

    first, second = leader("proc-1"), leader("proc-2")
    first.start()
    second.start()
    try:
        assert first.is_leader and first.executor.running
        assert not second.is_leader and not second.executor.running
        first.stop()  # a clean stop releases the lease: the other takes it at its next try
        assert not first.executor.running
        deadline = time.monotonic() + 30
        while not second.is_leader:
            assert time.monotonic() < deadline, "the second process never took the lease"
            time.sleep(0.05)
        assert second.executor.running
        holder = store.lease_holder(EXECUTOR_LEASE)
        assert holder is not None and holder.owner_id == "proc-2"
    finally:
        first.stop()
        second.stop()
    assert store.lease_holder(EXECUTOR_LEASE) is None
