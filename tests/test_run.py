"""Running pipelines on a real Ray: outputs, artifacts, objects, failures, retries, results."""

from __future__ import annotations

import os
import pickle
import socket
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import ray

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Metrics, Model
from raypipe.runtime.result import RunResult, TaskResult, TaskResults
from tests.pipelines import (
    DivMod,
    add,
    addition,
    append_line,
    divmod_,
    echo,
    fail,
    flaky,
    make_matrix,
    make_table,
    matrix_facts,
    read_dataset,
    read_env,
    table_facts,
    total,
    train,
    triple,
)


def test_issue_example_adds_in_two_steps() -> None:
    result = raypipe.run(addition, arguments={"a": 1, "b": 2})
    assert result.status == "SUCCEEDED" and result.output == 13
    assert set(result.tasks) == {"add", "add-2"}
    assert all(t.state == "SUCCEEDED" for t in result.tasks.values())


def test_result_records_times_node_attempts_and_parameter_outputs() -> None:
    result = raypipe.run(addition, {"a": 1, "b": 2, "c": 5})
    task = result.tasks["add-2"]
    assert task.outputs == {"Output": 8}
    assert len(task.attempts) == 1 and task.attempts[0].error is None
    assert task.node_id == ray.get_runtime_context().get_node_id()
    assert task.node_ip
    assert task.start_time is not None and task.end_time is not None
    assert task.start_time <= task.end_time
    assert result.tasks["add"].end_time <= task.start_time  # add-2 waited for add
    assert result.arguments == {"a": 1, "b": 2, "c": 5}
    assert len(result.run_id) == 32 and result.run_name.startswith("addition-")


def test_module_helpers_and_constants_travel_with_the_component() -> None:
    @dsl.pipeline
    def tripled(x: int) -> int:
        return triple(x=x).output

    assert raypipe.run(tripled, {"x": 4}).output == 12


def test_numpy_array_reaches_the_consumer_zero_copy_from_the_object_store() -> None:
    @dsl.pipeline
    def zero_copy(n: int) -> dict:
        return matrix_facts(m=make_matrix(n=n).output).output

    facts = raypipe.run(zero_copy, {"n": 512}).output
    assert facts["sum"] == 512 * 512
    # A copy would be writeable and own its data; an object-store view is neither.
    assert facts["writeable"] is False
    assert facts["owndata"] is False


def test_arrow_table_reaches_the_consumer_zero_copy_from_the_object_store() -> None:
    @dsl.pipeline
    def arrow(n: int) -> dict:
        return table_facts(t=make_table(n=n).output).output

    facts = raypipe.run(arrow, {"n": 100_000}).output
    assert facts["sum"] == sum(range(100_000))
    # A table built or unpickled in the consumer owns mutable buffers; a view does not.
    assert facts["mutable"] is False


def test_in_memory_object_outputs_are_summarised_not_fetched_in_task_results() -> None:
    @dsl.pipeline
    def matrix(n: int) -> float:
        return total(m=make_matrix(n=n).output).outputs["Output"]

    result = raypipe.run(matrix, {"n": 100})
    summary = result.tasks["make-matrix"].outputs["Output"]
    assert summary.type == "numpy.ndarray" and summary.nbytes == 100 * 100 * 8
    assert result.output == 10_000.0


def test_file_artifacts_are_written_under_the_artifact_root_and_read_downstream(
    raypipe_home: Path,
) -> None:
    @dsl.pipeline(name="artifacts")
    def artifacts(n: int) -> str:
        t = total(m=make_matrix(n=n).output)
        return read_dataset(data=t.outputs["out"]).output

    result = raypipe.run(artifacts, {"n": 3})
    assert result.output == "9.0|rows=3"
    record = result.tasks["total"].outputs["out"]
    assert record.type == "Dataset" and record.metadata == {"rows": 3}
    expected = raypipe_home / "artifacts" / "artifacts" / result.run_id / "total" / "out"
    assert record.uri == str(expected)
    assert expected.read_text() == "9.0"
    assert result.artifact_root == str(raypipe_home / "artifacts")


def test_artifact_root_argument_overrides_the_default(tmp_path: Path) -> None:
    @dsl.pipeline(name="trainer")
    def trainer(lr: float) -> None:
        train(lr=lr)

    root = tmp_path / "elsewhere"
    result = raypipe.run(trainer, {"lr": 0.25}, artifact_root=f"file://{root}")
    model = result.tasks["train"].outputs["model"]
    metrics = result.tasks["train"].outputs["metrics"]
    assert (root / "trainer" / result.run_id / "train" / "model" / "weights.txt").read_text() == (
        "0.25"
    )
    assert metrics.metadata == {"accuracy": 0.75}
    assert model.type == "Model" and metrics.type == "Metrics"
    # The cache entry goes under the same root (a file:// URI is not a relative path).
    deadline = time.monotonic() + 60
    while not list((root / ".raypipe-cache").glob("*/*.json")):
        assert time.monotonic() < deadline, "no cache entry under the artifact root"
        time.sleep(0.05)


