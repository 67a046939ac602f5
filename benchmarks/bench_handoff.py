"""Hand-off: one step makes a 1 GiB numpy array (``np.ones(2**27)``), the next sums it.

Measures the cost of passing a large in-memory output between steps: the producer's
result goes into Ray's shared-memory object store once and the consumer maps it without a
copy, so the per-step framework overhead should vanish next to the data movement. raypipe
runs a two-step ``@dsl.pipeline`` with ``raypipe.run``; raw Ray chains two ``@ray.remote``
functions. Target: raypipe <= 1.2x raw Ray.

Memory: each round holds one 1 GiB array in the object store (plus the producer's copy
while it is written); nothing keeps a reference between rounds, so Ray frees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray
from common import RUN_OPTIONS, Case, main

import raypipe
from raypipe import dsl

ELEMENTS = 2**27  # float64: 1 GiB


@dsl.component
def produce(n: int) -> np.ndarray:
    return np.ones(n)


@dsl.component
def reduce_sum(a: np.ndarray) -> float:
    return float(a.sum())


@ray.remote
def raw_produce(n: int) -> np.ndarray:
    return np.ones(n)


@ray.remote
def raw_reduce_sum(a: np.ndarray) -> float:
    return float(a.sum())


def handoff_pipeline() -> Any:
    """produce -> reduce_sum, the array passed in memory."""

    @dsl.pipeline(name="bench-handoff")
    def handoff(n: int) -> float:
        return reduce_sum(a=produce(n=n).output).output  # type: ignore[return-value]

    return handoff


def raw_handoff(n: int) -> float:
    return float(ray.get(raw_reduce_sum.remote(raw_produce.remote(n))))


def make_case() -> Case[raypipe.RunResult, float]:
    """A 1 GiB array handed from one step to the next: raypipe vs raw Ray."""
    pipeline = handoff_pipeline()

    def check_raypipe(result: raypipe.RunResult) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert result.output == float(ELEMENTS), result.output

    def check_raw(value: float) -> None:
        assert value == float(ELEMENTS), value

    return Case(
        name="handoff",
        description="1 GiB numpy array produced by one step and summed by the next",
        target=1.2,
        raypipe=lambda: raypipe.run(pipeline, {"n": ELEMENTS}, **RUN_OPTIONS),
        raw=lambda: raw_handoff(ELEMENTS),
        check_raypipe=check_raypipe,
        check_raw=check_raw,
        # the first rounds touch fresh object-store and heap pages, which costs seconds on
        # a VM whose memory was never touched; time the steady state
        warmup=3,
    )


if __name__ == "__main__":
    main(make_case, default_reps=21)
