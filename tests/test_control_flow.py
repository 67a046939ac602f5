"""Control flow in the DSL and the IR: loops, conditions, exit handlers, and their checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import raypipe
from raypipe import dsl
from raypipe.spec import dumps, loads
from raypipe.spec.models import (
    Conjunction,
    ConstantBinding,
    Negation,
    OneOfBinding,
    PipelineInputBinding,
    TaskFinalStatusBinding,
)
from tests.pipelines import add, echo, make_matrix, total


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def add_all(xs: list) -> int:
    return sum(xs)


@dsl.component
def configs(n: int) -> list:
    return [{"lr": 0.1 * i, "depth": i} for i in range(n)]


@dsl.component
def train(lr: float, depth: int) -> float:
    return lr * depth


@dsl.component
def notify(status: dsl.PipelineTaskFinalStatus, prefix: str) -> str:
    return f"{prefix}: {status.state}"


@dsl.pipeline(name="control")
def control(n: int = 3, threshold: int = 10) -> str:
    done = notify(prefix="run")
    with dsl.ExitHandler(exit_task=done):
        with dsl.ParallelFor([1, 2, 3], parallelism=2) as x:
            sq = square(x=x)
        t = add_all(xs=dsl.Collected(sq.output))
        items = configs(n=n)
        with dsl.ParallelFor(items.output) as cfg:
            train(lr=cfg.lr, depth=cfg["depth"])
        with dsl.If(t.output > threshold):
            big = echo(text="big")
        with dsl.Elif(t.output == threshold):
            equal = echo(text="equal")
        with dsl.Else():
            small = echo(text="small")
        final = echo(text=dsl.OneOf(big.output, equal.output, small.output))
    return final.output


def _dag(spec: raypipe.PipelineSpec, component: str | None = None):  # type: ignore[no-untyped-def]
    dag = spec.root.dag if component is None else spec.components[component].dag
    assert dag is not None
    return dag


def test_blocks_compile_into_kfp_style_sub_dags() -> None:
    spec = raypipe.compile(control)
    root = _dag(spec)
    assert list(root.tasks) == ["notify", "exit-handler-1"]
    body = _dag(spec, root.tasks["exit-handler-1"].component)
    assert list(body.tasks) == [
        "for-loop-2",
        "add-all",
        "configs",
        "for-loop-3",
        "condition-4",
        "condition-5",
        "condition-6",
        "echo-4",
    ]
    loop = body.tasks["for-loop-2"].loop
    assert loop is not None and loop.parallelism == 2
    assert loop.items == ConstantBinding(constant=[1, 2, 3])
    assert spec.components["control-for-loop-2"].inputs[loop.item_input].type == "int"


def test_loop_item_fields_are_selected_from_the_item() -> None:
    spec = raypipe.compile(control)
    train_task = _dag(spec, "control-for-loop-3").tasks["train"]
    assert train_task.inputs["lr"] == PipelineInputBinding(
        pipeline_input="pipelinechannel--for-loop-3-loop-item", field=["lr"]
    )
    assert train_task.inputs["depth"].field == ["depth"]  # type: ignore[union-attr]


def test_elif_and_else_negate_the_earlier_branches() -> None:
    body = _dag(raypipe.compile(control), "control-exit-handler-1")
    first = body.tasks["condition-4"].condition
    second = body.tasks["condition-5"].condition
    last = body.tasks["condition-6"].condition
    assert first is not None and first.op == ">"  # type: ignore[union-attr]
    assert isinstance(second, Conjunction) and isinstance(second.all[0], Negation)
    assert second.all[1].op == "=="  # type: ignore[union-attr]
    assert isinstance(last, Conjunction) and all(isinstance(c, Negation) for c in last.all)


def test_exit_task_waits_for_its_block_and_receives_its_final_status() -> None:
    notify_task = _dag(raypipe.compile(control)).tasks["notify"]
    assert notify_task.trigger == "all_done"
    assert notify_task.after == ["exit-handler-1"]
    assert notify_task.inputs["status"] == TaskFinalStatusBinding(
        task_final_status="exit-handler-1"
    )


def test_oneof_and_collected_become_bindings_on_the_blocks() -> None:
    body = _dag(raypipe.compile(control), "control-exit-handler-1")
    oneof = body.tasks["echo-4"].inputs["text"]
    assert isinstance(oneof, OneOfBinding) and len(oneof.oneof) == 3
    xs = body.tasks["add-all"].inputs["xs"]
    assert xs.task_output.task == "for-loop-2"  # type: ignore[union-attr]


def test_outer_values_are_threaded_into_blocks_as_inputs() -> None:
    spec = raypipe.compile(control)
    handler = _dag(spec).tasks["exit-handler-1"]
    assert handler.inputs["pipelinechannel--n"] == PipelineInputBinding(pipeline_input="n")
    configs_task = _dag(spec, handler.component).tasks["configs"]
    assert configs_task.inputs["n"] == PipelineInputBinding(pipeline_input="pipelinechannel--n")


def test_control_flow_round_trips_through_yaml(tmp_path: Path) -> None:
    spec = raypipe.compile(control, tmp_path / "control.yaml")
    assert raypipe.load(tmp_path / "control.yaml") == spec
    assert loads(dumps(spec, format="json")) == spec
    assert "not:" in (tmp_path / "control.yaml").read_text()


def test_nested_loops_and_after_a_loop_compile() -> None:
    @dsl.pipeline(name="nested")
    def nested() -> int:
        with dsl.ParallelFor([1, 2]) as a:
            with dsl.ParallelFor([10, 20]) as b:
                add(a=a, b=b)
        last = square(x=3)
        with dsl.ParallelFor([5]) as c:
            inner = square(x=c)
        last.after(inner)  # waits for the whole loop
        return last.output

    spec = raypipe.compile(nested)
    assert _dag(spec).tasks["square"].after == ["for-loop-3"]
    inner_loop = _dag(spec, "nested-for-loop-1").tasks["for-loop-2"]
    assert inner_loop.inputs == {
        "pipelinechannel--for-loop-1-loop-item": PipelineInputBinding(
            pipeline_input="pipelinechannel--for-loop-1-loop-item"
        )
    }


# --- compile-time checks ---------------------------------------------------------------


def _problems(build: Callable[[], None], name: str = "p") -> str:
    pipeline = dsl.pipeline(name=name)(build)
    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        raypipe.compile(pipeline)
    return str(e.value)


def test_loop_item_outside_its_loop_is_an_error() -> None:
    def build() -> None:
        with dsl.ParallelFor([1, 2]) as x:
            pass
        square(x=x)

    assert "p.square.x: uses the item of for-loop-1 outside its loop" in _problems(build)


def test_loop_output_outside_the_loop_needs_collected() -> None:
    def build() -> None:
        with dsl.ParallelFor([1, 2]) as x:
            sq = square(x=x)
        add_all(xs=sq.output)

    assert "made inside for-loop-1, outside that block; use dsl.Collected" in _problems(build)


def test_collected_inside_its_own_loop_is_an_error() -> None:
    def build() -> None:
        with dsl.ParallelFor([1, 2]) as x:
            sq = square(x=x)
            add_all(xs=dsl.Collected(sq.output))

    assert "is used inside for-loop-1; use it after the loop" in _problems(build)


def test_condition_on_an_artifact_or_object_is_an_error() -> None:
    def build() -> None:
        t = total(m=make_matrix(n=2).output)
        with dsl.If(t.outputs["out"] == "x"):
            echo(text="a")
        with dsl.If(make_matrix(n=1).output > 1):
            echo(text="b")

    text = _problems(build)
    assert "a condition compares parameters (numbers, strings, booleans...), not artifact" in text
    assert "not numpy.ndarray (in-memory object)" in text


def test_exit_task_cannot_depend_on_its_block() -> None:
    def build() -> None:
        done = echo(text="start")
        with dsl.ExitHandler(exit_task=done):
            inner = echo(text="body")
        done.arguments["text"] = inner.output  # as if the exit task read the body

    assert "the exit task of exit-handler-1 cannot use outputs of the block it guards" in (
        _problems(build)
    )


def test_elif_without_if_is_an_error() -> None:
    def build() -> None:
        t = square(x=1)
        with dsl.Elif(t.output > 1):
            echo(text="x")

    with pytest.raises(raypipe.PipelineDefinitionError, match="must directly follow a dsl.If"):
        dsl.pipeline(name="p")(build).trace()


def test_loop_over_a_scalar_is_an_error() -> None:
    def build(n: int) -> None:
        with dsl.ParallelFor(n) as x:  # type: ignore[arg-type]
            square(x=x)

    assert "dsl.ParallelFor needs a list to loop over, got int" in _problems(build)  # type: ignore[arg-type]


def test_final_status_input_outside_an_exit_task_is_an_error() -> None:
    def build() -> None:
        notify(prefix="x")

    assert "filled in only for the exit task of a dsl.ExitHandler" in _problems(build)


def test_oneof_alternatives_must_share_a_type() -> None:
    def build() -> None:
        t = square(x=1)
        with dsl.If(t.output > 1):
            a = square(x=2)
        with dsl.Else():
            b = echo(text="x")
        echo(text=dsl.OneOf(a.output, b.output))

    assert "dsl.OneOf alternatives differ in type: int and str" in _problems(build)


def test_a_comparison_is_not_a_python_bool() -> None:
    def build() -> None:
        t = square(x=1)
        if t.output > 1:
            echo(text="x")

    with pytest.raises(raypipe.PipelineDefinitionError, match="use it in dsl.If"):
        dsl.pipeline(name="p")(build).trace()


def test_channels_still_hash_by_identity() -> None:
    @dsl.pipeline
    def p() -> None:
        out = square(x=1).output
        assert len({out, out}) == 1 and isinstance(out == 1, object)

    p.trace()


def test_loaded_loop_over_a_constant_that_is_not_a_list_is_rejected(tmp_path: Path) -> None:
    document = raypipe.compile(control).to_dict()
    body = document["components"]["control-exit-handler-1"]["dag"]["tasks"]
    body["for-loop-2"]["loop"]["items"] = {"constant": 3}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(raypipe.SpecLoadError, match="a loop's items must be a list"):
        raypipe.load(path)


# --- running on Ray ------------------------------------------------------------------


@dsl.component
def slow_square(x: int, path: str) -> int:
    import time

    with open(path, "a") as f:
        f.write(f"start {x} {time.time()}\n")
    time.sleep(0.3)
    with open(path, "a") as f:
        f.write(f"end {x} {time.time()}\n")
    return x * x


@dsl.component
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


@pytest.mark.parametrize(
    ("threshold", "expected", "ran"),
    [
        (5, "big", "condition-4/echo"),
        (14, "equal", "condition-5/echo-2"),
        (100, "small", "condition-6/echo-3"),
    ],
)
def test_loops_conditions_oneof_and_exit_handler_run(
    threshold: int, expected: str, ran: str
) -> None:
    result = raypipe.run(control, {"n": 3, "threshold": threshold})
    assert result.ok, result.error
    assert result.output == expected
    tasks = result.tasks
    assert [
        tasks[f"exit-handler-1/for-loop-2[{i}]/square"].outputs["Output"] for i in range(3)
    ] == [1, 4, 9]
    assert tasks["exit-handler-1/add-all"].outputs["Output"] == 14
    assert tasks["exit-handler-1/for-loop-3[2]/train"].outputs["Output"] == pytest.approx(0.4)
    branches = {n: t.state for n, t in tasks.items() if "/condition-" in n}
    assert branches[f"exit-handler-1/{ran}"] == "SUCCEEDED"
    assert sorted(s.value for s in branches.values()) == ["SKIPPED", "SKIPPED", "SUCCEEDED"]
    assert tasks["notify"].outputs["Output"] == "run: COMPLETE"


def test_exit_task_runs_after_a_failure_and_sees_it() -> None:
    @dsl.pipeline(name="guarded")
    def guarded() -> None:
        done = notify(prefix="guarded")
        with dsl.ExitHandler(exit_task=done):
            fail_on(x=1, bad=1)

    result = raypipe.run(guarded)  # fail-fast by default: the exit task still runs
    assert result.status == "FAILED"
    assert result.tasks["notify"].state == "SUCCEEDED"
    assert result.tasks["notify"].outputs["Output"] == "guarded: FAILED"


def test_loop_over_a_pipeline_parameter_and_nested_loops_collect_in_order() -> None:
    @dsl.pipeline(name="grid")
    def grid(rows: list, cols: list = [10, 20]) -> list:  # noqa: B006
        with dsl.ParallelFor(rows) as r:
            with dsl.ParallelFor(cols) as c:
                cell = add(a=r, b=c)
            row_total = add_all(xs=dsl.Collected(cell.output))
        return dsl.Collected(row_total.output)

    result = raypipe.run(grid, {"rows": [1, 2, 3]})
    assert result.ok, result.error
    assert result.output == [32, 34, 36]
    assert result.tasks["for-loop-1[2]/for-loop-2[1]/add"].outputs["Output"] == 23


def test_condition_on_a_parameter_inside_a_loop_collects_only_the_branches_taken() -> None:
    @dsl.pipeline(name="evens")
    def evens(limit: int = 3) -> list:
        with dsl.ParallelFor([1, 2, 3, 4]) as x:
            sq = square(x=x)
            with dsl.If(sq.output > limit):
                square(x=sq.output)
        return dsl.Collected(sq.output)

    result = raypipe.run(evens)
    assert result.output == [1, 4, 9, 16]
    states = {n: t.state.value for n, t in result.tasks.items() if "condition" in n}
    assert states["for-loop-1[0]/condition-2/square-2"] == "SKIPPED"
    assert states["for-loop-1[3]/condition-2/square-2"] == "SUCCEEDED"


def test_parallelism_caps_the_iterations_running_at_once(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"

    @dsl.pipeline(name="capped")
    def capped(path: str) -> list:
        with dsl.ParallelFor([1, 2, 3], parallelism=1) as x:
            s = slow_square(x=x, path=path)
        return dsl.Collected(s.output)

    assert raypipe.run(capped, {"path": str(log)}).output == [1, 4, 9]
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["start", "end"] * 3  # one at a time: never two starts in a row


def test_empty_loop_collects_an_empty_list() -> None:
    @dsl.pipeline(name="empty")
    def empty(items: list) -> int:
        with dsl.ParallelFor(items) as x:
            sq = square(x=x)
        return add_all(xs=dsl.Collected(sq.output)).output

    assert raypipe.run(empty, {"items": []}).output == 0


def test_failed_iteration_fails_what_collects_the_loop() -> None:
    @dsl.pipeline(name="one-bad")
    def one_bad() -> int:
        with dsl.ParallelFor([1, 2, 3]) as x:
            checked = fail_on(x=x, bad=2)
        return add_all(xs=dsl.Collected(checked.output)).output

    result = raypipe.run(one_bad, fail_fast=False)
    assert result.status == "FAILED"
    assert result.tasks["for-loop-1[1]/fail-on"].state == "FAILED"
    assert result.tasks["for-loop-1[0]/fail-on"].state == "SUCCEEDED"
    assert result.tasks["add-all"].state == "UPSTREAM_FAILED"
    assert result.error is not None and result.error.message == "item 2 is bad"


def test_loop_over_a_step_output_waits_for_it_then_fans_out() -> None:
    @dsl.pipeline(name="fan")
    def fan(n: int) -> list:
        items = configs(n=n)
        with dsl.ParallelFor(items.output) as cfg:
            t = train(lr=cfg.lr, depth=cfg.depth)
        return dsl.Collected(t.output)

    assert raypipe.run(fan, {"n": 4}).output == pytest.approx([0.0, 0.1, 0.4, 0.9])


@dsl.component
def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_cancel_still_runs_the_exit_task_and_tells_it_the_block_was_canceled() -> None:
    @dsl.pipeline(name="canceled")
    def canceled() -> None:
        done = notify(prefix="canceled")
        with dsl.ExitHandler(exit_task=done):
            nap(seconds=60)

    handle = raypipe.submit(canceled)
    time.sleep(1.0)  # let the nap start (a pending step is canceled the same way)
    assert handle.cancel()
    result = handle.wait(timeout=60)
    assert result.status == "CANCELED"
    assert result.tasks["exit-handler-1/nap"].state == "CANCELED"
    assert result.tasks["notify"].state == "SUCCEEDED"
    assert result.tasks["notify"].outputs["Output"] == "canceled: CANCELED"


def test_condition_is_the_older_spelling_of_if() -> None:
    @dsl.pipeline(name="older")
    def older(flag: str = "heads") -> list:
        with dsl.ParallelFor([1, 2]) as x:
            with dsl.Condition(flag == "heads"):
                sq = square(x=x)
        return dsl.Collected(sq.output)

    assert raypipe.run(older).output == [1, 4]
    assert raypipe.run(older, {"flag": "tails"}).output == []


def test_exit_handlers_nest_and_follow_each_other() -> None:
    @dsl.pipeline(name="handlers")
    def handlers() -> None:
        outer = notify(prefix="outer")
        with dsl.ExitHandler(exit_task=outer):
            inner = notify(prefix="inner")
            with dsl.ExitHandler(exit_task=inner):
                fail_on(x=1, bad=1)
        second = notify(prefix="second")
        with dsl.ExitHandler(exit_task=second):
            square(x=2)

    result = raypipe.run(handlers, fail_fast=False)
    outputs = {n: t.outputs.get("Output") for n, t in result.tasks.items() if "notify" in n}
    assert outputs == {
        "exit-handler-1/notify-2": "inner: FAILED",
        "notify": "outer: FAILED",
        "notify-3": "second: COMPLETE",
    }


def test_loop_over_a_collected_list_selects_fields_of_its_items() -> None:
    @dsl.component
    def depth_of(cfg: dict) -> int:
        return int(cfg["depth"])

    @dsl.pipeline(name="fields")
    def fields() -> list:
        with dsl.ParallelFor([2, 3]) as n:
            made = configs(n=n)  # a list of dicts per n
        with dsl.ParallelFor(dsl.Collected(made.output)) as batch:  # each batch is a list
            depth = depth_of(cfg=batch[1])  # its second dict
        return dsl.Collected(depth.output)

    assert raypipe.run(fields).output == [1, 1]


@dsl.component
def append_line(path: str, text: str) -> str:
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def test_a_branch_whose_condition_reads_an_output_twice_runs_once(tmp_path: Path) -> None:
    # The Elif's condition reads add-all's output twice (not(If) and its own comparison):
    # its step once ran twice, as each read woke the scheduler.
    log = tmp_path / "runs.txt"

    @dsl.pipeline(name="elif-once")
    def elif_once(path: str) -> None:
        t = add_all(xs=[4, 5, 5])
        with dsl.If(t.output > 14):
            append_line(path=path, text="big")
        with dsl.Elif(t.output == 14):
            append_line(path=path, text="equal")

    assert raypipe.run(elif_once, {"path": str(log)}, cache=False).ok
    assert log.read_text().splitlines() == ["equal"]
