"""KFP's component and pipeline idioms in raypipe's own DSL: file paths, pythonic artifacts,
run-time placeholders, f-strings of pipeline values, ignore_upstream_failure."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import NamedTuple

import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, InputPath, Model, Output, OutputPath
from raypipe.spec.io import dumps, loads
from raypipe.spec.models import ConcatBinding


@dsl.component
def produce(
    text: str,
    data: OutputPath("Dataset"),  # noqa: F821 - KFP spells artifact types as strings
    count: OutputPath(int),
    flag: OutputPath(bool),
    table: OutputPath(dict),
) -> NamedTuple("Outputs", [("shout", str)]):  # noqa: UP014 - KFP's functional form
    with open(data, "w") as f:
        f.write(text)
    with open(count, "w") as f:
        f.write("3")
    with open(flag, "w") as f:
        f.write("True")  # str(True): KFP reads it as a boolean
    with open(table, "w") as f:
        f.write('{"a": 1}')
    outputs = namedtuple("Outputs", ["shout"])
    return outputs(text.upper())


@dsl.component
def pythonic() -> Dataset:
    data = Dataset(uri=dsl.get_uri())
    with open(data.path, "w") as f:
        f.write("made")
    data.metadata["length"] = 4
    return data


@dsl.component
def model_from(data: Dataset) -> Model:  # a bare artifact class is an input, as in KFP
    assert data.metadata["length"] == 4
    model = Model(uri=dsl.get_uri("weights"))
    with open(data.path) as f, open(model.path, "w") as out:
        out.write(f.read() + "+trained")
    return model


@dsl.component
def consume(
    data: InputPath("Dataset"),  # noqa: F821
    note: InputPath(str),
    model: Input[Model],
    count: int,
    flag: bool,
    table: dict,
    summary: Output[Dataset],
) -> str:
    with open(data) as f, open(note) as g, open(model.path) as h:
        text = f"{f.read()}|{g.read()}|{h.read()}|{count}|{flag}|{table['a']}"
    with open(summary.path, "w") as out:
        out.write(text)
    return text


@dsl.pipeline
def paths_pipeline(text: str = "hi") -> str:
    produced = produce(text=text)
    trained = model_from(data=pythonic().output)
    return consume(
        data=produced.outputs["data"],
        note=produced.outputs["shout"],
        model=trained.output,
        count=produced.outputs["count"],
        flag=produced.outputs["flag"],
        table=produced.outputs["table"],
    ).outputs["Output"]


def test_file_paths_and_pythonic_artifacts_run_with_kfp_semantics() -> None:
    assert produce.outputs["data"].kind == "artifact"
    assert produce.outputs["count"].type == "int" and produce.outputs["count"].source == "return"
    assert consume.inputs["note"].type == "str" and consume.inputs["data"].kind == "artifact"

    result = raypipe.run(paths_pipeline, tracking=False)

    assert result.ok, result.error
    assert result.output == "hi|HI|made+trained|3|True|1"
    model = result.tasks["model-from"].outputs["Output"]
    assert model.uri.endswith("/Output/weights")  # dsl.get_uri(suffix) is under the step's


def test_get_uri_outside_a_step_says_where_it_works() -> None:
    with pytest.raises(RuntimeError, match="inside a running step"):
        dsl.get_uri()


@dsl.component
def echo(message: str) -> str:
    return message


@dsl.component
def number(x: int) -> int:
    return x * 2


@dsl.pipeline
def placeholders_pipeline(who: str = "ada") -> str:
    doubled = number(x=3)
    with dsl.ParallelFor([1, 2]) as item:
        said = echo(message=f"{who} {doubled.output} {item} {dsl.PIPELINE_TASK_NAME_PLACEHOLDER}")
    return echo(
        message=f"{dsl.Collected(said.output)} job={dsl.PIPELINE_JOB_ID_PLACEHOLDER}"
    ).output


def test_f_strings_of_pipeline_values_and_placeholders_are_filled_per_step() -> None:
    spec = raypipe.compile(placeholders_pipeline)
    message = spec.root.dag.tasks["echo-2"].inputs["message"]
    assert isinstance(message, ConcatBinding)
    assert loads(dumps(spec)) == spec  # the concat survives the YAML round trip

    result = raypipe.run(spec, tracking=False)

    assert result.ok, result.error
    assert result.output == f'["ada 6 1 echo", "ada 6 2 echo"] job={result.run_id}'


def test_a_format_spec_on_a_pipeline_value_is_refused() -> None:
    @dsl.pipeline
    def formatted(x: float = 1.0) -> str:
        return echo(message=f"{x:.2f}").output

    with pytest.raises(raypipe.PipelineDefinitionError, match="format spec"):
        raypipe.compile(formatted)


@dsl.component
def fail(message: str) -> str:
    import sys

    print(message)
    sys.exit(1)  # KFP components fail this way; the worker must survive it


@dsl.component
def report(message: str = "default") -> str:
    return message


def test_sys_exit_fails_the_step_and_an_ignoring_task_gets_its_default(tmp_path: Path) -> None:
    @dsl.pipeline
    def ignoring() -> None:
        failed = fail(message="boom")
        report(message=failed.output).ignore_upstream_failure()

    spec = raypipe.compile(ignoring)
    assert spec.root.dag.tasks["report"].trigger == "all_done"

    result = raypipe.run(spec, tracking=False)

    assert result.status == "FAILED"
    error = result.tasks["fail"].error
    assert error is not None and "sys.exit(1)" in error.message
    assert result.tasks["report"].state == "SUCCEEDED"
    assert result.tasks["report"].outputs["Output"] == "default"
