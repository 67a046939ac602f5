"""Container components and importers on a real Ray: commands with KFP's placeholders,
IfPresent/Concat, failures, and existing artifacts imported without a copy; and the same
pipelines compiled by the real KFP SDK, whose executors raypipe's converters make runnable.
"""

# No ``from __future__ import annotations``: KFP's decorators read annotations as objects.

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import cloudpickle
import pytest
import yaml
from moto.server import ThreadedMotoServer

import raypipe
from raypipe import dsl
from raypipe.dsl import Artifact, Dataset, Input, InputPath, Model, Output, OutputPath
from raypipe.dsl.container import ContainerCall
from raypipe.dsl.importer import ImportCall
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec
from raypipe.errors import ComponentDefinitionError, PipelineDefinitionError
from raypipe.runtime.cache import CACHE_DIR
from raypipe.runtime.logs import find_logs, read_log
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.kfp.containers import (
    KfpExecutorError,
    container_component_spec,
    importer_component,
)
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConstantBinding,
    DagSpec,
    OutputRef,
    PipelineInputBinding,
    PipelineSpec,
    TaskOutputBinding,
    TaskSpec,
)
from raypipe.spec.packaging import decode_payload

PYTHON = sys.executable  # the worker's Python: "python3" may be another one, or none

# Components (module level, as users write them) -------------------------------------------


@dsl.container_component
def write_lines(text: str, times: int, lines: Output[Dataset], count: OutputPath(int)):
    """Write ``text`` ``times`` times, one per line; count the lines."""
    return dsl.ContainerSpec(
        image="alpine:3.20",
        command=["sh", "-c", 'for i in $(seq "$1"); do echo "$0"; done > "$2" && echo "$1" > "$3"'],
        args=[text, f"{times}", lines.path, count],
    )


@dsl.container_component
def summarise(
    lines: Input[Dataset],
    summary: OutputPath(str),
    report: OutputPath("Model"),
    suffix: str | None = None,
    flags: dict = {"upper": True},  # noqa: B006 - a JSON default, as KFP allows
):
    """Read the lines with Python; the optional suffix decides two arguments."""
    return dsl.ContainerSpec(
        image="python:3.11",
        command=[
            PYTHON,
            "-c",
            "import json, sys\n"
            "data, summary, report, flags, *rest = sys.argv[1:]\n"
            "text = open(data).read().strip().replace('\\n', ' ')\n"
            "if json.loads(flags)['upper']: text = text.upper()\n"
            "open(summary, 'w').write(' '.join([text, *rest]))\n"
            "open(report, 'w').write('report')\n"
            "print('summarised', len(text), 'characters')\n",
        ],
        args=[
            lines.path,
            summary,
            report,
            f"{flags}",
            dsl.IfPresentPlaceholder(input_name="suffix", then=["--suffix", suffix], else_="-"),
            dsl.ConcatPlaceholder(
                ["tag=", dsl.IfPresentPlaceholder(input_name="suffix", then=suffix, else_="none")]
            ),
            f"uri={lines.uri}",
        ],
    )


@dsl.container_component
def describe(data: InputPath("Dataset"), info: Input[Dataset], out: OutputPath(str)):
    """Metadata placeholders: all of it as JSON, and one key."""
    return dsl.ContainerSpec(
        image="alpine:3.20",
        command=["sh", "-c", 'printf "%s|%s|%s" "$(cat "$0")" "$1" "$2" > "$3"'],
        args=[data, info.metadata, info.metadata["source"], out],
    )


@dsl.container_component
def fail_loudly(code: int):
    return dsl.ContainerSpec(
        image="alpine:3.20",
        command=["sh", "-c", 'echo "working" && echo "disk is full" >&2 && exit "$0"'],
        args=[f"{code}"],
    )


@dsl.container_component
def needs_tool(text: str):
    return dsl.ContainerSpec(
        image="ghcr.io/example/tools:1.0", command=["raypipe-no-such-tool", text]
    )


@dsl.container_component
def sleep_forever(pid_file: str):
    return dsl.ContainerSpec(
        image="alpine:3.20", command=["sh", "-c", 'echo $$ > "$0"; exec sleep 600'], args=[pid_file]
    )


