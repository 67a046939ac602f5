"""Resume: a driver killed with SIGKILL mid-run, then ``raypipe.resume`` finishes the run.

The driver is a real subprocess attached to this session's Ray cluster; it is killed while
a step waits for a gate file, after the first two steps have finished and stored their
outputs. The resumed run must not run those two again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

import raypipe
import raypipe.tracking
from raypipe import dsl

_WAIT_S = 90.0  # waits for the subprocess to reach a point; never a timing assertion


@dsl.component(persist="sync")
def record(log: str, text: str, previous: str) -> str:
    with open(log, "a") as f:
        f.write(text + "\n")
    return previous + text


@dsl.component(persist="sync", cache=False)
def gated(log: str, gate: str, previous: str) -> str:
    with open(log, "a") as f:
        f.write("gated-started\n")
    while not os.path.exists(gate):
        time.sleep(0.05)
    return previous + "c"


@dsl.pipeline(name="resumable")
def resumable(log: str, gate: str) -> str:
    a = record(log=log, text="a", previous="")
    b = record(log=log, text="b", previous=a.output)
    c = gated(log=log, gate=gate, previous=b.output)
    return record(log=log, text="d", previous=c.output).output


_DRIVER = """
    import json, sys
    import ray, raypipe
    from tests.test_resume import resumable

    ray.init(address=sys.argv[3], logging_level="ERROR")
    handle = raypipe.submit(resumable, {"log": sys.argv[1], "gate": sys.argv[2]})
    print(json.dumps({"run_id": handle.run_id}), flush=True)
    handle.wait()
    print(json.dumps({"finished": True}), flush=True)
"""


def _wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_killed_driver_is_resumed_without_rerunning_finished_steps(
    tmp_path: Path, raypipe_home: Path
) -> None:
    log, gate = tmp_path / "log.txt", tmp_path / "gate"
    log.touch()
    # Create the MLflow store's schema first: a driver killed while MLflow migrates a new
    # SQLite store would leave it half made, which is not what this test is about.
    MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()
    env = {
        **os.environ,
        "RAYPIPE_HOME": str(raypipe_home),
        "RAYPIPE_QUIET": "1",
        "RAYPIPE_TRACKING": "1",  # the test checks MLflow and lineage across the resume
    }
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_DRIVER),
            str(log),
            str(gate),
            ray.get_runtime_context().gcs_address,
        ],
        env=env,
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout is not None
        first = driver.stdout.readline()
        assert first, driver.stderr.read() if driver.stderr else "no output"
        run_id = json.loads(first)["run_id"]
        _wait_until(lambda: "gated-started" in log.read_text(), "the gated step to start")
        # Lineage is written about every second: kill once the finished steps are in it.
        _wait_until(lambda: len(_executions(run_id)) == 2, "lineage of the finished steps")
        driver.send_signal(signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate(timeout=_WAIT_S)  # reap it and close its pipes
    assert log.read_text().split() == ["a", "b", "gated-started"]

    gate.touch()
    result = raypipe.resume(run_id, tracking=True)
    assert result.ok, result.error
    assert result.run_id == run_id and result.output == "abcd"
    states = {name: task.state.value for name, task in result.tasks.items()}
    # Ray may let the dead driver's gated step finish once the gate opens; if it stored
    # its output before the resumed run reached it, the resumed run reuses it.
    assert states["gated"] in ("SUCCEEDED", "CACHED")
    assert states == {
        "record": "CACHED",
        "record-2": "CACHED",
        "gated": states["gated"],
        "record-3": "SUCCEEDED",
    }
    lines = log.read_text().split()
    assert lines.count("a") == 1 and lines.count("b") == 1  # never ran again
    assert lines[-1] == "d"

    # One MLflow run, continued and ended; lineage ends with every step, latest state last.
    assert raypipe.tracking.flush(timeout=_WAIT_S)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    parents = client.search_runs(
        [client.get_experiment_by_name("resumable").experiment_id],
        filter_string=f"tags.`raypipe.run_id` = '{run_id}'",
    )
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["raypipe.resumed"] == "true"
    assert _executions(run_id) == states
    (status,) = raypipe.lineage.sql("SELECT status FROM runs WHERE run_id = ?", [run_id])[1]
    assert status == ("SUCCEEDED",)

    with pytest.raises(raypipe.RunNotResumableError, match="already ended SUCCEEDED"):
        raypipe.resume(run_id, tracking=False)


def _executions(run_id: str) -> dict[str, str]:
    """Each step of the run in the lineage store, with its latest recorded state."""
    _, rows = raypipe.lineage.sql(
        "SELECT task, arg_max(state, recorded_at) FROM executions WHERE run_id = ? GROUP BY task",
        [run_id],
    )
    return dict(rows)


def test_resuming_an_unknown_run_says_where_it_looked(raypipe_home: Path) -> None:
    with pytest.raises(raypipe.RunNotResumableError, match="no manifest at .*nope"):
        raypipe.resume("nope")

    from raypipe.cli import main

    assert main(["resume", "nope"]) == 2
