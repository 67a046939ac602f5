"""The IR: compile-time checks, portable components, golden files, load errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

import raypipe
from raypipe import dsl
from raypipe.spec import dumps, loads
from tests.pipelines import add, addition, divmod_, echo, make_matrix, read_dataset, total

GOLDEN = Path(__file__).parent / "golden"


# --- compile-time checks ---------------------------------------------------------------


def test_type_mismatch_across_an_edge_names_both_tasks_and_fields() -> None:
    @dsl.pipeline(name="mismatch")
    def mismatch(text: str) -> int:
        return add(a=echo(text=text).output, b=1).output

    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        raypipe.compile(mismatch)
    assert str(e.value) == (
        "mismatch.add.a: expected int, got str (output 'Output' of task 'echo')"
    )
    assert (e.value.pipeline, e.value.task, e.value.field) == ("mismatch", "add", "a")


def test_object_output_into_a_parameter_input_is_a_mismatch() -> None:
    @dsl.pipeline(name="p")
    def p() -> int:
        return add(a=make_matrix(n=2).output, b=1).output

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"expected int, got numpy\.ndarray"):
        raypipe.compile(p)


def test_artifact_type_mismatch_and_parameter_into_artifact_are_errors() -> None:
    @dsl.component
    def wants_model(m: dsl.Input[dsl.Model]) -> None:
        pass

    @dsl.pipeline(name="p")
    def p() -> None:
        t = total(m=make_matrix(n=2).output)
        wants_model(m=t.outputs["out"])
        read_dataset(data=t.outputs["Output"])

    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        raypipe.compile(p)
    assert "p.wants-model.m: expected artifact Model, got artifact Dataset" in str(e.value)
    assert "p.read-dataset.data: expected artifact Dataset, got float" in str(e.value)


def test_every_problem_is_reported_at_once() -> None:
    @dsl.pipeline(name="sloppy")
    def sloppy(text: str) -> None:
        add(a="1", c=2)
        echo(text=text, extra=True)
        total(m=make_matrix(n=1).output, out="x")

    with pytest.raises(raypipe.PipelineDefinitionError) as e:
        raypipe.compile(sloppy)
    text = str(e.value)
    assert text.startswith("5 problems:")
    assert "sloppy.add.a: expected int, got str ('1')" in text
    assert "sloppy.add.c: unknown input of component add (inputs: a, b)" in text
    assert "sloppy.add.b: missing required input (int) of component add" in text
    assert "sloppy.echo.extra: unknown input" in text
    assert "'out' is an output of total, filled in by the runtime" in text
    assert len(e.value.problems) == 5


def test_non_json_constant_argument_is_an_error() -> None:
    import numpy as np

    @dsl.pipeline(name="p")
    def p() -> None:
        total(m=np.ones(3))

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"p\.total\.m: a constant of type"):
        raypipe.compile(p)


def test_passing_a_task_instead_of_its_output_is_an_error_with_a_hint() -> None:
    @dsl.pipeline(name="p")
    def p() -> None:
        first = add(a=1, b=2)
        add(a=first, b=2)

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"pass add\.output"):
        raypipe.compile(p)


def test_after_cycle_is_an_error_naming_the_cycle() -> None:
    @dsl.pipeline(name="loop")
    def loop() -> None:
        first = add(a=1, b=2)
        second = add(a=first.output, b=1)
        first.after(second)

    with pytest.raises(raypipe.PipelineDefinitionError, match=r"cycle: add -> add-2 -> add"):
        raypipe.compile(loop)


def test_unpicklable_global_is_a_compile_error_naming_it() -> None:
    lock = threading.Lock()

    @dsl.component
    def locked() -> int:
        with lock:
            return 1

    @dsl.pipeline
    def p() -> int:
        return locked().output

    with pytest.raises(raypipe.ComponentDefinitionError) as e:
        raypipe.compile(p)
    assert "component locked: cannot be made portable: it uses 'lock' (lock)" in str(e.value)


# --- the file format -------------------------------------------------------------------


def test_compile_load_round_trip_is_lossless(tmp_path: Path) -> None:
    for suffix in ("yaml", "json"):
        path = tmp_path / f"addition.{suffix}"
        spec = raypipe.compile(addition, path)
        loaded = raypipe.load(path)
        assert loaded == spec
        assert loaded.digest() == spec.digest()
        assert dumps(loaded) == dumps(spec)


def test_compiled_yaml_carries_readable_source(tmp_path: Path) -> None:
    text = dumps(raypipe.compile(addition))
    assert "source: |\n        def add(a: int, b: int) -> int:\n            return a + b" in text
    assert "@dsl.component" not in text


def _golden_view(spec: raypipe.PipelineSpec) -> dict:
    """The document without what varies by machine or edit: payload bytes, paths, lines."""
    document = spec.to_dict()
    for component in document["components"].values():
        if "python" in component:
            component["python"]["payload"] = "<payload>"
            component["python"]["filename"] = Path(component["python"]["filename"]).name
            component["python"]["line"] = "<line>"
    return document


@pytest.mark.parametrize("name", ["addition", "quickstart", "control"])
def test_compiled_ir_matches_the_golden_file(name: str) -> None:
    from examples import quickstart
    from tests.test_control_flow import control

    pipeline = {"addition": addition, "quickstart": quickstart.quickstart, "control": control}[name]
    actual = _golden_view(raypipe.compile(pipeline))
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(yaml.safe_dump(actual, sort_keys=False, width=100))
    assert actual == yaml.safe_load(golden.read_text()), (
        f"IR changed; if intended, regenerate with UPDATE_GOLDEN=1 pytest {__file__}"
    )


def test_schema_command_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from raypipe.cli import main

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"].startswith("raypipe PipelineSpec")
    assert {"root", "components", "name"} <= set(schema["properties"])


def test_component_from_a_module_that_cannot_be_imported_runs_from_yaml(tmp_path: Path) -> None:
    """Compile in another process from a module on a private path; run here without it."""
    module_dir = tmp_path / "private"
    module_dir.mkdir()
    (module_dir / "secret_pipeline.py").write_text(
        textwrap.dedent(
            """
            import statistics
            from raypipe import dsl

            OFFSET = 100

            def _shift(x: float) -> float:
                return x + OFFSET

            class Scaler:
                def __init__(self, k: float) -> None:
                    self.k = k

            @dsl.component
            def mean_shifted(xs: list, k: float) -> float:
                return _shift(statistics.mean(xs)) * Scaler(k).k

            @dsl.pipeline(name="secret")
            def secret(xs: list, k: float = 2.0) -> float:
                return mean_shifted(xs=xs, k=k).output
            """
        )
    )
    out = tmp_path / "secret.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "raypipe.cli",
            "compile",
            f"{module_dir}/secret_pipeline.py",
            "-o",
            str(out),
        ],
        check=True,
        cwd=tmp_path,
    )
    assert "secret_pipeline" not in sys.modules
    result = raypipe.run(raypipe.load(out), {"xs": [1, 2, 3]})
    assert result.ok, result.error
    assert result.output == 204.0


# --- loading errors --------------------------------------------------------------------


def _load_error(tmp_path: Path, text: str) -> raypipe.SpecLoadError:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(raypipe.SpecLoadError) as e:
        raypipe.load(path)
    return e.value


def _addition_document() -> dict:
    return raypipe.compile(addition).to_dict()


def test_malformed_yaml_is_reported_with_the_file(tmp_path: Path) -> None:
    error = _load_error(tmp_path, "name: [unclosed\n")
    assert str(error).startswith(f"{tmp_path / 'p.yaml'}: not valid YAML or JSON")


def test_unknown_field_is_reported_with_its_path_and_line(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add-2"]["retry"] = 3
    text = yaml.safe_dump(document, sort_keys=False)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.strip() == "retry: 3")
    error = _load_error(tmp_path, text)
    assert f"root.dag.tasks.add-2.retry (line {line}): unknown field" in str(error)


def test_wrong_value_type_is_reported_with_its_path(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add"]["options"] = {"num_cpus": "many"}
    error = _load_error(tmp_path, yaml.safe_dump(document))
    assert "root.dag.tasks.add.options.num_cpus" in str(error)
    assert "valid number" in str(error)


def test_binding_with_two_sources_is_rejected(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add"]["inputs"]["a"] = {"constant": 1, "pipeline_input": "a"}
    error = _load_error(tmp_path, yaml.safe_dump(document))
    assert "root.dag.tasks.add.inputs.a" in str(error)
    assert "exactly one of 'constant', 'pipeline_input', 'task_output'" in str(error)


def test_dangling_task_reference_is_reported(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add-2"]["inputs"]["a"]["task_output"]["task"] = "ad"
    error = _load_error(tmp_path, yaml.safe_dump(document, sort_keys=False))
    assert "root.dag.tasks.add-2.inputs.a.task_output.task (line" in str(error)
    assert "no task named 'ad' in this DAG" in str(error)


def test_cycle_in_a_hand_edited_file_is_reported(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add"]["after"] = ["add-2"]
    error = _load_error(tmp_path, yaml.safe_dump(document))
    assert "the tasks form a cycle: add -> add-2 -> add" in str(error)


def test_hand_edited_constant_of_the_wrong_type_is_reported(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add"]["inputs"]["a"] = {"constant": "one"}
    error = _load_error(tmp_path, yaml.safe_dump(document))
    assert "root.dag.tasks.add.inputs.a" in str(error) and "expected int, got str" in str(error)


def test_unknown_component_and_missing_output_binding_are_reported(tmp_path: Path) -> None:
    document = _addition_document()
    document["root"]["dag"]["tasks"]["add"]["component"] = "subtract"
    del document["root"]["dag"]["outputs"]["Output"]
    error = _load_error(tmp_path, yaml.safe_dump(document))
    assert "root.dag.tasks.add.component" in str(error)
    assert "unknown component 'subtract'" in str(error)
    assert "declared output is not bound" in str(error)


def test_kfp_pipeline_spec_is_recognised_and_converted() -> None:
    kfp = Path(__file__).parent / "data" / "kfp" / "pipelines" / "add_numbers.yaml"
    spec = raypipe.load(kfp)
    assert spec.name == "add-numbers" and list(spec.inputs) == ["a", "b"]
    python = spec.components["add-numbers"].python
    assert python is not None and "def add_numbers(" in (python.source or "")


def test_missing_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(raypipe.SpecLoadError, match="cannot read the file"):
        raypipe.load(tmp_path / "nope.yaml")


def test_loads_accepts_json_text() -> None:
    spec = raypipe.compile(addition)
    assert loads(json.dumps(spec.to_dict())) == spec


def test_compile_writes_nothing_when_the_pipeline_is_wrong(tmp_path: Path) -> None:
    @dsl.pipeline(name="p")
    def p() -> None:
        divmod_(a="x", b=1)

    with pytest.raises(raypipe.PipelineDefinitionError):
        raypipe.compile(p, tmp_path / "p.yaml")
    assert list(tmp_path.iterdir()) == []