def test_artifact_pipeline_output_is_an_artifact_object_with_a_local_path() -> None:
    @dsl.pipeline
    def trained(lr: float) -> Model:
        return train(lr=lr).outputs["model"]

    model = raypipe.run(trained, {"lr": 0.5}).output
    assert isinstance(model, Model)
    assert Path(model.path, "weights.txt").read_text() == "0.5"


def test_namedtuple_outputs_are_addressed_by_name() -> None:
    class Result(NamedTuple):
        q: int
        r: int

    @dsl.pipeline
    def division(a: int, b: int) -> Result:
        d = divmod_(a=a, b=b)
        return Result(q=d.outputs["quotient"], r=d.outputs["remainder"])

    result = raypipe.run(division, {"a": 17, "b": 5})
    assert result.outputs == {"q": 3, "r": 2}
    assert result.tasks["divmod-"].outputs == DivMod(3, 2)._asdict()


def test_pipeline_used_as_a_component_runs_its_steps_nested() -> None:
    @dsl.pipeline(name="outer")
    def outer(x: int) -> int:
        inner = addition(a=x, b=x)
        return add(a=inner.output, b=100).output

    result = raypipe.run(outer, {"x": 1})
    assert result.output == 112
    assert set(result.tasks) == {"addition/add", "addition/add-2", "add"}


def test_after_orders_steps_without_a_data_edge(tmp_path: Path) -> None:
    log = tmp_path / "order.txt"

    @dsl.pipeline
    def ordered(path: str) -> None:
        first = append_line(path=path, line="first")
        second = append_line(path=path, line="second").after(first)
        append_line(path=path, line="third").after(second)

    assert raypipe.run(ordered, {"path": str(log)}).ok
    assert log.read_text().splitlines() == ["first", "second", "third"]


def test_failing_step_fails_the_run_with_task_attempt_type_and_traceback() -> None:
    @dsl.pipeline(name="failing")
    def failing() -> int:
        bad = fail(message="boom")
        return add(a=bad.output, b=1).output

    result = raypipe.run(failing)
    assert result.status == "FAILED"
    assert result.outputs == {}
    assert result.tasks["fail"].state == "FAILED"
    assert result.tasks["add"].state == "UPSTREAM_FAILED"
    error = result.error
    assert error is not None
    assert (error.task, error.attempt, error.type) == ("fail", 1, "builtins.ValueError")
    assert error.message == "boom"
    assert "raise ValueError(message)" in error.traceback


def test_raise_on_failure_raises_step_failed_error_carrying_the_result() -> None:
    @dsl.pipeline(name="failing")
    def failing() -> int:
        return fail(message="bad input").output

    with pytest.raises(
        raypipe.StepFailedError, match=r"failing\.fail: .*ValueError: bad input"
    ) as e:
        raypipe.run(failing, raise_on_failure=True)
    assert e.value.task == "fail" and e.value.attempt == 1
    assert e.value.result is not None and e.value.result.status == "FAILED"


def test_independent_branch_still_completes_when_another_fails() -> None:
    @dsl.pipeline
    def branches() -> None:
        fail(message="left")
        echo(text="right")

    result = raypipe.run(branches, fail_fast=False)
    assert result.status == "FAILED"
    assert result.tasks["echo"].state == "SUCCEEDED"


def test_retries_rerun_a_raising_step_and_record_each_attempt(tmp_path: Path) -> None:
    @dsl.pipeline
    def retried(marker: str) -> int:
        return flaky(marker=marker, failures=2).set_retry(2).output

    result = raypipe.run(retried, {"marker": str(tmp_path / "count")})
    assert result.ok and result.output == 3
    attempts = result.tasks["flaky"].attempts
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.error.message if a.error else None for a in attempts] == [
        "flaky failure 1",
        "flaky failure 2",
        None,
    ]


