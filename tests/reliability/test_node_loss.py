"""Node loss: a worker node of a real multi-node Ray cluster is stopped while a step runs
on it.

The cluster (:mod:`tests.cluster.local_cluster`) is a head and a labelled worker node on
this machine, one CPU each, with ports, temp dir and token of their own; drivers are
subprocesses. The worker node is stopped (SIGTERM to its ``ray start``, which kills its
raylet and workers) once a step is running there:

- a step that may run anywhere is retried on the head and the run completes;
- a step that may run only on that node's labels cannot: the run fails, and its error
  names the lost node.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.local_cluster import LocalCluster, local_cluster, run_driver
from tests.reliability.pipelines import SPARE_LABELS

pytestmark = pytest.mark.slow

_WAIT_S = 90.0

_DRIVER = """
    import json, sys
    import ray, raypipe
    from tests.reliability import pipelines

    ray.init(address=sys.argv[1], logging_level="ERROR")
    result = raypipe.run(
        getattr(pipelines, sys.argv[2]), {"folder": sys.argv[3]}, tracking=False, quiet=True
    )
    print("RAYPIPE-RESULT " + json.dumps({
        "status": result.status.value,
        "output": result.outputs.get("Output"),
        "error": None if result.error is None else str(result.error),
        "tasks": {
            name: {
                "state": task.state.value,
                "node": task.node_id,
                "attempts": [None if a.error is None else a.error.message for a in task.attempts],
            }
            for name, task in result.tasks.items()
        },
    }))
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(SPARE_LABELS) as started:
        yield started


def _drive(
    cluster: LocalCluster, pipeline: str, folder: Path
) -> tuple[threading.Thread, list[Any]]:
    """Run ``pipeline`` from a driver subprocess in a thread; its summary lands in the list."""
    summaries: list[Any] = []

    def drive() -> None:
        summaries.append(
            run_driver(
                _DRIVER, cluster.address, pipeline, str(folder), env=cluster.env, timeout=300
            )
        )

    thread = threading.Thread(target=drive)
    thread.start()
    return thread, summaries


def _nodes_of(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().split() if path.exists() else []


def _wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_step_on_a_lost_node_is_retried_on_the_others_and_the_run_completes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    worker = cluster.worker_id
    thread, summaries = _drive(cluster, "movable", tmp_path)
    try:
        _wait_until(lambda: _nodes_of(tmp_path, "a") and _nodes_of(tmp_path, "b"), "both steps")
        on_worker = [n for n in ("a", "b") if _nodes_of(tmp_path, n) == [worker]]
        assert len(on_worker) == 1, (worker, _nodes_of(tmp_path, "a"), _nodes_of(tmp_path, "b"))
        cluster.stop_worker()
    finally:
        (tmp_path / "release").touch()
        thread.join()
    (summary,) = summaries
    assert summary["status"] == "SUCCEEDED", json.dumps(summary, indent=1)
    assert summary["output"] == "a+b"
    moved = on_worker[0]
    # it ran again, on the head; the first attempt's worker died with its node
    assert _nodes_of(tmp_path, moved) == [worker, cluster.head_id]
    assert summary["tasks"][f"on-some-node{'' if moved == 'a' else '-2'}"]["node"] == (
        cluster.head_id
    )
    print(json.dumps(summary, indent=1))


def test_a_step_only_a_lost_node_could_run_fails_naming_the_node(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.stop_worker()  # the first test stopped it already, unless it ran alone
    worker = cluster.start_worker()
    thread, summaries = _drive(cluster, "pinned", tmp_path)
    try:
        _wait_until(lambda: _nodes_of(tmp_path, "pinned"), "the pinned step to start")
        assert _nodes_of(tmp_path, "pinned") == [worker]
        cluster.stop_worker()
    finally:
        (tmp_path / "release").touch()
        thread.join()
    (summary,) = summaries
    print(json.dumps(summary, indent=1))
    assert summary["status"] == "FAILED", json.dumps(summary, indent=1)
    assert worker in summary["error"], summary["error"]
