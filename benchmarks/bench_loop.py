"""Loop: a ``dsl.ParallelFor`` over 1,000 items, each a trivial step, collected at the end.

Measures what a loop adds over plain fan-out: the scheduler expands 1,000 iterations (one
frame each), the steps run, and ``dsl.Collected`` gathers their outputs in item order as
the pipeline's output. Raw Ray submits 1,000 ``@ray.remote`` tasks over the same list and
``ray.get``s them in order. Target (issue 3): raypipe <= 1.3x raw Ray.
"""

from __future__ import annotations

from typing import Any

import ray
from common import RUN_OPTIONS, Case, main

import raypipe
from raypipe import dsl

ITEMS = list(range(1000))
EXPECTED = [x + 1 for x in ITEMS]


@dsl.component
def inc(x: int) -> int:
    return x + 1


@ray.remote
def raw_inc(x: int) -> int:
    return x + 1


def loop_pipeline() -> Any:
    """``ParallelFor`` over a list argument, its outputs collected as the pipeline output."""

    @dsl.pipeline(name="bench-loop")
    def loop(items: list) -> list:
        with dsl.ParallelFor(items) as item:
            step = inc(x=item)
        return dsl.Collected(step.output)

    return loop


def raw_loop(items: list[int]) -> list[int]:
    return list(ray.get([raw_inc.remote(x) for x in items]))


def make_case() -> Case[raypipe.RunResult, list[int]]:
    """A 1,000-item ParallelFor: raypipe vs raw Ray."""
    pipeline = loop_pipeline()

    def check_raypipe(result: raypipe.RunResult) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert result.output == EXPECTED

    def check_raw(values: list[int]) -> None:
        assert values == EXPECTED

    return Case(
        name="loop",
        description=f"ParallelFor over {len(ITEMS):,} items (x + 1), collected, warm, end to end",
        target=1.3,
        raypipe=lambda: raypipe.run(pipeline, {"items": ITEMS}, **RUN_OPTIONS),
        raw=lambda: raw_loop(ITEMS),
        check_raypipe=check_raypipe,
        check_raw=check_raw,
    )


if __name__ == "__main__":
    main(make_case, default_reps=15)