def test_result_of_first_try_and_retried_steps_survives_json_and_pickle(tmp_path: Path) -> None:
    @dsl.pipeline
    def mixed(marker: str) -> int:
        first = add(a=1, b=2)  # ends on its first try: the run keeps it slim
        return flaky(marker=marker, failures=1).set_retry(1).after(first).output

    result = raypipe.run(mixed, {"marker": str(tmp_path / "count")})
    assert result.ok and result.output == 2
    assert isinstance(result.tasks, TaskResults) and list(result.tasks) == ["add", "flaky"]
    added = result.tasks["add"]
    assert isinstance(added, TaskResult) and added == result.tasks["add"]
    assert added.outputs == {"Output": 3} and [a.number for a in added.attempts] == [1]
    assert added.start_time == added.attempts[0].start_time and added.duration is not None
    assert [a.number for a in result.tasks["flaky"].attempts] == [1, 2]
    for copy in (
        RunResult.model_validate_json(result.model_dump_json()),
        RunResult.model_validate(result.model_dump()),
        pickle.loads(pickle.dumps(result)),
    ):
        assert copy == result and dict(copy.tasks) == dict(result.tasks)
    dumped = result.model_dump(mode="json")["tasks"]
    assert dumped["add"]["outputs"] == {"Output": 3} and len(dumped["flaky"]["attempts"]) == 2


def test_step_fails_when_retries_are_exhausted(tmp_path: Path) -> None:
    @dsl.pipeline
    def retried(marker: str) -> int:
        return flaky(marker=marker, failures=5).set_retry(1).output

    result = raypipe.run(retried, {"marker": str(tmp_path / "count")})
    assert result.status == "FAILED"
    assert result.error is not None and result.error.attempt == 2


def test_env_option_sets_the_variable_only_while_the_step_runs() -> None:
    @dsl.pipeline
    def env_pipeline() -> str:
        return read_env(name="RAYPIPE_TEST_VAR").set_env_variable("RAYPIPE_TEST_VAR", "on").output

    assert raypipe.run(env_pipeline).output == "on"
    assert "RAYPIPE_TEST_VAR" not in os.environ


def test_wrong_return_type_fails_the_step_naming_the_output() -> None:
    @dsl.component
    def lies() -> int:
        return "not a number"  # type: ignore[return-value]

    @dsl.pipeline
    def liar() -> int:
        return lies().output

    result = raypipe.run(liar)
    assert result.status == "FAILED" and result.error is not None
    assert "output 'Output': expected int, got str" in result.error.message


def test_pipeline_arguments_may_be_in_memory_objects() -> None:
    @dsl.pipeline
    def summed(m: np.ndarray) -> dict:
        return matrix_facts(m=m).output

    assert raypipe.run(summed, {"m": np.arange(4.0)}).output["sum"] == 6.0


def test_compiled_spec_runs_like_the_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "addition.yaml"
    raypipe.compile(addition, path)
    assert raypipe.run(raypipe.load(path), {"a": 2, "b": 3}).output == 15


def test_task_options_reach_ray(tmp_path: Path) -> None:
    @dsl.component(num_cpus=0.5, memory="64Mi")
    def resources() -> dict:
        import ray

        return ray.get_runtime_context().get_assigned_resources()

    @dsl.pipeline
    def resourced() -> dict:
        return resources().output

    assigned = raypipe.run(resourced).output
    assert assigned["CPU"] == pytest.approx(0.5)
    assert assigned["memory"] == 64 * 2**20


def test_bad_arguments_fail_before_any_step_runs_and_write_nothing(raypipe_home: Path) -> None:
    with pytest.raises(raypipe.PipelineArgumentError) as e:
        raypipe.run(addition, {"a": "1", "zz": 3})
    message = str(e.value)
    assert "addition.zz: unknown argument" in message
    assert "addition.a: expected int, got str ('1')" in message
    assert "addition.b: missing required argument (int)" in message
    assert not raypipe_home.exists()


def test_unreachable_ray_address_fails_fast_with_the_address() -> None:
    ray.shutdown()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with pytest.raises(raypipe.ClusterConnectionError, match=f"127.0.0.1:{port}"):
            raypipe.run(addition, {"a": 1, "b": 2}, address=f"127.0.0.1:{port}")
    finally:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")


def test_metrics_and_dataset_types_are_exported() -> None:
    assert issubclass(Metrics, dsl.Artifact) and issubclass(Dataset, dsl.Artifact)


def test_a_caller_may_choose_the_run_id() -> None:
    chosen = "0123456789abcdef" * 2
    result = raypipe.submit(addition, {"a": 1, "b": 2}, run_id=chosen).wait()
    assert result.ok and result.run_id == chosen
    with pytest.raises(raypipe.PipelineArgumentError, match="run_id: must be 32 lowercase hex"):
        raypipe.submit(addition, {"a": 1, "b": 2}, run_id="not-an-id")