@dsl.component
def read_text(data: Input[Artifact]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.component
def read_record(data: Input[Dataset]) -> dict:
    with open(data.path) as f:
        return {"text": f.read(), "uri": data.uri, "metadata": data.metadata}


@dsl.pipeline(name="container-lines")
def lines_pipeline(text: str = "hello", times: int = 3) -> str:
    written = write_lines(text=text, times=times)
    short = summarise(lines=written.outputs["lines"])
    long = summarise(lines=written.outputs["lines"], suffix="!", flags={"upper": False})
    both = read_text(data=short.outputs["report"])
    long.after(both)
    return long.outputs["summary"]


# Container components -----------------------------------------------------------------------


def test_container_component_interface_and_placeholders() -> None:
    assert write_lines.name == "write-lines"
    assert write_lines.options.image == "alpine:3.20"
    assert {n: s.source for n, s in write_lines.outputs.items()} == {
        "lines": "parameter",
        "count": "return",
    }
    call = write_lines.entrypoint
    assert isinstance(call, ContainerCall)
    assert call.args == [
        "{{$.inputs.parameters['text']}}",
        "{{$.inputs.parameters['times']}}",
        "{{$.outputs.artifacts['lines'].path}}",
        "{{$.outputs.parameters['count'].output_file}}",
    ]
    assert json.loads(summarise.entrypoint.args[4]) == {
        "IfPresent": {
            "InputName": "suffix",
            "Then": ["--suffix", "{{$.inputs.parameters['suffix']}}"],
            "Else": "-",
        }
    }
    assert describe.entrypoint.args[:3] == [
        "{{$.inputs.artifacts['data'].path}}",
        "{{$.inputs.artifacts['info'].metadata}}",
        "{{$.inputs.artifacts['info'].metadata['source']}}",
    ]
    # the payload is the call's JSON: the same call pickles to the same bytes
    assert cloudpickle.dumps(call) == cloudpickle.dumps(
        ContainerCall.model_validate_json(call.model_dump_json())
    )
    spec = compile_pipeline(lines_pipeline)
    python = spec.components["write-lines"].python
    assert python is not None and python.source is not None
    assert python.source.startswith("def write_lines(")
    assert cloudpickle.loads(decode_payload(python)) == call


def test_container_components_pass_parameters_and_artifacts(raypipe_home: Path) -> None:
    result = raypipe.run(lines_pipeline, {"text": "hi", "times": 2}, tracking=False)
    assert result.status == "SUCCEEDED", result.error
    assert result.tasks["write-lines"].outputs["count"] == 2
    lines_uri = result.tasks["write-lines"].outputs["lines"].uri
    assert Path(lines_uri).read_text() == "hi\nhi\n"
    assert result.tasks["summarise"].outputs["summary"] == f"HI HI - tag=none uri={lines_uri}"
    assert result.output == f"hi hi --suffix ! tag=! uri={lines_uri}"
    assert result.tasks["read-text"].outputs["Output"] == "report"
    # the command's stdout went to the step's log
    root = str(raypipe_home / "artifacts")
    logs = find_logs(root, result.run_id)
    assert logs is not None
    assert "summarised 5 characters" in read_log(root, logs["summarise"][0][1])


def _wait_for_cache_entries(home: Path, count: int) -> None:
    """Background persistence writes cache entries after a run returns: wait, never time."""
    deadline = time.monotonic() + 60.0
    while len(list((home / "artifacts" / CACHE_DIR).glob("*/*.json"))) < count:
        assert time.monotonic() < deadline, "cache entries were not written"
        time.sleep(0.05)


def test_compiled_container_pipeline_loads_runs_and_is_cached(
    tmp_path: Path, raypipe_home: Path
) -> None:
    path = tmp_path / "lines.yaml"
    raypipe.compile(lines_pipeline, path)
    loaded = raypipe.load(path)
    first = raypipe.run(loaded, {"text": "ab", "times": 1}, tracking=False)
    assert first.status == "SUCCEEDED", first.error
    _wait_for_cache_entries(raypipe_home, len(first.tasks))
    again = raypipe.run(lines_pipeline, {"text": "ab", "times": 1}, tracking=False)
    assert {t.state.value for t in again.tasks.values()} == {"CACHED"}
    assert again.output == first.output


def test_failing_command_fails_the_step_with_its_exit_code_and_stderr(raypipe_home: Path) -> None:
    @dsl.pipeline(name="container-fails")
    def fails() -> None:
        fail_loudly(code=3)

    result = raypipe.run(fails, tracking=False)
    assert result.status == "FAILED"
    error = result.error
    assert error is not None and error.task == "fail-loudly"
    assert error.type == "raypipe.dsl.container.ContainerCommandError"
    assert "exited with code 3 (image alpine:3.20)" in error.message
    assert "disk is full" in error.message
    assert error.log_tail is not None and "working" in error.log_tail


def test_missing_executable_error_names_the_image(raypipe_home: Path) -> None:
    @dsl.pipeline(name="container-missing-tool")
    def missing() -> None:
        needs_tool(text="x")

    result = raypipe.run(missing, tracking=False)
    assert result.status == "FAILED" and result.error is not None
    assert result.error.type == "raypipe.dsl.container.ExecutableNotFoundError"
    assert "'raypipe-no-such-tool' is not found" in result.error.message
    assert "meant to run in the image 'ghcr.io/example/tools:1.0'" in result.error.message


def test_timeout_ends_the_command(tmp_path: Path, raypipe_home: Path) -> None:
    pid_file = tmp_path / "pid"
    sleeper = sleep_forever
    timed = dsl.container_component(sleep_forever.python_func)
    timed.options = sleeper.options.model_copy(update={"timeout": 1.0})

    @dsl.pipeline(name="container-timeout")
    def slow() -> None:
        timed(pid_file=str(pid_file))

    result = raypipe.run(slow, tracking=False)
    assert result.status == "FAILED" and result.error is not None
    assert result.error.type.endswith("StepTimeoutError")
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the command was killed with the step


def test_container_component_mistakes_are_caught_when_decorated() -> None:
    import numpy as np

    with pytest.raises(ComponentDefinitionError, match="not numpy.ndarray"):

        @dsl.container_component
        def takes_object(m: np.ndarray):
            return dsl.ContainerSpec(image="x", command=["echo"])

    with pytest.raises(
        ComponentDefinitionError, match=r"run placeholder \{\{\$\.pipeline_job_name"
    ):

        @dsl.container_component
        def uses_run_name(text: str):
            return dsl.ContainerSpec(image="x", command=["echo", dsl.PIPELINE_JOB_NAME_PLACEHOLDER])

    with pytest.raises(ComponentDefinitionError, match="IfPresent names no input 'other'"):

        @dsl.container_component
        def unknown_input(text: str):
            return dsl.ContainerSpec(
                image="x", command=["echo", dsl.IfPresentPlaceholder(input_name="other", then=text)]
            )

    with pytest.raises(ComponentDefinitionError, match=r"not text; use data.path"):

        @dsl.container_component
        def artifact_as_text(data: Input[Dataset]):
            return dsl.ContainerSpec(image="x", command=["cat", f"{data}"])

    with pytest.raises(ComponentDefinitionError, match="returns a dsl.ContainerSpec"):

        @dsl.container_component
        def returns_text(text: str):
            return text

    with pytest.raises(ComponentDefinitionError, match=r"\{\{\$\}\}"):

        @dsl.container_component
        def whole_input(text: str):
            return dsl.ContainerSpec(image="x", command=["echo", "{{$}}"])


def test_command_line_fills_values_like_kfp() -> None:
    call = ContainerCall(
        component="c",
        command=["run", "{{$.inputs.parameters['flag']}}", "{{$.inputs.parameters['xs']}}"],
        args=[
            '{"Concat": ["--n=", "{{$.inputs.parameters[\'n\']}}", "/", '
            '{"IfPresent": {"InputName": "opt", "Then": "yes"}}]}',
            '{"IfPresent": {"InputName": "opt", "Then": ["--opt", "x"]}}',
            "{{$.inputs.parameters['text']}}",
        ],
        parameter_inputs=["flag", "xs", "n", "opt", "text"],
    )
    call.check()
    inputs = {"flag": True, "xs": [1, 2], "n": 0.5, "opt": None, "text": "{{$.x}}"}
    # a value that looks like a placeholder is taken as it is
    assert call.command_line(inputs, {}) == ["run", "true", "[1, 2]", "--n=0.5/", "{{$.x}}"]
    with pytest.raises(ValueError, match="'opt' has no value"):
        ContainerCall(
            component="c", command=["{{$.inputs.parameters['opt']}}"], parameter_inputs=["opt"]
        ).command_line({"opt": None}, {})


# Importers -------------------------------------------------------------------------------


@dsl.pipeline(name="import-local")
def import_local(folder: str, source: str = "warehouse") -> dict:
    data = dsl.importer(
        artifact_uri=f"{folder}/input.csv",  # built when the step runs
        artifact_class=Dataset,
        metadata={"source": source, "rows": 2, "label": f"from {source} {{x}}"},
    )
    described = describe(data=data.output, info=data.output)
    record = read_record(data=data.output)
    record.after(described)
    return record.output


def test_importer_of_a_local_file_feeds_components_without_a_copy(
    tmp_path: Path, raypipe_home: Path
) -> None:
    source = tmp_path / "input.csv"
    source.write_text("a,b\n1,2\n")
    result = raypipe.run(import_local, {"folder": str(tmp_path)})  # tracking on: lineage sees it
    assert result.status == "SUCCEEDED", result.error
    record = result.tasks["importer"].outputs["artifact"]
    assert record.uri == str(source) and record.type == "Dataset"
    assert record.metadata == {"source": "warehouse", "rows": 2, "label": "from warehouse {x}"}
    assert record.size == source.stat().st_size and record.digest is not None
    assert result.output == {"text": "a,b\n1,2\n", "uri": str(source), "metadata": record.metadata}
    assert result.tasks["describe"].outputs["out"] == (
        'a,b\n1,2|{"source": "warehouse", "rows": 2, "label": "from warehouse {x}"}|warehouse'
    )
    # nothing was copied under the artifact root
    copies = [p for p in (raypipe_home / "artifacts").rglob("*") if p.name == "input.csv"]
    assert copies == [] and source.read_text() == "a,b\n1,2\n"


def test_importer_makes_a_task_with_kfp_naming_and_interface() -> None:
    @dsl.pipeline(name="two-imports")
    def two(uri: str = "/data/a.csv", version: int = 1) -> None:
        a = dsl.importer(artifact_uri=uri, artifact_class=Dataset, metadata={"v": version})
        b = dsl.importer(artifact_uri="s3://bucket/m", artifact_class=Model, reimport=True)
        read_text(data=a.output).after(b)

    spec = compile_pipeline(two)
    tasks = spec.root.dag.tasks
    assert list(tasks) == ["importer", "importer-2", "read-text"]
    first = spec.components[tasks["importer"].component]
    assert list(first.inputs) == ["uri", "metadata"]
    assert first.outputs["artifact"].type == "Dataset"
    assert tasks["importer"].inputs["uri"] == PipelineInputBinding(pipeline_input="uri")
    assert tasks["importer-2"].inputs["uri"] == ConstantBinding(constant="s3://bucket/m")
    assert tasks["importer-2"].options.cache is False  # reimport: a new record every run
    python = first.python
    assert python is not None
    call = cloudpickle.loads(decode_payload(python))
    assert call == ImportCall(
        uri_input="uri",
        artifact_type="Dataset",
        metadata={"v": "{{$.inputs.parameters['metadata']}}"},
    )


def test_reimport_decides_whether_a_later_run_reuses_the_record(
    tmp_path: Path, raypipe_home: Path
) -> None:
    source = tmp_path / "data.txt"
    source.write_text("v1")

    @dsl.pipeline(name="reimports")
    def reimports(uri: str) -> None:
        dsl.importer(artifact_uri=uri, artifact_class=Dataset)
        dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=True)

    first = raypipe.run(reimports, {"uri": str(source)}, tracking=False)
    assert first.status == "SUCCEEDED", first.error
    _wait_for_cache_entries(raypipe_home, 1)
    source.write_text("v2")
    again = raypipe.run(reimports, {"uri": str(source)}, tracking=False)
    assert again.tasks["importer"].state.value == "CACHED"  # KFP: the artifact imported before
    assert again.tasks["importer-2"].state.value == "SUCCEEDED"
    old, new = (r.tasks["importer-2"].outputs["artifact"].digest for r in (first, again))
    assert old != new and again.tasks["importer"].outputs["artifact"].digest == old


