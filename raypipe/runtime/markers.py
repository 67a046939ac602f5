"""Attempt markers: a small file saying that a step's attempt started, and later how it
ended, for every attempt that runs longer than :data:`MARK_AFTER_S`.

The driver learns when a step was submitted and when it ended, not when it started; a
page that draws a run needs to tell a running step from a waiting one, even when the step
prints nothing. So each attempt that is still running :data:`MARK_AFTER_S` after it
started leaves ``{root}/{pipeline}/{run_id}/{task}/.logs/attempt-N.json`` beside its log::

    {"attempt": 1, "start": 1765000000.12, "node_id": "ab12...", "node_ip": "10.0.0.5",
     "pid": 4242, "end": null, "outcome": null}

and when it ends, ``end`` and ``outcome`` (``succeeded``, ``failed``, or ``retrying``: it
failed and another attempt follows) are filled in. An attempt that wrote a log gets its
marker at its end however short it was (it paid for the folder already), so a log without
a marker means an attempt that is running (or ended less than 0.1 s ago).

The step's own thread pays about a microsecond: it registers the attempt when it starts
and says how it ended (no file; the first step after a second without any also wakes the
watcher). A watcher thread of the worker process,
awake only while steps run, writes the markers (through the artifact store, so remote
roots get them too). A trivial step (about a millisecond) ends long before its marker is
due and leaves no file; a run's page reads every second, so it would not have seen it
running anyway.

Example:
    >>> marker = AttemptMarker(store, "p", "run1", "train", 1, now, node, ip)  # doctest: +SKIP
    >>> ...                              # the step runs; after 0.2 s the file exists
    >>> marker.ended("succeeded")        # doctest: +SKIP
    >>> parse_marker(open(path, "rb").read())  # doctest: +SKIP
    MarkerRecord(attempt=1, start=..., ..., outcome='succeeded')
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import NamedTuple

from raypipe.runtime.artifacts import ArtifactStore

__all__ = [
    "MARK_AFTER_S",
    "MARKER_PATTERN",
    "AttemptMarker",
    "MarkerRecord",
    "marker_name",
    "parse_marker",
]

MARK_AFTER_S = 0.2  # an attempt still running this long after its start gets its marker
MARKER_PATTERN = r"attempt-(\d+)\.json"  # in the task's ``.logs`` folder
_POLL_S = MARK_AFTER_S / 2  # the watcher's period while steps run
_IDLE_POLLS = 10  # polls without a step before the watcher sleeps until the next one
_LOG_DIR = ".logs"  # raypipe.runtime.logs.LOG_DIR (which imports this module)


def marker_name(number: int) -> str:
    """The file name of attempt ``number``'s marker, inside the task's ``.logs`` folder."""
    return f"attempt-{number}.json"


class MarkerRecord(NamedTuple):
    """What a marker says: when the attempt started, where, and how it ended (if it has)."""

    attempt: int
    start: float  # seconds since the epoch
    node_id: str | None
    node_ip: str | None
    pid: int | None
    end: float | None
    outcome: str | None  # succeeded, failed, retrying; None while it runs


def parse_marker(data: bytes | str) -> MarkerRecord | None:
    """The record in a marker file's content; None if it is not one."""
    try:
        found = json.loads(data)
        return MarkerRecord(
            int(found["attempt"]),
            float(found["start"]),
            found.get("node_id"),
            found.get("node_ip"),
            found.get("pid"),
            found.get("end"),
            found.get("outcome"),
        )
    except (ValueError, TypeError, KeyError):
        return None


