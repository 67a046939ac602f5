"""Fan-out: 1,000 independent trivial steps (x + 1 on the constants 0..999).

Measures submission and scheduling throughput: every step can run at once, so the wall time
is dominated by how fast the driver submits tasks and collects results and how much work
each task does in the worker. raypipe runs a 1,000-task ``@dsl.pipeline`` (no outputs; the
run waits for every step) with ``raypipe.run``; raw Ray submits 1,000 ``@ray.remote`` tasks
and ``ray.get``s them all. Target: raypipe <= 1.3x raw Ray.
"""

from __future__ import annotations

from typing import Any

import ray
from common import RUN_OPTIONS, Case, main

import raypipe
from raypipe import dsl

STEPS = 1000
EXPECTED_SUM = sum(range(1, STEPS + 1))


@dsl.component
def inc(x: int) -> int:
    return x + 1


@ray.remote
def raw_inc(x: int) -> int:
    return x + 1


def fanout_pipeline(steps: int) -> Any:
    """A pipeline whose body makes ``steps`` independent ``inc`` tasks."""

    @dsl.pipeline(name="bench-fanout")
    def fanout() -> None:
        for i in range(steps):
            inc(x=i)

    return fanout


def raw_fanout(steps: int) -> list[int]:
    return list(ray.get([raw_inc.remote(i) for i in range(steps)]))


def make_case() -> Case[raypipe.RunResult, list[int]]:
    """1,000 independent trivial steps: raypipe vs raw Ray."""
    pipeline = fanout_pipeline(STEPS)

    def check_raypipe(result: raypipe.RunResult) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert len(result.tasks) == STEPS
        total = sum(t.outputs["Output"] for t in result.tasks.values())
        assert total == EXPECTED_SUM, total

    def check_raw(values: list[int]) -> None:
        assert sum(values) == EXPECTED_SUM, sum(values)

    return Case(
        name="fanout",
        description=f"{STEPS:,} independent trivial steps (x + 1), warm, end to end",
        target=1.3,
        raypipe=lambda: raypipe.run(pipeline, **RUN_OPTIONS),
        raw=lambda: raw_fanout(STEPS),
        check_raypipe=check_raypipe,
        check_raw=check_raw,
    )


if __name__ == "__main__":
    main(make_case, default_reps=15)