def test_importer_mistakes_fail_before_anything_runs() -> None:
    with pytest.raises(PipelineDefinitionError, match="relative path"):

        @dsl.pipeline(name="relative")
        def relative() -> None:
            dsl.importer(artifact_uri="data/train.csv", artifact_class=Dataset)

        relative.trace()

    with pytest.raises(PipelineDefinitionError, match="inside a @dsl.pipeline"):
        dsl.importer(artifact_uri="/data/x", artifact_class=Dataset)

    with pytest.raises(PipelineDefinitionError, match="takes parameters, not the artifact"):

        @dsl.pipeline(name="artifact-metadata")
        def artifact_metadata() -> None:
            a = dsl.importer(artifact_uri="/data/x", artifact_class=Dataset)
            dsl.importer(artifact_uri="/data/y", artifact_class=Dataset, metadata={"a": a.output})

        artifact_metadata.trace()


def test_importer_of_a_missing_local_file_fails_the_step(
    tmp_path: Path, raypipe_home: Path
) -> None:
    result = raypipe.run(import_local, {"folder": str(tmp_path)}, tracking=False)
    assert result.status == "FAILED" and result.error is not None
    assert result.error.task == "importer"
    assert "nothing to import at" in result.error.message


# A remote URI: moto's S3 server on loopback ------------------------------------------------

