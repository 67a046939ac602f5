"""Attempt markers on a real Ray: a step that runs silently for a while says that it
started (when and where) while it runs and how it ended; a trivial silent step leaves no
file; an attempt that printed gets its marker however short it was; on an S3 root too."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import raypipe
from raypipe import dsl
from raypipe.runtime.markers import parse_marker
from tests.test_artifacts_remote import S3Server, s3  # noqa: F401  (the S3 server fixture)
from tests.test_logs import flaky_pipeline

_WAIT_S = 60.0


@dsl.component
def wait_for(gate: str) -> int:
    """Prints nothing; returns once the file ``gate`` exists."""
    import os
    import time

    while not os.path.exists(gate):
        time.sleep(0.02)
    return 1


@dsl.component
def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="gated")
def gated_pipeline(gate: str) -> int:
    return wait_for(gate=gate).output


@dsl.pipeline(name="napping")
def napping_pipeline(seconds: float = 0.6) -> float:
    return nap(seconds=seconds).output


def _eventually(found: Callable[[], Any], what: str) -> Any:
    """``found()`` once it is truthy (the watcher writes within about 0.1 s)."""
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not appear within {_WAIT_S} s")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def test_a_silent_step_says_it_started_while_it_runs_and_how_it_ended(
    raypipe_home: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    handle = raypipe.submit(gated_pipeline, {"gate": str(gate)})
    marker = (
        raypipe_home
        / "artifacts"
        / "gated"
        / handle.run_id
        / "wait-for"
        / ".logs"
        / "attempt-1.json"
    )
    running = _eventually(lambda: _read(marker), "the running step's marker")
    assert running["outcome"] is None and running["end"] is None
    assert running["start"] <= time.time()
    log = marker.parent / "attempt-1.log"
    assert not log.exists(), log.read_text()  # it printed nothing
    gate.touch()
    result = handle.wait()
    assert result.ok
    ended = _eventually(lambda: (_read(marker) or {}).get("end") and _read(marker), "its end")
    task = result.tasks["wait-for"]
    assert ended["outcome"] == "succeeded"
    assert ended["node_ip"] == task.node_ip and ended["node_id"] == task.node_id
    assert task.start_time is not None and task.end_time is not None
    assert abs(ended["start"] - task.start_time.timestamp()) < 1e-3  # the attempt's own start
    assert ended["start"] < ended["end"]
    record = parse_marker(marker.read_bytes())
    assert record is not None and record.outcome == "succeeded"


def test_a_trivial_silent_step_leaves_no_marker(raypipe_home: Path) -> None:
    result = raypipe.run(napping_pipeline, {"seconds": 0.0})
    assert result.ok
    time.sleep(0.5)  # past the time its marker would have been due
    assert not (raypipe_home / "artifacts" / "napping" / result.run_id / "nap" / ".logs").exists()


def test_each_attempt_that_printed_has_a_marker_saying_whether_another_follows(
    raypipe_home: Path, tmp_path: Path
) -> None:
    result = raypipe.run(flaky_pipeline, {"marker": str(tmp_path / "count")})
    assert result.ok
    logs = raypipe_home / "artifacts" / "flaky" / result.run_id / "flaky" / ".logs"
    outcomes = [
        _eventually(
            lambda n=n: (_read(logs / f"attempt-{n}.json") or {}).get("outcome"), f"marker {n}"
        )
        for n in (1, 2, 3)
    ]
    assert outcomes == ["retrying", "retrying", "succeeded"]


def test_a_marker_on_an_s3_root_is_written_through_the_store(
    s3: S3Server,  # noqa: F811
) -> None:
    result = raypipe.run(napping_pipeline, {"seconds": 0.6}, artifact_root=s3.root("markers"))
    assert result.ok
    key = f"markers/napping/{result.run_id}/nap/.logs/attempt-1.json"

    def outcome() -> str | None:
        try:
            record = parse_marker(s3.read(key))  # None: not written whole yet
        except OSError:  # not there yet
            return None
        return None if record is None else record.outcome

    assert _eventually(outcome, "the marker on S3") == "succeeded"
