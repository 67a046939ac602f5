"""Large loops run with bounded driver state: windows of iterations, nothing kept per ref.

Real Ray runs every step; the checks read the driver's own bookkeeping (what is in flight,
what the scheduler still waits on) and the Python memory the driver allocated.
"""

from __future__ import annotations

import tracemalloc

import raypipe
from raypipe import dsl


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.component
def total(xs: list) -> int:
    return sum(xs)


def test_a_loop_keeps_at_most_its_window_in_flight_and_nothing_after(
    in_flight: list[int],
) -> None:
    @dsl.pipeline(name="windowed")
    def windowed(items: list) -> int:
        with dsl.ParallelFor(items, parallelism=16) as x:
            step = inc(x=x)
        return total(xs=dsl.Collected(step.output)).output

    handle = raypipe.submit(windowed, {"items": list(range(600))})
    result = handle.wait()
    assert result.output == sum(range(1, 601))
    assert len(result.tasks) == 601
    assert max(in_flight) <= 16  # the loop never ran ahead of its window

    execution = handle._execution
    scheduler = execution.scheduler
    assert scheduler is not None
    # Once every report is in, the driver holds no refs for the steps that ran.
    assert not execution._pending
    assert not scheduler._incomplete and not scheduler._waits and not scheduler._in_flight
    assert not scheduler._leaf_holder and not scheduler._parked


def test_driver_memory_per_loop_step_stays_small() -> None:
    """Python memory the driver allocates per loop step, at its peak, including the result.

    The marginal cost, between a short and a long loop, so that one-time costs cancel out.
    Measured 2026-11-29: about 1.8 KB per step (it was over 4 KB before refs and reports
    were let go as soon as they were read).
    """

    @dsl.pipeline(name="small")
    def small(items: list) -> None:
        # A small window, so that what is in flight weighs little next to what has ended.
        with dsl.ParallelFor(items, parallelism=32) as x:
            inc(x=x)

    def peak(steps: int) -> int:
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            result = raypipe.run(small, {"items": list(range(steps))})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.ok and len(result.tasks) == steps
        return peak - before

    peak(10)  # warm: workers, imports, caches
    per_step = (peak(2500) - peak(500)) / 2000
    assert per_step < 2500, f"{per_step:.0f} bytes per step"