ACCESS_KEY, SECRET_KEY, REGION, BUCKET = "key", "secret", "us-east-1", "imports"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{endpoint}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="data/train.csv", Body=b"x,y\n3,4\n")
        yield endpoint
    finally:
        server.stop()


def test_importer_of_a_remote_uri_keeps_it_and_downstream_reads_a_copy(
    s3_endpoint: str, raypipe_home: Path
) -> None:
    uri = (
        f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/data/train.csv"
        f"?endpoint_override={s3_endpoint}&scheme=http&region={REGION}"
    )

    @dsl.pipeline(name="import-remote")
    def import_remote(uri: str) -> dict:
        data = dsl.importer(artifact_uri=uri, artifact_class=Dataset)
        return read_record(data=data.output).output

    result = raypipe.run(import_remote, {"uri": uri}, tracking=False)
    assert result.status == "SUCCEEDED", result.error
    record = result.tasks["importer"].outputs["artifact"]
    assert record.uri == uri and record.digest is None  # not read to be imported
    assert result.output["text"] == "x,y\n3,4\n" and result.output["uri"] == uri


# The same pipelines compiled by KFP -----------------------------------------------------------

_KFP_PARAMETERS = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
}


def _kfp_interface(body: Mapping[str, Any]) -> tuple[dict[str, InputSpec], dict[str, OutputSpec]]:
    """A KFP component's definitions as raypipe specs (what the IR converter does)."""
    inputs: dict[str, InputSpec] = {}
    for name, spec in (body.get("inputDefinitions", {}).get("parameters") or {}).items():
        optional = bool(spec.get("isOptional"))
        inputs[name] = InputSpec(
            kind=IOKind.PARAMETER,
            type=_KFP_PARAMETERS[spec["parameterType"]],
            optional=optional,
            nullable=optional and spec.get("defaultValue") is None,
            default=spec.get("defaultValue"),
        )
    for name, spec in (body.get("inputDefinitions", {}).get("artifacts") or {}).items():
        title = spec["artifactType"]["schemaTitle"].removeprefix("system.")
        inputs[name] = InputSpec(kind=IOKind.ARTIFACT, type=title)
    outputs: dict[str, OutputSpec] = {}
    for name, spec in (body.get("outputDefinitions", {}).get("parameters") or {}).items():
        outputs[name] = OutputSpec(
            kind=IOKind.PARAMETER, type=_KFP_PARAMETERS[spec["parameterType"]], source="return"
        )
    for name, spec in (body.get("outputDefinitions", {}).get("artifacts") or {}).items():
        title = spec["artifactType"]["schemaTitle"].removeprefix("system.")
        outputs[name] = OutputSpec(kind=IOKind.ARTIFACT, type=title, source="parameter")
    return inputs, outputs


