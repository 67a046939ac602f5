"""Label selectors without a cluster: the option, its checks, the IR, the placement rule,
the feasibility messages, the job entrypoint; and that a laptop ignores worker groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl.pipeline import Pipeline
from raypipe.dsl.placement import GROUP_LABEL, worker_group
from raypipe.errors import (
    ComponentDefinitionError,
    PipelineArgumentError,
    PipelineDefinitionError,
    SpecLoadError,
)
from raypipe.remote import job_entrypoint
from raypipe.runtime.failures import InfeasibleResourcesError
from raypipe.runtime.feasibility import ResourceRequest, check_feasible
from raypipe.runtime.placement import (
    group_selector,
    group_selector_on,
    matches,
    step_selector,
    training_selector,
)
from raypipe.spec.compiler import compile_pipeline
from tests.cluster.pipelines import IMAGE, placement

GPU_POOL = {"raypipe.io/pool": "gpu"}
GROUPED = [{GROUP_LABEL: "default"}, {GROUP_LABEL: worker_group(IMAGE, None), **GPU_POOL}]


def test_a_step_gets_its_groups_selector_only_on_a_cluster_with_worker_groups() -> None:
    group = worker_group(IMAGE, "H100")
    assert group_selector_on(GROUPED, IMAGE, "H100") == {GROUP_LABEL: group}
    assert group_selector_on(GROUPED, None, None) == {}  # the default group: anywhere
    assert group_selector_on([{}, {"raypipe.io/pool": "gpu"}], IMAGE, "H100") == {}  # a laptop
    options = dsl.component(image=IMAGE, label_selector=GPU_POOL)(double).options
    assert step_selector(options, grouped=True) == {
        **GPU_POOL,
        GROUP_LABEL: worker_group(IMAGE, None),
    }
    assert step_selector(options, grouped=False) == GPU_POOL
    # A selector that names the group label itself is the user's choice, kept as written.
    own = options.model_copy(update={"label_selector": {GROUP_LABEL: "big-memory"}})
    assert step_selector(own, grouped=True) == {GROUP_LABEL: "big-memory"}


@pytest.mark.parametrize(
    ("wanted", "node", "expected"),
    [
        ("gpu", {"raypipe.io/pool": "gpu"}, True),
        ("gpu", {"raypipe.io/pool": "cpu"}, False),
        ("gpu", {}, False),
        ("!gpu", {"raypipe.io/pool": "cpu"}, True),
        ("!gpu", {}, True),  # as in Kubernetes and Ray: a node without the label
        ("!gpu", {"raypipe.io/pool": "gpu"}, False),
        ("in(gpu, tpu)", {"raypipe.io/pool": "tpu"}, True),
        ("in(gpu,tpu)", {"raypipe.io/pool": "cpu"}, False),
        ("!in(gpu, tpu)", {"raypipe.io/pool": "cpu"}, True),
        ("!in(gpu, tpu)", {"raypipe.io/pool": "gpu"}, False),
    ],
)
def test_selector_values_match_node_labels_as_ray_does(
    wanted: str, node: dict[str, str], expected: bool
) -> None:
    assert matches({"raypipe.io/pool": wanted}, node) is expected


def double(x: int) -> int:
    return 2 * x


def test_a_malformed_selector_fails_where_it_is_written_naming_the_field() -> None:
    with pytest.raises(ComponentDefinitionError) as caught:
        dsl.component(label_selector={"pool/": "gpu"})(double)
    assert str(caught.value) == (
        "component double.label_selector: label key 'pool/': the name must be 1-63 letters, "
        "digits, '-', '_' or '.', beginning and ending with a letter or digit"
    )
    doubling = dsl.component(double)

    @dsl.pipeline(name="sloppy")
    def sloppy() -> None:
        doubling(x=1).set_label_selector({"raypipe.io/pool": "in(gpu,"})

    with pytest.raises(PipelineDefinitionError) as caught_task:
        compile_pipeline(sloppy)
    assert str(caught_task.value).startswith(
        "sloppy.double.label_selector: label selector value 'in(gpu,': expected 'value', "
    )


def test_add_node_selector_constraint_sets_the_accelerator_as_kfp_does() -> None:
    doubling = dsl.component(double)

    @dsl.pipeline(name="kfp-style")
    def kfp_style() -> None:
        doubling(x=1).add_node_selector_constraint("NVIDIA_TESLA_T4")

    (task,) = compile_pipeline(kfp_style).root.dag.tasks.values()  # type: ignore[union-attr]
    assert task.options.accelerator == "NVIDIA_TESLA_T4"


def test_the_selector_is_kept_in_the_ir_and_checked_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "placement.yaml"
    raypipe.compile(placement, path)
    loaded = raypipe.load(path)
    dag = loaded.components[loaded.root.dag.tasks["for-loop-1"].component].dag  # type: ignore[union-attr]
    assert dag is not None
    assert dag.tasks["where"].options.label_selector == GPU_POOL
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("raypipe.io/pool: gpu", "raypipe.io/pool: '!!'"))
    with pytest.raises(SpecLoadError) as caught:
        raypipe.load(broken)
    assert "label_selector" in str(caught.value)
    assert "label selector value '!!'" in str(caught.value)


def test_infeasible_selectors_and_resources_name_pipeline_task_and_option() -> None:
    nodes = [{"CPU": 4.0}, {"CPU": 1.0}]
    wrong_pool = ResourceRequest(1.0, 0, 0, (), None, label_selector=(("raypipe.io/pool", "tpu"),))
    too_big = ResourceRequest(2.0, 0, 0, (), None, label_selector=tuple(GPU_POOL.items()))
    no_group = ResourceRequest(
        1.0, 0, 0, (), None, label_selector=((GROUP_LABEL, "server-1"),), selector_option="image"
    )
    with pytest.raises(InfeasibleResourcesError) as caught:
        check_feasible("p", {wrong_pool: ["a"], too_big: ["b"], no_group: ["c"]}, nodes, GROUPED)
    problems = {(p.task, p.field): p.message for p in caught.value.problems}
    assert problems == {
        ("a", "label_selector"): "label_selector raypipe.io/pool=tpu matches no alive node "
        "(raypipe.io/pool=tpu matches none; the nodes have raypipe.io/pool=gpu)",
        ("b", "num_cpus"): "needs 2 CPUs; the largest node has 1 "
        "(among the nodes matching raypipe.io/pool=gpu)",
        ("c", "image"): f"runs on worker group 'server-1' (node label {GROUP_LABEL}=server-1), "
        f"and no alive node is in it (the groups with alive nodes: default, "
        f"{worker_group(IMAGE, None)})",
    }
    check_feasible("p", {too_big: ["b"]}, [{"CPU": 1.0}, {"CPU": 2.0}], GROUPED)  # fits


def test_training_workers_are_checked_against_the_group_of_their_accelerator() -> None:
    train = dsl.TorchDistributed(num_workers=2, accelerator="H100")
    options = dsl.component(image=IMAGE, train=train)(double).options
    workers = training_selector(options, grouped=True)
    assert workers == {GROUP_LABEL: worker_group(IMAGE, "H100")}  # as raypipe.kuberay plans it
    assert training_selector(options, grouped=False) == {}
    request = ResourceRequest.for_training(train, workers)
    nodes = [{"CPU": 1.0, "GPU": 1.0, "accelerator_type:H100": 1.0}] * 2
    with pytest.raises(InfeasibleResourcesError) as caught:
        check_feasible("p", {request: ["fit"]}, nodes, GROUPED)
    (problem,) = caught.value.problems
    assert (problem.task, problem.field) == ("fit", "train")
    assert problem.message.startswith(
        f"its training workers run on worker group {worker_group(IMAGE, 'H100')!r}"
    )


def test_job_entrypoint_passes_parameters_as_run_parses_them() -> None:
    spec = compile_pipeline(placement)
    entrypoint = job_entrypoint(spec, {"greeting": "hi there"}, tracking=False, cache=False)
    assert entrypoint == (
        "raypipe run pipeline.json --quiet --result-line --no-tracking --no-cache "
        "--arg 'greeting=hi there'"
    )

    @dsl.component
    def total(m: np.ndarray) -> float:
        return float(m.sum())

    @dsl.pipeline(name="objects")
    def objects(m: np.ndarray) -> float:
        return total(m=m).output

    with pytest.raises(PipelineArgumentError, match="objects.m: a object argument cannot"):
        job_entrypoint(compile_pipeline(objects), {"m": np.ones(2)})


def test_on_a_laptop_image_adds_no_selector_and_the_step_runs() -> None:
    assert group_selector(IMAGE, "H100") == {}  # the session's Ray: no node has group labels
    result = raypipe.run(_image_only(), tracking=False)
    assert result.ok, result.error


def _image_only() -> Pipeline:
    @dsl.component(image=IMAGE)
    def in_image() -> int:
        return 1

    @dsl.pipeline(name="image-only")
    def image_only() -> int:
        return in_image().output

    return image_only
