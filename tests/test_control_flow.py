"""Control flow in the DSL and the IR: loops, conditions, exit handlers, and their checks."""

from __future__ import annotations

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


def test_running_control_flow_fails_before_any_step_and_says_why(raypipe_home: Path) -> None:
    with pytest.raises(raypipe.PipelineDefinitionError, match="cannot run it yet"):
        raypipe.run(control)
    assert not raypipe_home.exists()


def test_loaded_loop_over_a_constant_that_is_not_a_list_is_rejected(tmp_path: Path) -> None:
    document = raypipe.compile(control).to_dict()
    body = document["components"]["control-exit-handler-1"]["dag"]["tasks"]
    body["for-loop-2"]["loop"]["items"] = {"constant": 3}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(raypipe.SpecLoadError, match="a loop's items must be a list"):
        raypipe.load(path)
