"""Recurring runs: one run per tick, enforced by the store, across restarts and instances."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import raypipe
from raypipe.api.app import API_PREFIX, create_app
from raypipe.api.auth import parse_tokens
from raypipe.api.executor import RunExecutor
from raypipe.api.recurring import RecurringScheduler
from raypipe.api.store import RunFilter, RunState, Store
from tests.pipelines import addition

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
NS = "team"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as opened:
        yield opened


def _schedule(store: Store, **options: object) -> str:
    spec = raypipe.compile(addition).model_dump_json()
    made = store.create_recurring_run(
        NS,
        display_name="every-minute",
        pipeline_spec=spec,
        arguments={"a": 1, "b": 2},
        interval_seconds=60,
        start_time=T0,
        **options,  # type: ignore[arg-type]
    )
    return made.recurring_run_id


def _ticks(store: Store, recurring_run_id: str) -> list[datetime]:
    runs = store.list_runs(NS, RunFilter(recurring_run_id=recurring_run_id), page_size=1000)
    return sorted(r.scheduled_at for r in runs.items)


def test_missed_ticks_are_caught_up_once_each_even_after_a_restart(store: Store) -> None:
    recurring = _schedule(store, max_concurrency=10)
    first = RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=150))
    assert first.sweep() == 3
    assert first.sweep() == 0  # nothing doubles
    restarted = RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=150))
    assert restarted.sweep() == 0  # the store, not memory, knows what was started
    later = RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=185))
    assert later.sweep() == 1
    assert _ticks(store, recurring) == [T0 + timedelta(seconds=s) for s in (0, 60, 120, 180)]


def test_without_catch_up_only_the_latest_missed_tick_runs(store: Store) -> None:
    recurring = _schedule(store, max_concurrency=10, no_catchup=True)
    scheduler = RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=610))
    assert scheduler.sweep() == 1
    assert _ticks(store, recurring) == [T0 + timedelta(seconds=600)]


def test_max_concurrency_holds_back_ticks_until_a_run_ends(store: Store) -> None:
    recurring = _schedule(store, max_concurrency=1)
    scheduler = RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=130))
    assert scheduler.sweep() == 1  # the other two ticks wait: one run is active
    assert scheduler.sweep() == 0
    (run,) = store.list_runs(NS, RunFilter(recurring_run_id=recurring)).items
    store.transition_run(NS, run.run_id, [RunState.PENDING], RunState.SUCCEEDED)
    assert scheduler.sweep() == 1
    assert _ticks(store, recurring) == [T0, T0 + timedelta(seconds=60)]


def test_two_instances_sweeping_at_once_start_each_tick_once(store: Store, tmp_path: Path) -> None:
    recurring = _schedule(store, max_concurrency=50)
    other = Store(f"sqlite:///{tmp_path / 'service.db'}")
    moment = T0 + timedelta(minutes=20)
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep(with_store: Store) -> None:
        barrier.wait()
        counts.append(RecurringScheduler(with_store, None, clock=lambda: moment).sweep())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (store, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert sum(counts) == 21
    assert _ticks(store, recurring) == [T0 + timedelta(minutes=m) for m in range(21)]


def test_disabled_schedules_start_nothing(store: Store) -> None:
    recurring = _schedule(store, max_concurrency=10, enabled=False)
    assert RecurringScheduler(store, None, clock=lambda: T0 + timedelta(hours=1)).sweep() == 0
    store.set_recurring_run_enabled(NS, recurring, True)
    assert RecurringScheduler(store, None, clock=lambda: T0 + timedelta(seconds=30)).sweep() == 1


def test_a_recurring_run_made_through_the_api_starts_runs_that_succeed(store: Store) -> None:
    executor = RunExecutor(store, poll_seconds=0.1)
    app = create_app(store, executor=executor, tokens=parse_tokens(""))
    with TestClient(app) as client:
        bad = client.post(
            f"{API_PREFIX}/recurringruns",
            json={
                "display_name": "bad",
                "pipeline_spec": raypipe.compile(addition).to_dict(),
                "runtime_config": {"parameters": {"a": 1, "b": 2}},
                "trigger": {"cron_schedule": {"cron": "every day"}},
            },
        )
        assert bad.status_code == 400 and "trigger" in bad.json()["error"]
        made = client.post(
            f"{API_PREFIX}/recurringruns",
            json={
                "display_name": "often",
                "pipeline_spec": raypipe.compile(addition).to_dict(),
                "runtime_config": {"parameters": {"a": 1, "b": 2}},
                "trigger": {"periodic_schedule": {"interval_second": 1}},
                "max_concurrency": 2,
                "no_catchup": True,
            },
        )
        assert made.status_code == 200, made.text
        recurring = made.json()["recurring_run_id"]
        deadline = time.monotonic() + 90
        while True:
            runs = client.get(f"{API_PREFIX}/runs", params={"state": "SUCCEEDED"}).json()["runs"]
            if len([r for r in runs if r["recurring_run_id"] == recurring]) >= 2:
                break
            assert time.monotonic() < deadline, "the schedule started no runs"
            time.sleep(0.2)
        disabled = client.post(f"{API_PREFIX}/recurringruns/{recurring}:disable")
        assert disabled.json()["status"] == "DISABLED"
        listed = client.get(f"{API_PREFIX}/recurringruns").json()["recurringRuns"]
        assert [r["recurring_run_id"] for r in listed] == [recurring]
