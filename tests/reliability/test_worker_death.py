"""Worker death: a step's worker is SIGKILLed at a random point of a 10-step pipeline.

Each run picks a random step and a random moment (0-1 s) into its first attempt and
kills the Ray worker process running it from outside, as the OOM killer or an operator
would. Every run must succeed with the right output, and lineage (DuckDB over the Parquet
files) must show the killed attempt and the retry that succeeded.

``make test`` runs 4 runs; ``RAYPIPE_RELIABILITY_FULL=1`` runs the issue's 20.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

import raypipe
from tests.reliability.pipelines import CHAIN_LENGTH, chain_value, full_counts, ten_steps

RUNS = 20 if full_counts() else 4
_WAIT_S = 60.0  # waits for the step to start; never a timing assertion


def _kill_when_started(workdir: Path, index: int, delay: float, killed: list[int]) -> None:
    """Wait for step ``index`` to write its pid, wait ``delay`` s, SIGKILL that worker."""
    pid_file = workdir / f"{index}.pid"
    deadline = time.monotonic() + _WAIT_S
    while not pid_file.exists():
        if time.monotonic() > deadline:
            return  # the run's own assertions say what went wrong
        time.sleep(0.005)
    time.sleep(delay)
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


@pytest.mark.parametrize("seed", range(RUNS))
def test_a_worker_killed_at_a_random_point_is_retried_and_the_run_succeeds(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    target, delay, start = rng.randrange(CHAIN_LENGTH), rng.uniform(0.0, 1.0), rng.randrange(10**6)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_started, args=(tmp_path, target, delay, killed))
    killer.start()
    try:
        result = raypipe.run(
            ten_steps, {"start": start, "target": target, "workdir": str(tmp_path)}, tracking=True
        )
    finally:
        (tmp_path / "stop").touch()  # a step the killer missed stops holding
        killer.join()
    assert killed, f"step {target} never started"
    assert result.ok, result.error
    assert result.output == chain_value(start)

    name = "advance" if target == 0 else f"advance-{target + 1}"
    attempts = result.tasks[name].attempts
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].error is not None and attempts[0].error.type.endswith("StepCrashedError")
    others = {t: len(task.attempts) for t, task in result.tasks.items() if t != name}
    assert set(others.values()) == {1}, others

    # Lineage: the killed attempt and the one that succeeded, and every step succeeded.
    _, rows = raypipe.lineage.sql(
        "SELECT attempt, succeeded, error_type FROM attempts "
        "WHERE run_id = ? AND execution_id = ? ORDER BY attempt",
        [result.run_id, f"{result.run_id}/{name}"],
    )
    assert [(a, ok) for a, ok, _ in rows] == [(1, False), (2, True)], rows
    assert rows[0][2].endswith("StepCrashedError")
    _, states = raypipe.lineage.sql(
        "SELECT task, state, attempts FROM executions WHERE run_id = ?", [result.run_id]
    )
    assert len(states) == CHAIN_LENGTH
    assert {(t, s, n) for t, s, n in states if t == name} == {(name, "SUCCEEDED", 2)}
    assert {s for _, s, _ in states} == {"SUCCEEDED"}
