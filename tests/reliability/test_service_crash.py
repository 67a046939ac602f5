"""Service crash: a ``raypipe server`` killed with SIGKILL while runs and schedules are
active, then started again on the same store.

Runs of two slow steps (1 s each) are created through the API, and schedules that tick
every 2 s with catch-up; once runs are in flight the server is killed (no shutdown code
runs) and kept down for a few ticks, then a new server process starts on the same
store. Checked: every run and schedule is still listed; every run ends ``SUCCEEDED`` (the
new instance takes over the dead one's runs when its 2 s lease runs out); each schedule
has exactly one run per tick, its ticks contiguous from its start time to after the
restart (the ticks missed while the server was down are caught up once each). On both
stores: a SQLite file and a PostgreSQL schema (``RAYPIPE_TEST_POSTGRES_URL``, as the
store's tests).

``make test`` runs 12 runs and 3 schedules; ``RAYPIPE_RELIABILITY_FULL=1`` runs the
issue's 50 and 5.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

import raypipe
from raypipe.api.app import API_PREFIX
from raypipe.api.store import RunFilter, Store
from tests.reliability.pipelines import full_counts
from tests.reliability.service_pipelines import slow_sum, tiny
from tests.reliability.service_process import ServerProcess
from tests.service.conftest import postgres_server, store_url

__all__ = ["postgres_server", "store_url"]  # fixtures: a SQLite file, a PostgreSQL schema

RUNS, SCHEDULES = (50, 5) if full_counts() else (12, 3)
INTERVAL_S = 2
DOWN_S = 3 * INTERVAL_S  # ticks missed while no server runs
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED"}
END_WAIT_S = 240.0 if full_counts() else 150.0


def _spec(pipeline: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(raypipe.compile(pipeline).to_dict()))
    return document


def _all_runs(http: httpx.Client) -> list[dict[str, Any]]:
    listed = http.get(f"{API_PREFIX}/runs", params={"page_size": 1000})
    assert listed.is_success, listed.text
    runs: list[dict[str, Any]] = listed.json()["runs"]
    return runs


def _last_ticks(runs: list[dict[str, Any]]) -> dict[str, datetime]:
    """The latest tick (``scheduled_at``) started by each schedule among ``runs``."""
    last: dict[str, datetime] = {}
    for run in runs:
        if run["recurring_run_id"] is None:
            continue
        tick = datetime.fromisoformat(run["scheduled_at"].replace("Z", "+00:00"))
        tick = tick if tick.tzinfo else tick.replace(tzinfo=timezone.utc)
        last[run["recurring_run_id"]] = max(tick, last.get(run["recurring_run_id"], tick))
    return last


def test_runs_and_schedules_survive_a_killed_service(
    tmp_path: Path, raypipe_home: Path, store_url: str
) -> None:
    database = store_url
    log = tmp_path / "server.log"
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    with ServerProcess.start(database, raypipe_home, log) as first:
        port = first.port
        slow, quick = _spec(slow_sum), _spec(tiny)

        def create_run(i: int) -> str:
            with httpx.Client(base_url=first.base, timeout=60) as http:
                made = http.post(
                    f"{API_PREFIX}/runs",
                    json={
                        "display_name": f"run-{i}",
                        "pipeline_spec": slow,
                        "runtime_config": {"parameters": {"a": i, "b": 1, "seconds": 1.0}},
                    },
                )
                assert made.is_success, made.text
                run_id: str = made.json()["run_id"]
                return run_id

        with ThreadPoolExecutor(4) as pool:
            run_ids = list(pool.map(create_run, range(RUNS)))
        with httpx.Client(base_url=first.base, timeout=60) as http:
            schedule_ids = []
            for i in range(SCHEDULES):
                made = http.post(
                    f"{API_PREFIX}/recurringruns",
                    json={
                        "display_name": f"schedule-{i}",
                        "pipeline_spec": quick,
                        "runtime_config": {"parameters": {"value": i}},
                        "trigger": {
                            "periodic_schedule": {
                                "interval_second": INTERVAL_S,
                                "start_time": start.isoformat(),
                            }
                        },
                        "max_concurrency": 100,
                    },
                )
                assert made.is_success, made.text
                schedule_ids.append(made.json()["recurring_run_id"])
            # kill once runs are in flight and every schedule has started a tick
            deadline = time.monotonic() + 120
            while True:
                runs = _all_runs(http)
                running = [r for r in runs if r["state"] == "RUNNING"]
                ticked = {r["recurring_run_id"] for r in runs} - {None}
                if running and ticked == set(schedule_ids):
                    break
                assert time.monotonic() < deadline, "no run started"
                time.sleep(0.2)
        first.kill()
    killed_at = datetime.now(timezone.utc)
    active = [r["run_id"] for r in runs if r["state"] not in TERMINAL]
    time.sleep(DOWN_S)

    with ServerProcess.start(database, raypipe_home, log, port=port) as second:
        restarted_at = datetime.now(timezone.utc)
        with httpx.Client(base_url=second.base, timeout=60) as http:
            # the new instance ticks on: until every schedule has a tick from after its start
            # (waited for, not slept: under load the catch-up can take longer than 2 ticks)
            deadline = time.monotonic() + END_WAIT_S
            while True:
                last = _last_ticks(_all_runs(http))
                if all(last.get(s, killed_at) >= restarted_at for s in schedule_ids):
                    break
                assert time.monotonic() < deadline, (last, restarted_at, log.read_text()[-3000:])
                time.sleep(0.2)
            for recurring_run_id in schedule_ids:
                disabled = http.post(f"{API_PREFIX}/recurringruns/{recurring_run_id}:disable")
                assert disabled.is_success, disabled.text
            deadline = time.monotonic() + END_WAIT_S
            while True:
                runs = _all_runs(http)
                if all(r["state"] in TERMINAL for r in runs):
                    break
                stuck = [(r["run_id"], r["state"]) for r in runs if r["state"] not in TERMINAL]
                assert time.monotonic() < deadline, (stuck, log.read_text()[-3000:])
                time.sleep(0.5)
            listed = http.get(f"{API_PREFIX}/recurringruns", params={"page_size": 100})
            assert listed.is_success, listed.text
            schedules = listed.json()["recurringRuns"]

    print(f"\n{len(active)} of {len(runs)} runs active at the kill; down {DOWN_S} s")
    by_id = {r["run_id"]: r for r in runs}
    assert set(run_ids) <= by_id.keys(), "runs lost"
    assert {s["recurring_run_id"] for s in schedules} == set(schedule_ids), "schedules lost"
    failed = [
        f"{r['run_id']} {r['state']}: {r['error']}" for r in runs if r["state"] != "SUCCEEDED"
    ]
    assert not failed, "\n".join(failed)
    assert any(run_id in active for run_id in run_ids), "no created run was active at the kill"

    step = timedelta(seconds=INTERVAL_S)
    with Store(database) as store:
        for recurring_run_id in schedule_ids:
            started = store.list_runs(
                "default", RunFilter(recurring_run_id=recurring_run_id), page_size=1000
            ).items
            ticks = sorted(r.scheduled_at.astimezone(timezone.utc) for r in started)
            assert len(set(ticks)) == len(ticks), f"{recurring_run_id}: a tick ran twice"
            expected = [start + step * k for k in range(len(ticks))]
            assert ticks == expected, f"{recurring_run_id}: ticks lost: {ticks}"
            # the ticks of the downtime were caught up, and the new instance ticked on
            missed = [t for t in ticks if killed_at <= t < restarted_at]
            assert missed, (recurring_run_id, ticks, killed_at, restarted_at)
            assert ticks[-1] >= restarted_at - step, (recurring_run_id, ticks, killed_at)
            print(f"{recurring_run_id}: {len(ticks)} ticks, {len(missed)} while down, caught up")
