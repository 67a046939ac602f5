"""The attempt history of a step, kept in Ray's cluster key-value store so a dead worker's
attempt is not lost.

A step that may be retried (``retries > 0``) or has a ``timeout`` records each attempt as
it starts, and its error if it fails. When Ray re-runs the step after its worker died,
the new run reads the history: an attempt that started and never ended crashed (or was
killed by the timeout watchdog, which leaves a traceback dump). Steps without retries or
timeout record nothing, so the common case pays nothing. The store is the GCS's internal
key-value table (``ray.experimental.internal_kv``): about 0.3 ms a read or write from a
worker, reachable from every node and the driver.

Example:
    >>> history = load_history(run_id, "train")          # doctest: +SKIP
    >>> history.append(AttemptEntry.starting(1, timeout=60.0, dump=None))  # doctest: +SKIP
    >>> save_history(run_id, "train", history)           # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, TypeAdapter

from raypipe.runtime.failures import StepCrashedError, StepTimeoutError, qualified_name
from raypipe.runtime.runfiles import read_node_file

__all__ = [
    "AttemptEntry",
    "AttemptOutcome",
    "delete_run",
    "kill_grace",
    "load_history",
    "outcome",
    "outcomes",
    "save_history",
]

_NAMESPACE = "raypipe"


def kill_grace(timeout: float) -> float:
    """Seconds a step may run past its timeout before its worker is killed: 1 s + 10 %, ≤ 60 s."""
    return min(1.0 + 0.1 * timeout, 60.0)


class AttemptEntry(BaseModel):
    """One attempt as recorded when it starts (``end`` and ``error`` are set if it raises)."""

    model_config = ConfigDict(extra="forbid")

    number: int
    start: float  # seconds since the epoch
    end: float | None = None
    error: tuple[str, str, str] | None = None  # type, message, traceback
    node_id: str
    node_ip: str
    pid: int
    timeout: float | None = None
    dump: str | None = None  # node-local file the timeout watchdog writes before killing

    @classmethod
    def starting(
        cls, number: int, *, node_id: str, node_ip: str, timeout: float | None, dump: str | None
    ) -> AttemptEntry:
        return cls(
            number=number,
            start=time.time(),
            node_id=node_id,
            node_ip=node_ip,
            pid=os.getpid(),
            timeout=timeout,
            dump=dump,
        )


_HISTORY = TypeAdapter(list[AttemptEntry])


class AttemptOutcome(NamedTuple):
    """How a recorded attempt ended: times, and ``(type, message, traceback)`` if it failed."""

    number: int
    start: float
    end: float
    error: tuple[str, str, str] | None


def _key(run_id: str, task: str) -> bytes:
    return f"attempts/{run_id}/{task}".encode()


def load_history(run_id: str, task: str) -> list[AttemptEntry]:
    """Every attempt recorded for ``task`` in run ``run_id`` (empty on its first run)."""
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(_key(run_id, task), namespace=_NAMESPACE)
    return [] if raw is None else _HISTORY.validate_json(raw)


def save_history(run_id: str, task: str, history: list[AttemptEntry]) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(
        _key(run_id, task), _HISTORY.dump_json(history), overwrite=True, namespace=_NAMESPACE
    )


def delete_run(run_id: str) -> None:
    """Forget every attempt of run ``run_id``."""
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(
        f"attempts/{run_id}/".encode(), del_by_prefix=True, namespace=_NAMESPACE
    )


def outcome(
    entry: AttemptEntry, *, pipeline: str, task: str, now: float, detail: str | None = None
) -> AttemptOutcome:
    """How ``entry`` ended; one that never recorded an end died with its worker.

    A dead attempt that left a timeout dump was killed by the timeout watchdog: it ends
    with a :class:`StepTimeoutError` whose traceback is where the step was stuck. Any
    other dead attempt ends with a :class:`StepCrashedError`; ``detail`` is what Ray said,
    if known. Its end time is ``now``: when the death was noticed (the next attempt's start).
    """
    if entry.end is not None:
        return AttemptOutcome(entry.number, entry.start, entry.end, entry.error)
    if entry.timeout is not None and entry.dump is not None:
        dump = read_node_file(entry.node_id, entry.dump)
        if dump:
            grace = kill_grace(entry.timeout)
            timeout_error = StepTimeoutError(
                pipeline=pipeline,
                task=task,
                timeout=entry.timeout,
                attempt=entry.number,
                killed_after=entry.timeout + grace,
            )
            error = (qualified_name(StepTimeoutError), str(timeout_error), dump)
            return AttemptOutcome(
                entry.number, entry.start, entry.start + entry.timeout + grace, error
            )
    where = f"pid {entry.pid} on {entry.node_ip}"
    reason = detail or "killed, out of memory, crashed, or its node was lost"
    if entry.timeout is not None and now >= entry.start + entry.timeout + kill_grace(entry.timeout):
        reason += (
            "; it had run past its timeout, so the timeout watchdog most likely killed it "
            "(its traceback dump was not readable)"
        )
    crash = StepCrashedError(
        pipeline=pipeline, task=task, attempt=entry.number, detail=f"{where}: {reason}"
    )
    return AttemptOutcome(
        entry.number,
        entry.start,
        max(now, entry.start),
        (qualified_name(StepCrashedError), str(crash), ""),
    )


def outcomes(
    history: list[AttemptEntry], *, pipeline: str, task: str, now: float, detail: str | None = None
) -> list[AttemptOutcome]:
    """:func:`outcome` of each attempt; a dead one ended when the next began (the last one,
    at ``now``, with Ray's ``detail``)."""
    ends = [entry.start for entry in history[1:]] + [now] if history else []
    return [
        outcome(
            entry,
            pipeline=pipeline,
            task=task,
            now=end,
            detail=detail if i == len(history) - 1 else None,
        )
        for i, (entry, end) in enumerate(zip(history, ends, strict=True))
    ]
