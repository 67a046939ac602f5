"""The step window: a run keeps at most so many steps submitted and not yet ended.

Real Ray runs every step; the window is made small (``RAYPIPE_STEP_WINDOW``) so that even
these small pipelines fill it, and the checks read the driver's own bookkeeping.
"""

from __future__ import annotations

from typing import Any

import pytest

import raypipe
from raypipe import dsl
from raypipe.runtime.execution import step_window
from raypipe.runtime.scheduler import DEFAULT_STEP_WINDOW
from tests.pipelines import add


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.component
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


@dsl.component
def notify(status: dsl.PipelineTaskFinalStatus, prefix: str) -> str:
    return f"{prefix}: {status.state}"


def _chains(width: int, steps: int) -> Any:
    """``width`` chains of ``steps`` steps, as a loop whose body is the chain (w5's shape)."""

    @dsl.pipeline(name="chains")
    def chains(starts: list) -> list:
        with dsl.ParallelFor(starts) as start:
            value: Any = start
            for _ in range(steps):
                last = inc(x=value)
                value = last.output
        return dsl.Collected(last.output)  # type: ignore[return-value]

    return chains


def _assert_nothing_held(handle: raypipe.RunHandle) -> None:
    execution = handle._execution
    scheduler = execution.scheduler
    assert scheduler is not None
    assert not execution._pending
    assert not scheduler._in_flight and not scheduler._incomplete and not scheduler._waits
    assert not scheduler._leaf_holder and not scheduler._parked


def test_loop_bodies_of_many_steps_stay_within_the_window(
    in_flight: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "4")
    handle = raypipe.submit(_chains(width=6, steps=5), {"starts": list(range(6))})
    result = handle.wait(timeout=120)
    assert result.ok, result.error
    assert result.output == [j + 5 for j in range(6)]
    assert len(result.tasks) == 30
    assert len(in_flight) == 30 and max(in_flight) <= 4
    _assert_nothing_held(handle)


def test_a_flat_graph_stays_within_the_window_and_keeps_its_order(
    in_flight: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    @dsl.pipeline(name="flat")
    def flat() -> int:
        steps = [inc(x=i) for i in range(12)]
        return add(a=steps[0].output, b=steps[11].output).output  # type: ignore[return-value]

    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "3")
    handle = raypipe.submit(flat)
    result = handle.wait(timeout=120)
    assert result.ok, result.error
    assert result.output == 1 + 12
    assert len(result.tasks) == 13 and max(in_flight) <= 3
    # Results list steps in submission order: every producer before what reads it.
    assert list(result.tasks)[-1] == "add"
    _assert_nothing_held(handle)


@pytest.mark.parametrize("threshold", [5, 100])
def test_conditions_loops_and_exit_handlers_run_the_same_one_step_at_a_time(
    threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_control_flow import control

    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "1")
    result = raypipe.run(control, {"n": 3, "threshold": threshold}, cache=False)
    assert result.ok, result.error
    assert result.output == ("big" if threshold == 5 else "small")
    assert result.tasks["exit-handler-1/add-all"].outputs["Output"] == 14
    assert result.tasks["notify"].outputs["Output"] == "run: COMPLETE"
    states = sorted(t.state.value for n, t in result.tasks.items() if "/condition-" in n)
    assert states == ["SKIPPED", "SKIPPED", "SUCCEEDED"]


def test_a_failure_while_steps_wait_for_the_window_stops_them_and_the_exit_task_sees_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dsl.pipeline(name="fails-early")
    def fails_early() -> None:
        done = notify(prefix="guarded")
        with dsl.ExitHandler(exit_task=done):
            with dsl.ParallelFor([1, 2, 3, 4, 5, 6]) as x:
                checked = fail_on(x=x, bad=1)
                inc(x=checked.output)

    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "2")
    result = raypipe.run(fails_early, cache=False)  # fail-fast
    assert result.status == "FAILED"
    assert result.error is not None and result.error.message == "item 1 is bad"
    assert result.tasks["exit-handler-1/for-loop-2[0]/inc"].state == "UPSTREAM_FAILED"
    assert result.tasks["notify"].outputs["Output"] == "guarded: FAILED"
    # Steps that were waiting for the window when the run stopped did not run.
    assert len(result.tasks) == 13
    assert all(
        t.state.value in ("SUCCEEDED", "FAILED", "UPSTREAM_FAILED", "CANCELED")
        for t in result.tasks.values()
    )


def test_an_after_on_a_step_that_succeeded_long_ago_is_dropped_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @dsl.pipeline(name="after-ok")
    def after_ok() -> int:
        first = inc(x=0)
        chain: Any = first.output
        for _ in range(6):
            chain = inc(x=chain).output
        last = inc(x=chain)
        last.after(first)
        return last.output  # type: ignore[return-value]

    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "2")
    result = raypipe.run(after_ok, cache=False)
    assert result.ok, result.error
    assert result.output == 8


def test_the_window_grows_with_the_cluster_and_the_variable_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAYPIPE_STEP_WINDOW", raising=False)
    assert step_window("p", cpus=2) == DEFAULT_STEP_WINDOW
    assert step_window("p", cpus=1000) > DEFAULT_STEP_WINDOW
    monkeypatch.setenv("RAYPIPE_STEP_WINDOW", "5000")
    assert step_window("p", cpus=2) == 5000
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("RAYPIPE_STEP_WINDOW", bad)
        with pytest.raises(ValueError, match=f"pipeline 'p': RAYPIPE_STEP_WINDOW='{bad}'"):
            step_window("p")
