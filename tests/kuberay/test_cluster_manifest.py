"""RayCluster manifests from pipelines: worker groups, sizes, labels, production defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raypipe.dsl.placement import GROUP_LABEL, worker_group
from raypipe.kuberay import (
    ClusterOptions,
    ManifestOptionError,
    check_objects,
    cluster_manifest,
    plan_worker_groups,
)
from raypipe.kuberay.cluster import HEAD_GROUP, as_spec
from tests.kuberay import pipelines as p


def _groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in manifest["spec"]["workerGroupSpecs"]}


def _worker(group: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = group["template"]["spec"]["containers"][0]
    return container


def test_plain_pipeline_gets_a_head_that_runs_no_steps_and_one_default_group() -> None:
    manifest = cluster_manifest(p.plain)
    check_objects([manifest])
    assert manifest["metadata"]["name"] == "addition-pipeline"
    head = manifest["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["labels"] == {GROUP_LABEL: HEAD_GROUP}
    assert list(_groups(manifest)) == ["default"]
    default = _groups(manifest)["default"]
    assert default["labels"] == {GROUP_LABEL: "default"}
    assert manifest["spec"]["enableInTreeAutoscaling"] is True
    assert manifest["spec"]["autoscalerOptions"]["version"] == "v2"
    assert (default["minReplicas"], default["maxReplicas"]) == (0, 4)


def test_gpu_training_step_lands_on_a_gpu_group_sized_for_its_workers() -> None:
    manifest = cluster_manifest(p.gpu_training)
    check_objects([manifest])
    name = worker_group(None, "H100")
    group = _groups(manifest)[name]
    assert group["labels"] == {GROUP_LABEL: name}
    assert group["resources"] == {"accelerator_type:H100": "1"}
    assert group["maxReplicas"] >= 3  # num_workers, one GPU worker per pod
    limits = _worker(group)["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_steps_with_images_get_a_group_running_that_image_with_their_largest_request() -> None:
    manifest = cluster_manifest(p.images, ClusterOptions(image="registry/raypipe:1"))
    check_objects([manifest])
    name = worker_group(p.TOOLS, None)
    assert list(_groups(manifest)) == [name]  # no step left for a default group
    group = _groups(manifest)[name]
    assert _worker(group)["image"] == p.TOOLS
    assert _worker(group)["resources"]["limits"]["cpu"] == "3"
    assert group["resources"] == {"fast_disk": "1"}
    assert "nodeSelector" not in group["template"]["spec"]
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "registry/raypipe:1"


def test_steps_inside_loops_conditions_and_nested_pipelines_are_found() -> None:
    plan = {g.name: g for g in plan_worker_groups(as_spec(p.loops))}
    trainer = plan[worker_group(p.TRAINER, "A100")]
    assert trainer.tasks == ["for-loop-1/condition-3/inner/finetune"]
    assert (trainer.cpus, trainer.gpus, trainer.memory) == (6, 2, 20 * 2**30)
    assert "for-loop-1/for-loop-2/add" in plan["default"].tasks
    manifest = cluster_manifest(p.loops)
    check_objects([manifest])
    limits = _worker(_groups(manifest)[trainer.name])["resources"]["limits"]
    # 20Gi for the step, and Ray keeps 30% of a node's memory for its object store
    assert limits == {"cpu": "6", "memory": "29440Mi", "nvidia.com/gpu": "2"}


def test_every_pod_is_production_ready_requests_equal_limits_non_root_no_host_paths() -> None:
    manifest = cluster_manifest(p.loops)
    pods = [manifest["spec"]["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in manifest["spec"]["workerGroupSpecs"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000
        assert "hostNetwork" not in pod and "hostPID" not in pod
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume
        for container in pod["containers"]:
            assert container["resources"]["requests"] == container["resources"]["limits"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["privileged"] is False
    assert "hostPath" not in json.dumps(manifest)


def test_options_reach_every_ray_container() -> None:
    options = ClusterOptions(
        namespace="ml",
        artifact_root="s3://bucket/raypipe",
        mlflow_tracking_uri="http://mlflow:5000",
        env={"MODE": "prod"},
        env_from_secrets=["s3-credentials"],
        node_selectors={"H100": {"node.kubernetes.io/instance-type": "p5.48xlarge"}},
        min_replicas=1,
        max_replicas=2,
        auth_token=True,
    )
    manifest = cluster_manifest(p.gpu_training, options)
    check_objects([manifest])
    assert manifest["metadata"]["namespace"] == "ml"
    assert manifest["spec"]["authOptions"] == {"mode": "token"}
    group = _groups(manifest)[worker_group(None, "H100")]
    assert group["template"]["spec"]["nodeSelector"] == {
        "node.kubernetes.io/instance-type": "p5.48xlarge"
    }
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 3)  # 3 training workers
    env = {e["name"]: e["value"] for e in _worker(group)["env"]}
    assert env == {
        "MODE": "prod",
        "RAYPIPE_ARTIFACT_ROOT": "s3://bucket/raypipe",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    assert _worker(group)["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_an_accelerator_without_a_known_node_label_warns_and_names_the_steps() -> None:
    from raypipe import dsl

    @dsl.component(accelerator="TPU-V9")
    def tpu_step(x: int) -> int:
        return x

    @dsl.pipeline(name="tpu")
    def tpu(x: int = 1) -> int:
        return tpu_step(x=x).output

    with pytest.warns(UserWarning, match=r"tpu: worker group .*TPU-V9.*tpu-step.*--node-selector"):
        manifest = cluster_manifest(tpu)
    assert "nodeSelector" not in manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]


def test_a_wrong_name_or_quantity_fails_naming_the_field() -> None:
    with pytest.raises(ManifestOptionError, match=r"^Addition Pipeline\.name: 'Bad_Name' is not"):
        cluster_manifest(p.plain, ClusterOptions(name="Bad_Name"))
    with pytest.raises(ManifestOptionError, match=r"head_memory: memory must be a quantity"):
        cluster_manifest(p.plain, ClusterOptions(head_memory="lots"))


def test_label_selectors_of_steps_become_labels_of_their_group() -> None:
    from raypipe import dsl

    @dsl.component(image=p.TOOLS, label_selector={"raypipe.io/pool": "spot"})
    def cheap(x: int) -> int:
        return x

    @dsl.component(image=p.TOOLS, label_selector={"raypipe.io/pool": "on-demand"})
    def careful(x: int) -> int:
        return x

    @dsl.pipeline(name="pools")
    def pools(x: int = 1) -> int:
        return cheap(x=x).output

    @dsl.pipeline(name="clash")
    def clash(x: int = 1) -> int:
        return careful(x=cheap(x=x).output).output

    manifest = cluster_manifest(pools)
    check_objects([manifest])
    (group,) = manifest["spec"]["workerGroupSpecs"]
    assert group["labels"] == {"raypipe.io/pool": "spot", GROUP_LABEL: worker_group(p.TOOLS, None)}
    with pytest.raises(ManifestOptionError, match=r"clash\.label_selector: steps 'cheap' and "):
        cluster_manifest(clash)


def test_gpus_without_an_accelerator_give_the_default_group_gpus_with_a_warning() -> None:
    from raypipe import dsl

    @dsl.component(num_gpus=1)
    def gpu_anywhere(x: int) -> int:
        return x

    @dsl.pipeline(name="anywhere")
    def anywhere(x: int = 1) -> int:
        return gpu_anywhere(x=x).output

    with pytest.warns(UserWarning, match=r"gpu-anywhere ask for GPUs without an accelerator"):
        manifest = cluster_manifest(anywhere)
    limits = _worker(manifest["spec"]["workerGroupSpecs"][0])["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