def _binding(spec: Mapping[str, Any], kfp_type: str | None) -> Binding:
    if "componentInputParameter" in spec:
        return PipelineInputBinding(pipeline_input=spec["componentInputParameter"])
    if "runtimeValue" in spec:
        value = spec["runtimeValue"]["constant"]
        if kfp_type == "NUMBER_INTEGER" and isinstance(value, float):
            value = int(value)
        return ConstantBinding(constant=value)
    ref = spec.get("taskOutputArtifact") or spec["taskOutputParameter"]
    output = ref.get("outputArtifactKey") or ref["outputParameterKey"]
    return TaskOutputBinding(task_output=OutputRef(task=ref["producerTask"], output=output))


def _runnable(document: Mapping[str, Any], python: Mapping[str, ComponentSpec]) -> PipelineSpec:
    """The root DAG of a compiled KFP pipeline around raypipe components ``python``
    (KFP component name -> converted component); Python executors are left out."""
    tasks: dict[str, TaskSpec] = {}
    for name, task in document["root"]["dag"]["tasks"].items():
        component = task["componentRef"]["name"]
        if component not in python:
            continue
        types = {
            n: s.get("parameterType")
            for n, s in (
                document["components"][component].get("inputDefinitions", {}).get("parameters")
                or {}
            ).items()
        }
        inputs = {
            input_name: _binding(spec, types.get(input_name))
            for kind in ("parameters", "artifacts")
            for input_name, spec in (task.get("inputs", {}).get(kind) or {}).items()
        }
        tasks[name] = TaskSpec(
            component=component.removeprefix("comp-"),
            inputs=inputs,
            after=[
                t for t in task.get("dependentTasks") or [] if t in document["root"]["dag"]["tasks"]
            ],
        )
    root_inputs = {
        name: InputSpec(
            kind=IOKind.PARAMETER,
            type=_KFP_PARAMETERS[spec["parameterType"]],
            optional="defaultValue" in spec,
            default=_binding(
                {"runtimeValue": {"constant": spec.get("defaultValue")}}, spec["parameterType"]
            ).constant,  # type: ignore[union-attr]
        )
        for name, spec in (
            document["root"].get("inputDefinitions", {}).get("parameters") or {}
        ).items()
    }
    return PipelineSpec(
        name=document["pipelineInfo"]["name"],
        root=ComponentSpec(inputs=root_inputs, dag=DagSpec(tasks=tasks)),
        components={k.removeprefix("comp-"): v for k, v in python.items()},
    )


