"""The events a run sends to trackers, recorded by a plain observer on a real Ray."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, Markdown, Metrics, Output
from raypipe.runtime.events import RunEnded, RunStarted, StepEnded


class Recorder:
    """Keeps every event it gets, and the thread that delivered it."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.threads: set[str] = set()
        self.closed = False

    def run_started(self, event: RunStarted) -> None:
        self._keep(event)

    def step_ended(self, event: StepEnded) -> None:
        self._keep(event)

    def run_ended(self, event: RunEnded) -> None:
        self._keep(event)

    def close(self) -> None:
        self.closed = True

    def _keep(self, event: Any) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)

    def steps(self) -> dict[str, StepEnded]:
        return {e.task.name: e for e in self.events if isinstance(e, StepEnded)}


@dsl.component
def make_data(rows: int, out: Output[Dataset]) -> int:
    with open(out.path, "w") as f:
        f.write("x\n" + "\n".join(str(i) for i in range(rows)))
    return rows


@dsl.component
def fit(data: Input[Dataset], lr: float, epochs: int, metrics: Output[Metrics]) -> float:
    for epoch in range(epochs):
        raypipe.log_metric("loss", lr / (epoch + 1), step=epoch)
    metrics.log_metric("final_loss", lr / epochs)
    return lr / epochs


@dsl.component
def report(loss: float, page: Output[Markdown]) -> None:
    with open(page.path, "w") as f:
        f.write(f"# loss {loss}")


@dsl.component
def plain(x: int) -> int:
    return x + 1


@dsl.component
def boom(x: int) -> int:
    raise ValueError(f"bad {x}")


@dsl.pipeline(name="tracked")
def tracked(rows: int = 5, lr: float = 0.5) -> float:
    data = make_data(rows=rows)
    model = fit(data=data.outputs["out"], lr=lr, epochs=3)
    report(loss=model.outputs["Output"])
    plain(x=rows)
    return model.outputs["Output"]


def test_a_run_sends_started_each_step_then_ended_in_order_off_the_driver() -> None:
    recorder = Recorder()
    result = raypipe.run(
        tracked, {"rows": 4}, tracking=False, observers=[recorder], experiment="exp-1"
    )
    assert result.ok, result.error
    first, *middle, last = recorder.events
    assert isinstance(first, RunStarted) and isinstance(last, RunEnded)
    assert first.run_id == result.run_id == last.run_id
    assert first.experiment == "exp-1" and first.arguments == {"rows": 4, "lr": 0.5}
    assert len(first.spec_digest) == 64
    assert last.status == "SUCCEEDED" and last.outputs == {"Output": pytest.approx(0.5 / 3)}
    assert sorted(e.task.name for e in middle) == ["fit", "make-data", "plain", "report"]
    assert recorder.closed
    assert threading.current_thread().name not in recorder.threads


def test_step_events_say_what_each_step_read_and_logged() -> None:
    recorder = Recorder()
    result = raypipe.run(tracked, {"rows": 4}, tracking=False, observers=[recorder])
    steps = recorder.steps()

    made = steps["make-data"]
    out = result.tasks["make-data"].outputs["out"]
    assert out.digest is not None and out.size == len("x\n0\n1\n2\n3")
    assert {i.name: i.value for i in made.inputs} == {"rows": 4}
    assert made.inputs[0].producers == []  # a pipeline argument

    fitted = steps["fit"]
    read = {i.name: i for i in fitted.inputs}
    assert read["data"].kind == "artifact" and read["data"].artifact == out
    assert read["data"].producers == ["make-data/out"]
    assert read["lr"].value == 0.5 and read["epochs"].value == 3
    curve = [(m.name, m.value, m.step) for m in fitted.metrics if m.name == "loss"]
    assert curve == [("loss", 0.5, 0), ("loss", 0.25, 1), ("loss", 0.5 / 3, 2)]
    assert [m.value for m in fitted.metrics if m.name == "final_loss"] == [pytest.approx(0.5 / 3)]
    assert fitted.tracked and fitted.component_digest is not None

    assert steps["report"].tracked  # writes a Markdown artifact
    assert steps["report"].inputs[0].producers == ["fit/Output"]
    assert not steps["plain"].tracked  # nothing to compare


def test_steps_that_did_not_run_are_reported_too() -> None:
    @dsl.pipeline(name="half")
    def half(x: int = 1) -> None:
        bad = boom(x=x)
        plain(x=bad.output)
        with dsl.If(x > 5):
            plain(x=x)

    recorder = Recorder()
    result = raypipe.run(half, tracking=False, fail_fast=False, observers=[recorder])
    states = {name: e.task.state.value for name, e in recorder.steps().items()}
    assert states == {
        "boom": "FAILED",
        "plain": "UPSTREAM_FAILED",
        "condition-1/plain-2": "SKIPPED",
    }
    assert set(states) == set(result.tasks)
    failed = recorder.steps()["boom"].task
    assert failed.error is not None and failed.error.message == "bad 1"
    assert isinstance(recorder.events[-1], RunEnded) and recorder.events[-1].status == "FAILED"


def test_a_failing_observer_warns_and_the_others_still_get_everything() -> None:
    class Broken(Recorder):
        name = "broken"

        def step_ended(self, event: StepEnded) -> None:
            raise OSError("disk full")

    broken, recorder = Broken(), Recorder()
    with pytest.warns(RuntimeWarning, match=r"tracker 'broken' failed recording StepEnded"):
        result = raypipe.run(tracked, tracking=False, observers=[broken, recorder])
    assert result.ok
    assert len(recorder.steps()) == 4 and isinstance(recorder.events[-1], RunEnded)


def test_log_metric_outside_a_step_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside a running step"):
        raypipe.log_metric("loss", 1.0)


def test_live_metrics_go_only_to_observers_that_take_them() -> None:
    from datetime import datetime, timezone

    from raypipe.runtime.events import EventBus, MetricPoint, StepMetrics

    class Live(Recorder):
        def step_metrics(self, event: StepMetrics) -> None:
            self._keep(event)

    plain, live = Recorder(), Live()
    bus = EventBus("run-1", [plain, live])
    points = [MetricPoint(name="loss", value=0.5, step=0, timestamp=1.0)]
    bus.post(StepMetrics(run_id="run-1", pipeline="p", task="fit", component="fit", points=points))
    bus.post(
        RunEnded(
            run_id="run-1", pipeline="p", status="SUCCEEDED", end_time=datetime.now(timezone.utc)
        )
    )
    bus.close(timeout=10)

    assert [type(e).__name__ for e in live.events] == ["StepMetrics", "RunEnded"]
    assert [type(e).__name__ for e in plain.events] == ["RunEnded"]  # not an error either
    assert plain.closed and live.closed
