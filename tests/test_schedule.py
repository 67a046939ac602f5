"""Recurring-run ticks: cron (KFP's 6 fields and the usual 5) and intervals, start and end
times, catch-up on and off."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from raypipe.api.schedule import Trigger, due_ticks, next_tick

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_cron_with_seconds_first_as_kfp_writes_it() -> None:
    every_15_min = Trigger(cron="0 */15 * * * *")
    assert next_tick(every_15_min, T0) == T0 + timedelta(minutes=15)
    assert next_tick(Trigger(cron="*/15 * * * *"), T0) == T0 + timedelta(minutes=15)


def test_catch_up_fires_every_missed_tick_and_no_catch_up_only_the_latest() -> None:
    hourly = Trigger(cron="0 * * * *", start_time=T0)
    now = T0 + timedelta(hours=3, minutes=30)
    missed = due_ticks(hourly, last_tick=T0, now=now)
    assert missed == [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    assert due_ticks(hourly, last_tick=T0, now=now, catchup=False) == [T0 + timedelta(hours=3)]
    assert due_ticks(hourly, last_tick=T0 + timedelta(hours=3), now=now) == []
    assert due_ticks(hourly, last_tick=T0 + timedelta(hours=3), now=now, catchup=False) == []


def test_the_start_time_is_the_first_tick_and_the_end_time_the_last() -> None:
    trigger = Trigger(interval_seconds=600, start_time=T0, end_time=T0 + timedelta(minutes=25))
    ticks = due_ticks(trigger, last_tick=None, now=T0 + timedelta(hours=5))
    assert ticks == [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]
    assert next_tick(trigger, T0 + timedelta(minutes=20)) is None
    no_catch_up = due_ticks(trigger, last_tick=None, now=T0 + timedelta(hours=5), catchup=False)
    assert no_catch_up == [T0 + timedelta(minutes=20)]


def test_an_interval_counts_from_the_creation_time_without_a_start_time() -> None:
    every_minute = Trigger(interval_seconds=60)
    created = T0 + timedelta(seconds=7)
    ticks = due_ticks(
        every_minute, last_tick=None, now=created + timedelta(seconds=130), origin=created
    )
    assert ticks == [created, created + timedelta(seconds=60), created + timedelta(seconds=120)]


def test_a_long_outage_without_catch_up_does_not_walk_every_tick() -> None:
    every_second = Trigger(cron="* * * * * *", start_time=T0)
    ten_years = T0 + timedelta(days=3650)
    assert due_ticks(every_second, last_tick=T0, now=ten_years, catchup=False) == [ten_years]
    assert len(due_ticks(every_second, last_tick=T0, now=ten_years, limit=50)) == 50


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of cron or interval_seconds"),
        ({"cron": "0 * * * *", "interval_seconds": 5}, "exactly one of"),
        ({"cron": "every hour"}, "not a cron expression"),
        ({"interval_seconds": 0}, "greater than 0"),
        ({"interval_seconds": 5, "start_time": datetime(2026, 1, 1)}, "time zone"),
        ({"interval_seconds": 5, "start_time": T0, "end_time": T0}, "end_time must be after"),
    ],
)
def test_a_bad_trigger_names_what_is_wrong(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Trigger.model_validate(fields)
