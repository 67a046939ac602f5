"""When a recurring run is due: cron and interval triggers with KFP's catch-up semantics.

A recurring run fires at *ticks*: the times its trigger names between ``start_time`` and
``end_time``. A cron trigger takes KFP's six fields (``second minute hour day month
weekday``) or the usual five (``minute hour day month weekday``); an interval trigger
fires every ``interval_seconds`` counted from ``start_time`` (or from when the recurring
run was created). All times are UTC.

After the scheduler was away (a restart), the ticks it missed are all due with catch-up on
(KFP's default, run one after the other within ``max_concurrency``); with catch-up off
(``no_catchup``) only the latest missed tick is.

Example:
    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> hourly = Trigger(cron="0 0 * * * *", start_time=t0)
    >>> [t.hour for t in due_ticks(hourly, last_tick=None, now=t0.replace(hour=3))]
    [0, 1, 2, 3]
    >>> [t.hour for t in due_ticks(hourly, last_tick=None, now=t0.replace(hour=3), catchup=False)]
    [3]
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Trigger", "due_ticks", "next_tick"]


class Trigger(BaseModel):
    """A cron expression or a fixed interval, within optional start and end times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str | None = Field(default=None, description="5 or 6 fields (KFP: seconds first)")
    interval_seconds: int | None = Field(default=None, gt=0)
    start_time: datetime | None = None
    end_time: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("a trigger has exactly one of cron or interval_seconds")
        if self.cron is not None and not _valid_cron(self.cron):
            raise ValueError(
                f"cron {self.cron!r} is not a cron expression (5 fields: minute hour day "
                "month weekday, or 6 with seconds first as in KFP)"
            )
        for name in ("start_time", "end_time"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must have a time zone (UTC)")
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


def next_tick(
    trigger: Trigger, after: datetime, *, origin: datetime | None = None
) -> datetime | None:
    """The first tick strictly after ``after``; None once past ``end_time``.

    ``origin`` is where an interval counts from when the trigger has no ``start_time``
    (the recurring run's creation time).
    """
    after = _utc(after)
    start = _utc(trigger.start_time) if trigger.start_time else None
    if start is not None and after < start:
        after = start - timedelta(microseconds=1)  # the start itself may be a tick
    if trigger.cron is not None:
        six = len(trigger.cron.split()) == 6
        found: datetime = croniter(trigger.cron, after, second_at_beginning=six).get_next(datetime)
        tick = _utc(found)
    else:
        base = _interval_base(trigger, origin)
        step = timedelta(seconds=_interval(trigger))
        count = max(0, (after - base) // step + 1)
        tick = base + count * step
    if trigger.end_time is not None and tick > _utc(trigger.end_time):
        return None
    return tick


def due_ticks(
    trigger: Trigger,
    *,
    last_tick: datetime | None,
    now: datetime,
    catchup: bool = True,
    origin: datetime | None = None,
    limit: int = 1000,
) -> list[datetime]:
    """The ticks due at ``now`` that come after ``last_tick`` (the last one fired).

    With ``catchup`` every missed tick is due (at most ``limit``, oldest first); without,
    only the latest one.
    """
    now = _utc(now)
    cursor = _utc(last_tick) if last_tick is not None else None
    if cursor is None:
        first_origin = trigger.start_time or origin
        if first_origin is None:
            raise ValueError("a trigger without start_time needs an origin")
        cursor = _utc(first_origin) - timedelta(microseconds=1)
    if not catchup:
        latest = _latest_tick(trigger, now, origin)
        return [latest] if latest is not None and latest > cursor else []
    due: list[datetime] = []
    while len(due) < limit:
        tick = next_tick(trigger, cursor, origin=origin)
        if tick is None or tick > now:
            break
        due.append(tick)
        cursor = tick
    return due


def _latest_tick(trigger: Trigger, now: datetime, origin: datetime | None) -> datetime | None:
    """The last tick at or before ``now`` (within start and end), without walking there."""
    if trigger.end_time is not None:
        now = min(now, _utc(trigger.end_time))
    if trigger.cron is not None:
        six = len(trigger.cron.split()) == 6
        # get_prev is strictly before: look from just after now, so now itself counts
        found: datetime = croniter(
            trigger.cron, now + timedelta(microseconds=1), second_at_beginning=six
        ).get_prev(datetime)
        tick = _utc(found)
    else:
        base = _interval_base(trigger, origin)
        if now < base:
            return None
        tick = base + ((now - base) // timedelta(seconds=_interval(trigger))) * timedelta(
            seconds=_interval(trigger)
        )
    if trigger.start_time is not None and tick < _utc(trigger.start_time):
        return None
    return tick


def _interval(trigger: Trigger) -> int:
    assert trigger.interval_seconds is not None  # validated: cron or an interval
    return trigger.interval_seconds


def _interval_base(trigger: Trigger, origin: datetime | None) -> datetime:
    base = trigger.start_time or origin
    if base is None:
        raise ValueError("an interval trigger without start_time needs an origin")
    return _utc(base)


def _valid_cron(expression: str) -> bool:
    fields = expression.split()
    if len(fields) not in (5, 6):
        return False
    return bool(croniter.is_valid(expression, second_at_beginning=len(fields) == 6))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    return value.astimezone(timezone.utc)
