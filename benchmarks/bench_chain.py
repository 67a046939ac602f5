"""Chain: 100 trivial steps in a row, each adding 1 to the previous step's output.

Measures per-step latency along a dependency chain: nothing can run in parallel, so the
wall time is (submission + scheduling + worker overhead + result hand-off) x 100. raypipe
runs a 100-task ``@dsl.pipeline`` with ``raypipe.run``; raw Ray chains a ``@ray.remote``
function through ObjectRefs and ``ray.get``s the last one. Target: raypipe <= 1.3x raw Ray.
"""

from __future__ import annotations

from typing import Any

import ray
from common import RUN_OPTIONS, Case, main

import raypipe
from raypipe import dsl

STEPS = 100


@dsl.component
def inc(x: int) -> int:
    return x + 1


@ray.remote
def raw_inc(x: int) -> int:
    return x + 1


def chain_pipeline(steps: int) -> Any:
    """A pipeline whose body chains ``steps`` calls of ``inc``."""

    @dsl.pipeline(name="bench-chain")
    def chain(start: int = 0) -> int:
        value: Any = start
        for _ in range(steps):
            value = inc(x=value).output
        return value  # type: ignore[no-any-return]

    return chain


def raw_chain(steps: int, start: int = 0) -> int:
    ref = raw_inc.remote(start)
    for _ in range(steps - 1):
        ref = raw_inc.remote(ref)
    return int(ray.get(ref))


def make_case() -> Case[raypipe.RunResult, int]:
    """100 chained trivial steps: raypipe vs raw Ray."""
    pipeline = chain_pipeline(STEPS)

    def check_raypipe(result: raypipe.RunResult) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert result.output == STEPS, result.output
        assert len(result.tasks) == STEPS

    def check_raw(value: int) -> None:
        assert value == STEPS, value

    return Case(
        name="chain",
        description=f"{STEPS} chained trivial steps (x + 1), warm, end to end",
        target=1.3,
        raypipe=lambda: raypipe.run(pipeline, {"start": 0}, **RUN_OPTIONS),
        raw=lambda: raw_chain(STEPS),
        check_raypipe=check_raypipe,
        check_raw=check_raw,
    )


if __name__ == "__main__":
    main(make_case, default_reps=15)
