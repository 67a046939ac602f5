"""Authoring: components, tasks, pipelines, naming, options, and mistakes caught early."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import NamedTuple

import numpy as np
import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, Metrics, Output
from raypipe.dsl.options import parse_cpu, parse_duration, parse_memory
from tests.pipelines import add, divmod_, echo, make_matrix, total


def test_component_reads_its_typed_interface_from_the_signature() -> None:
    assert add.name == "add"
    assert {n: (s.kind.value, s.type) for n, s in add.inputs.items()} == {
        "a": ("parameter", "int"),
        "b": ("parameter", "int"),
    }
    assert list(add.outputs) == ["Output"]
    assert make_matrix.outputs["Output"].kind == "object"
    assert make_matrix.outputs["Output"].type == "numpy.ndarray"
    assert total.inputs["m"].kind == "object"
    assert total.outputs["out"].kind == "artifact" and total.outputs["out"].source == "parameter"
    assert list(divmod_.outputs) == ["quotient", "remainder"]


def test_component_python_func_is_the_plain_function() -> None:
    assert add.python_func(2, 3) == 5
    assert divmod_.python_func(7, 2) == (3, 1)


def test_component_names_follow_kfp() -> None:
    @dsl.component
    def make_some_data(n: int) -> list:
        return list(range(n))

    assert make_some_data.name == "make-some-data"


def test_typed_generics_and_optional_inputs_are_parameters() -> None:
    @dsl.component
    def generic(xs: list[int], cfg: dict[str, float], maybe: int | None = None) -> list[str]:
        return []

    assert generic.inputs["xs"].type == "list" and generic.inputs["xs"].annotation == "list[int]"
    assert generic.inputs["cfg"].type == "dict"
    assert generic.inputs["maybe"].optional and generic.inputs["maybe"].nullable
    assert generic.outputs["Output"].annotation == "list[str]"


def test_component_options_are_stored() -> None:
    @dsl.component(
        num_cpus=2,
        num_gpus=1,
        memory="1Gi",
        resources={"special": 1},
        accelerator="A100",
        retries=3,
        cache=False,
        image="python:3.11",
        packages=["scikit-learn"],
        env={"A": "1"},
        timeout="5m",
    )
    def heavy() -> None:
        pass

    o = heavy.options
    assert (o.num_cpus, o.num_gpus, o.memory, o.accelerator) == (2, 1, 2**30, "A100")
    assert (o.retries, o.cache, o.image, o.packages) == (3, False, "python:3.11", ["scikit-learn"])
    assert (o.resources, o.env, o.timeout) == ({"special": 1}, {"A": "1"}, 300.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": "lots"}, "memory must be a quantity"),
        ({"num_cpus": -1}, "num_cpus"),
        ({"resources": {"GPU": 1}}, "use num_cpus, num_gpus or memory instead of GPU"),
        ({"timeout": "soon"}, "duration must be like"),
    ],
)
def test_invalid_component_options_fail_at_decoration(kwargs: dict, message: str) -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match=message):

        @dsl.component(**kwargs)
        def step() -> None:
            pass


def test_missing_annotation_names_component_and_parameter() -> None:
    with pytest.raises(
        raypipe.ComponentDefinitionError, match=r"component untyped\.x: has no type"
    ):

        @dsl.component
        def untyped(x) -> int:  # type: ignore[no-untyped-def]
            return 1


def test_var_args_are_rejected() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match=r"\*args and \*\*kwargs"):

        @dsl.component
        def variadic(*xs: int) -> int:
            return 1


def test_bare_artifact_parameter_is_an_input_as_in_kfp() -> None:
    @dsl.component
    def bare(d: Dataset) -> None:
        pass

    assert bare.inputs["d"].kind == "artifact" and bare.inputs["d"].type == "Dataset"


def test_non_json_default_is_rejected() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match="not a JSON value"):

        @dsl.component
        def defaulted(x: np.ndarray = np.zeros(2)) -> None:  # noqa: B008
            pass


def test_tasks_are_named_like_kfp_with_numbered_repeats() -> None:
    @dsl.pipeline
    def repeats(a: int) -> int:
        t1 = add(a=a, b=1)
        t2 = add(a=t1.output, b=1)
        t3 = add(a=t2.output, b=1)
        return echo(text="x").after(t3).output

    assert [t.name for t in repeats.trace().tasks] == ["add", "add-2", "add-3", "echo"]


def test_task_setters_override_component_options() -> None:
    @dsl.pipeline
    def tuned() -> None:
        (
            add(a=1, b=2)
            .set_display_name("first sum")
            .set_retry(3, backoff_duration="2s", backoff_factor=3, backoff_max_duration="1m")
            .set_cpu_limit("500m")
            .set_memory_limit("2G")
            .set_accelerator_type("T4")
            .set_accelerator_limit(2)
            .set_env_variable("MODE", "fast")
            .set_caching_options(False)
        )

    spec = raypipe.compile(tuned)
    assert spec.root.dag is not None
    task = spec.root.dag.tasks["add"]
    o = task.options
    assert task.display_name == "first sum"
    assert (o.retries, o.backoff_seconds, o.backoff_factor, o.backoff_max) == (3, 2.0, 3.0, 60.0)
    assert (o.num_cpus, o.memory, o.accelerator, o.num_gpus) == (0.5, 2 * 10**9, "T4", 2.0)
    assert (o.env, o.cache) == ({"MODE": "fast"}, False)


def test_bad_setter_value_names_pipeline_task_and_field() -> None:
    @dsl.pipeline(name="tuned")
    def tuned() -> None:
        add(a=1, b=2).set_memory_limit("a lot")

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"tuned\.add\.memory: memory must"):
        tuned.trace()


def test_positional_call_of_a_component_is_an_error() -> None:
    @dsl.pipeline(name="positional")
    def positional(a: int) -> int:
        return add(a, 2).output

    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        raypipe.compile(positional)
    assert str(e.value) == (
        "positional.add: components take keyword arguments only: add(a=..., b=...)"
    )


def test_calling_a_component_outside_a_pipeline_points_to_python_func() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match=r"add\.python_func"):
        add(a=1, b=2)


def test_unknown_output_name_names_the_task_and_lists_outputs() -> None:
    @dsl.pipeline(name="p")
    def p() -> int:
        return divmod_(a=1, b=2).outputs["quotent"]

    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        p.trace()
    assert str(e.value) == (
        "p.divmod-.quotent: unknown output name; divmod- has outputs: 'quotient', 'remainder'"
    )


def test_output_of_a_multi_output_task_asks_for_a_name() -> None:
    @dsl.pipeline(name="p")
    def p() -> float:
        return total(m=make_matrix(n=2).output).output

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"has 'out', 'Output'; use"):
        p.trace()


def test_python_condition_on_a_placeholder_is_an_error() -> None:
    @dsl.pipeline(name="p")
    def p(flag: bool) -> None:
        if flag:
            echo(text="yes")

    with pytest.raises(
        raypipe.PipelineDefinitionError, match="cannot be used in a Python condition"
    ):
        p.trace()


def test_pipeline_interface_from_signature_and_namedtuple_return() -> None:
    class Out(NamedTuple):
        q: int
        r: int

    @dsl.pipeline(name="division", description="Integer division.")
    def division(a: int, b: int = 3) -> Out:
        d = divmod_(a=a, b=b)
        return Out(d.outputs["quotient"], d.outputs["remainder"])

    assert division.name == "division" and division.description == "Integer division."
    assert division.inputs["b"].optional and division.inputs["b"].default == 3
    assert list(division.outputs) == ["q", "r"]


def test_pipeline_without_return_annotation_takes_output_types_from_tasks() -> None:
    @dsl.pipeline
    def unannotated(a: int):  # type: ignore[no-untyped-def]
        return add(a=a, b=1).output

    assert unannotated.outputs["Output"].type == "int"


def test_pipeline_returning_a_task_is_an_error_with_a_hint() -> None:
    @dsl.pipeline(name="p")
    def p() -> int:
        return add(a=1, b=2)  # type: ignore[return-value]

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"return add\.output"):
        p.trace()


def test_artifact_annotations_describe_kind_and_class() -> None:
    @dsl.component
    def uses(data: Input[Dataset], scores: Output[Metrics]) -> None:
        pass

    assert uses.inputs["data"].kind == "artifact" and uses.inputs["data"].type == "Dataset"
    assert uses.outputs["scores"].type == "Metrics"


def test_metrics_artifacts_keep_values_in_metadata() -> None:
    metrics = dsl.Metrics(name="m", uri="/tmp/m")
    metrics.log_metric("accuracy", 0.9)
    with pytest.raises(TypeError, match="must be a number"):
        metrics.log_metric("label", "good")  # type: ignore[arg-type]
    cm = dsl.ClassificationMetrics()
    cm.log_confusion_matrix(["a", "b"], [[3, 1], [0, 4]])
    cm.log_confusion_matrix_cell("a", "b", 2)
    cm.log_roc_curve([0.0, 1.0], [0.0, 1.0], [1.0, 0.0])
    assert cm.metadata["confusionMatrix"]["rows"] == [{"row": [3, 2]}, {"row": [0, 4]}]
    assert len(cm.metadata["confusionMatrix"]["annotationSpecs"]) == 2
    assert cm.metadata["confidenceMetrics"][1]["recall"] == 1.0


def test_quantities_parse_like_kubernetes() -> None:
    assert parse_cpu("250m") == 0.25 and parse_cpu(2) == 2.0
    assert parse_memory("1Ki") == 1024 and parse_memory("1k") == 1000
    assert parse_duration("1h") == 3600.0 and parse_duration("30s") == 30.0
    with pytest.raises(ValueError):
        parse_cpu("2Gi")


def test_building_a_pipeline_does_not_import_ray_mlflow_or_duckdb() -> None:
    code = (
        "import sys\n"
        "from raypipe import dsl\n"
        "@dsl.component\n"
        "def f(a: int) -> int:\n"
        "    return a\n"
        "@dsl.pipeline\n"
        "def p(a: int) -> int:\n"
        "    return f(a=a).output\n"
        "p.trace()\n"
        "print(sorted(m for m in ('ray', 'mlflow', 'duckdb') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_thread_local_builders_do_not_leak_between_threads() -> None:
    errors: list[BaseException] = []

    def build() -> None:
        try:

            @dsl.pipeline
            def threaded(a: int) -> int:
                return add(a=a, b=1).output

            assert [t.name for t in threaded.trace().tasks] == ["add"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