def _convert_executors(document: Mapping[str, Any]) -> dict[str, ComponentSpec]:
    """Every container/importer executor of ``document`` as a runnable raypipe component."""
    executors = document["deploymentSpec"]["executors"]
    converted: dict[str, ComponentSpec] = {}
    for name, body in document["components"].items():
        if "executorLabel" not in body:
            continue
        label = body["executorLabel"]
        executor = executors[label]
        inputs, outputs = _kfp_interface(body)
        if "importer" in executor:
            python = importer_component(executor["importer"], inputs, outputs, label=label)
        else:
            python = container_component_spec(executor["container"], inputs, outputs, label=label)
        converted[name] = ComponentSpec(inputs=inputs, outputs=outputs, python=python)
    return converted


def _compile_with_kfp(pipeline_func: Any, tmp_path: Path) -> dict[str, Any]:
    from kfp import compiler

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline_func, str(path))
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _kfp_lines_pipeline() -> Any:
    from kfp import dsl as kfp_dsl
    from kfp.dsl import Dataset as KfpDataset
    from kfp.dsl import Input as KfpInput
    from kfp.dsl import Model as KfpModel
    from kfp.dsl import Output as KfpOutput
    from kfp.dsl import OutputPath as KfpOutputPath

    @kfp_dsl.container_component
    def write_lines(text: str, times: int, lines: KfpOutput[KfpDataset], count: KfpOutputPath(int)):
        return kfp_dsl.ContainerSpec(
            image="alpine:3.20",
            command=[
                "sh",
                "-c",
                'for i in $(seq "$1"); do echo "$0"; done > "$2" && echo "$1" > "$3"',
            ],
            args=[text, f"{times}", lines.path, count],
        )

    @kfp_dsl.container_component
    def summarise(
        lines: KfpInput[KfpDataset],
        summary: KfpOutputPath(str),
        report: KfpOutput[KfpModel],  # KFP's OutputPath("Model") writes a parameter
        suffix: str = None,
        flags: dict = {"upper": True},  # noqa: B006
    ):
        return kfp_dsl.ContainerSpec(
            image="python:3.11",
            command=summarise_command(),
            args=[
                lines.path,
                summary,
                report.path,
                f"{flags}",
                kfp_dsl.IfPresentPlaceholder(
                    input_name="suffix", then=["--suffix", suffix], else_="-"
                ),
                kfp_dsl.ConcatPlaceholder(
                    [
                        "tag=",
                        kfp_dsl.IfPresentPlaceholder(
                            input_name="suffix", then=suffix, else_="none"
                        ),
                    ]
                ),
                f"uri={lines.uri}",
            ],
        )

    @kfp_dsl.pipeline(name="container-lines")
    def lines_pipeline(text: str = "hello", times: int = 3):
        written = write_lines(text=text, times=times)
        summarise(lines=written.outputs["lines"])
        summarise(lines=written.outputs["lines"], suffix="!", flags={"upper": False})

    return lines_pipeline