class AttemptMarker:
    """One attempt's marker, registered with the worker's watcher while the attempt runs."""

    __slots__ = (
        "_store",
        "end",
        "logged",
        "node_id",
        "node_ip",
        "number",
        "outcome",
        "pipeline",
        "run_id",
        "start",
        "task",
        "written",
    )

    def __init__(
        self,
        store: ArtifactStore,
        pipeline: str,
        run_id: str,
        task: str,
        number: int,
        start: float,
        node_id: str,
        node_ip: str,
    ) -> None:
        self._store = store
        self.pipeline, self.run_id, self.task = pipeline, run_id, task
        self.number, self.start = number, start
        self.node_id, self.node_ip = node_id, node_ip
        self.end: float | None = None
        self.outcome: str | None = None
        self.logged = False
        self.written = False  # set by the watcher once the start is stored
        _RUNNING.add(self)
        if not _WAKE.is_set():
            _wake_watcher()

    def ended(self, outcome: str, *, logged: bool = False) -> None:
        """The attempt ended (``succeeded``, ``failed`` or ``retrying``); call once.

        ``logged``: the attempt wrote a log, so it paid for its folder already; the watcher
        writes its marker however short it was (a log with no marker then means the
        attempt is running, on a run whose steps are not tracked too).
        """
        self.logged = logged  # before ``end``: the watcher reads ``end`` first
        self.outcome = outcome
        self.end = time.time()
        if logged:
            if not _WAKE.is_set():
                _wake_watcher()
        # Read after writing ``end``: if the watcher is storing the start right now, it
        # sets ``written`` before reading ``end``, so one of the two sees the other.
        elif not self.written:
            _RUNNING.discard(self)

    def record(self) -> bytes:
        return json.dumps(
            {
                "attempt": self.number,
                "start": self.start,
                "node_id": self.node_id,
                "node_ip": self.node_ip,
                "pid": os.getpid(),
                "end": self.end,
                "outcome": self.outcome,
            }
        ).encode()

    def store(self) -> None:
        """Write the marker as it stands (the watcher's thread only)."""
        name = f"{_LOG_DIR}/{marker_name(self.number)}"
        uri = self._store.output_uri(self.pipeline, self.run_id, self.task, name)
        try:
            self._store.write_bytes_atomic(uri, self.record())
        except Exception as exc:  # the step goes on; only the page's view of it is lost
            # To the worker's own stderr (Ray shows it on the driver): sys.stderr may be
            # the step that runs now, whose log this is not part of.
            print(
                f"raypipe: {self.pipeline}.{self.task}: could not write the marker of attempt "
                f"{self.number} at {uri}: {type(exc).__name__}: {exc}",
                file=sys.__stderr__,
            )


_RUNNING: set[AttemptMarker] = set()  # attempts of this worker process not yet settled
_WAKE = threading.Event()  # set while the watcher polls
_WATCHER: threading.Thread | None = None
_STARTING = threading.Lock()


def _wake_watcher() -> None:
    global _WATCHER
    if _WATCHER is None:
        with _STARTING:
            if _WATCHER is None:
                _WATCHER = threading.Thread(target=_watch, name="raypipe-markers", daemon=True)
                _WATCHER.start()
    _WAKE.set()


def _watch() -> None:
    idle = 0
    while True:
        _WAKE.wait()
        time.sleep(_POLL_S)
        if not _RUNNING:
            idle += 1
            if idle >= _IDLE_POLLS:  # no step for a while: sleep until the next one
                idle = 0
                _WAKE.clear()
                if _RUNNING:  # one registered between the test and the clear
                    _WAKE.set()
            continue
        idle = 0
        now = time.time()
        for marker in list(_RUNNING):
            _visit(marker, now)


def _visit(marker: AttemptMarker, now: float) -> None:
    if not marker.written:
        if marker.end is not None and not marker.logged:  # ended before it was due: no file
            _RUNNING.discard(marker)
            return
        if marker.end is None and now - marker.start < MARK_AFTER_S:
            return
        ended = marker.end is not None
        marker.store()
        marker.written = True
        if ended:
            _RUNNING.discard(marker)
            return
    if marker.end is not None:  # ended after its start was stored: store the end
        marker.store()
        _RUNNING.discard(marker)