def summarise_command() -> list[str]:
    command = summarise.container.command
    assert command is not None
    return [str(c) for c in command]


def test_kfp_compiled_container_executors_run_as_raypipe_components(
    tmp_path: Path, raypipe_home: Path
) -> None:
    document = _compile_with_kfp(_kfp_lines_pipeline(), tmp_path)
    components = _convert_executors(document)
    # KFP's IR and raypipe's DSL give the same command line
    ours = summarise.entrypoint
    theirs = cloudpickle.loads(decode_payload(components["comp-summarise"].python))  # type: ignore[arg-type]
    assert (theirs.command, theirs.args) == (ours.command, ours.args)
    assert theirs.parameter_outputs == {"summary": "str"}
    assert theirs.artifact_outputs == ["report"]

    result = raypipe.run(
        _runnable(document, components), {"text": "yo", "times": 2}, tracking=False
    )
    assert result.status == "SUCCEEDED", result.error
    lines_uri = result.tasks["write-lines"].outputs["lines"].uri
    assert result.tasks["write-lines"].outputs["count"] == 2
    assert result.tasks["summarise"].outputs["summary"] == f"YO YO - tag=none uri={lines_uri}"
    assert result.tasks["summarise-2"].outputs["summary"] == (
        f"yo yo --suffix ! tag=! uri={lines_uri}"
    )


def test_kfp_compiled_importer_runs_and_feeds_a_container(
    tmp_path: Path, raypipe_home: Path
) -> None:
    from kfp import dsl as kfp_dsl
    from kfp.dsl import Dataset as KfpDataset
    from kfp.dsl import Input as KfpInput
    from kfp.dsl import OutputPath as KfpOutputPath

    @kfp_dsl.container_component
    def describe(data: KfpInput[KfpDataset], out: KfpOutputPath(str)):
        return kfp_dsl.ContainerSpec(
            image="alpine:3.20",
            command=["sh", "-c", 'printf "%s|%s|%s" "$(cat "$0")" "$1" "$2" > "$3"'],
            args=[data.path, data.metadata["source"], data.uri, out],
        )

    constant = tmp_path / "constant.txt"
    constant.write_text("from a constant")
    given = tmp_path / "given.txt"
    given.write_text("from a parameter")

    @kfp_dsl.pipeline(name="kfp-importers")
    def importers(uri: str, source: str = "lake"):
        a = kfp_dsl.importer(
            artifact_uri=uri,
            artifact_class=KfpDataset,
            metadata={"source": source, "n": 1},
            reimport=True,
        )
        b = kfp_dsl.importer(
            artifact_uri=str(constant), artifact_class=KfpDataset, metadata={"source": "fixed"}
        )
        describe(data=a.output)
        describe(data=b.output)

    document = _compile_with_kfp(importers, tmp_path)
    components = _convert_executors(document)
    call = cloudpickle.loads(decode_payload(components["comp-importer"].python))  # type: ignore[arg-type]
    assert call.uri_input == "uri" and call.reimport
    assert call.metadata == {"source": "{{$.inputs.parameters['metadata']}}", "n": 1.0}

    result = raypipe.run(_runnable(document, components), {"uri": str(given)}, tracking=False)
    assert result.status == "SUCCEEDED", result.error
    assert result.tasks["importer"].outputs["artifact"].metadata == {"source": "lake", "n": 1.0}
    assert result.tasks["describe"].outputs["out"] == f"from a parameter|lake|{given}"
    assert result.tasks["describe-2"].outputs["out"] == f"from a constant|fixed|{constant}"


def test_kfp_executor_conversion_names_what_it_cannot_run() -> None:
    inputs = {"x": InputSpec(kind=IOKind.PARAMETER, type="str")}
    with pytest.raises(KfpExecutorError, match=r"executor exec-a \(used by a, a-2\): .*\{\{\$\}\}"):
        container_component_spec(
            {"image": "i", "command": ["run", "{{$}}"]},
            inputs,
            {},
            label="exec-a",
            task_names=["a", "a-2"],
        )
    with pytest.raises(KfpExecutorError, match="names no parameter input 'y'"):
        container_component_spec(
            {"image": "i", "args": ["{{$.inputs.parameters['y']}}"]}, inputs, {}, label="exec-b"
        )
    with pytest.raises(KfpExecutorError, match="json_escape"):
        container_component_spec(
            {"image": "i", "args": ["{{$.inputs.parameters['x'].json_escape[0]}}"]},
            inputs,
            {},
            label="exec-c",
        )
    with pytest.raises(KfpExecutorError, match="lifecycle"):
        container_component_spec({"image": "i", "lifecycle": {}}, inputs, {}, label="exec-d")
    artifact_out = {
        "artifact": OutputSpec(kind=IOKind.ARTIFACT, type="Dataset", source="parameter")
    }
    with pytest.raises(KfpExecutorError, match="'google.VertexModel' is not supported"):
        importer_component(
            {
                "artifactUri": {"constant": "gs://b/m"},
                "typeSchema": {"schemaTitle": "google.VertexModel"},
            },
            {},
            artifact_out,
            label="exec-importer",
        )
    with pytest.raises(KfpExecutorError, match="downloadToWorkspace"):
        importer_component(
            {
                "artifactUri": {"constant": "gs://b/m"},
                "typeSchema": {"schemaTitle": "system.Dataset"},
                "downloadToWorkspace": True,
            },
            {},
            artifact_out,
            label="exec-importer",
        )


def test_the_command_runs_in_its_own_process_group() -> None:
    """The process group of a finished command is gone (nothing it started lingers)."""
    call = ContainerCall(
        component="bg",
        command=["sh", "-c", 'sleep 600 & echo $! > "$0"'],
        args=["{{$.inputs.parameters['pid_file']}}"],
        parameter_inputs=["pid_file"],
    )
    with tempfile.TemporaryDirectory() as folder:
        pid_file = os.path.join(folder, "pid")
        call(pid_file=pid_file)
        pid = int(Path(pid_file).read_text())
    # the background sleep was killed with its group: gone, or a zombie not yet reaped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    assert out.stdout.strip() in ("", "Z"), out.stdout
