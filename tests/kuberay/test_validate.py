"""Manifest validation: the KubeRay CRD schemas, the operator's rules, core Kubernetes kinds."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raypipe.kuberay import (
    JobOptions,
    ManifestValidationError,
    cluster_manifest,
    cronjob_manifests,
    job_manifests,
    validate_file,
    validate_objects,
)
from tests.kuberay import pipelines as p

ROOT = Path(__file__).parents[2]
SHARED = ROOT.parent / "shared" / "kuberay"
SAMPLES = sorted((SHARED / "samples").glob("*.yaml"))
CRDS = sorted((SHARED / "crds").glob("ray.io_*.yaml"))


def _problems(obj: dict[str, Any]) -> list[str]:
    return [f"{x.path}: {x.message}" for x in validate_objects([obj])]


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return cluster_manifest(p.gpu_training)


@pytest.mark.skipif(not SAMPLES, reason=f"no KubeRay samples at {SHARED}")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_every_official_kuberay_sample_is_valid(sample: Path) -> None:
    objects = validate_file(sample)
    assert objects  # every document was read and checked


@pytest.mark.skipif(not CRDS, reason=f"no KubeRay CRDs at {SHARED}")
def test_shipped_schemas_are_those_of_the_kuberay_crds() -> None:
    for crd_file in CRDS:
        crd = yaml.load(crd_file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        kind = crd["spec"]["names"]["kind"]
        v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        shipped = ROOT / "raypipe" / "kuberay" / "crds" / f"{kind.lower()}.json"
        assert json.loads(shipped.read_text())["openAPIV3Schema"] == v1["schema"]["openAPIV3Schema"]


def test_generated_manifests_of_several_pipelines_are_valid() -> None:
    objects: list[dict[str, Any]] = []
    for pipeline in (p.plain, p.gpu_training, p.images, p.loops):
        objects.append(cluster_manifest(pipeline))
        objects += job_manifests(pipeline, {"a": 1} if pipeline is p.plain else {})
        objects += cronjob_manifests(
            pipeline,
            {"a": 1} if pipeline is p.plain else {},
            JobOptions(submission_mode="K8sJobMode"),
            schedule="*/5 * * * *",
        )
    assert validate_objects(objects) == []
    assert {o["kind"] for o in objects} == {"RayCluster", "RayJob", "RayCronJob", "ConfigMap"}


def test_a_float_cpu_is_caught_with_its_field_path(cluster: dict[str, Any]) -> None:
    broken = copy.deepcopy(cluster)
    broken["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ]["cpu"] = 0.5
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
        "memory"
    ] = "4 GB"
    assert _problems(broken) == [
        "spec.headGroupSpec.template.spec.containers[0].resources.requests.memory: "
        "'4 GB' is not a quantity such as '500m', '2' or '4Gi'",
        "spec.workerGroupSpecs[1].template.spec.containers[0].resources.limits.cpu: "
        "expected an integer or a quantity string such as '500m', got 0.5",
    ]


def test_unknown_missing_and_mistyped_fields_are_all_reported(cluster: dict[str, Any]) -> None:
    broken = copy.deepcopy(cluster)
    group = broken["spec"]["workerGroupSpecs"][0]
    del group["groupName"]
    group["maxReplica"] = 3  # a typo: the API server's strict validation refuses it
    group["minReplicas"] = "1"
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "RAYPIPE_SKIP_FEASIBILITY", "value": "0"}
    )
    assert _problems(broken) == [
        "spec.headGroupSpec.template.spec.containers[0].env[1]: duplicate entry "
        "(name='RAYPIPE_SKIP_FEASIBILITY'): items 0 and 1 share the key",
        "spec.workerGroupSpecs[0].groupName: required field is missing",
        "spec.workerGroupSpecs[0].maxReplica: unknown field",
        "spec.workerGroupSpecs[0].minReplicas: expected integer, got str ('1')",
    ]


def test_the_operators_rules_are_checked(cluster: dict[str, Any]) -> None:
    broken = copy.deepcopy(cluster)
    group = broken["spec"]["workerGroupSpecs"][0]
    group["rayStartParams"]["labels"] = "raypipe.io/group=default"
    group["rayStartParams"]["num-cpus"] = "1"
    group["resources"] = {"fast_disk": "1"}
    group["minReplicas"] = 9
    assert _problems(broken) == [
        "spec.workerGroupSpecs[0].minReplicas: 9 is more than maxReplicas 4",
        "spec.workerGroupSpecs[0].replicas: 0 is not within [9, 4]",
        "spec.workerGroupSpecs[0].rayStartParams.labels: not supported: use the group's labels",
        "spec.workerGroupSpecs[0].resources: resources set both here and in rayStartParams "
        "(num-cpus, num-gpus, memory, resources); use one",
    ]
    _, job = job_manifests(p.plain, {"a": 1})
    job["spec"]["shutdownAfterJobFinishes"] = False
    job["spec"]["ttlSecondsAfterFinished"] = 60
    job["spec"]["submissionMode"] = "HttpMode"
    assert _problems(job) == [
        "spec.submissionMode: 'HttpMode' is not one of "
        "('K8sJobMode', 'HTTPMode', 'InteractiveMode', 'SidecarMode')",
        "spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes: true",
    ]


def test_names_and_labels_follow_kubernetes_syntax(cluster: dict[str, Any]) -> None:
    broken = copy.deepcopy(cluster)
    broken["metadata"]["name"] = "gpu_training"
    broken["metadata"]["labels"]["raypipe.io/pipeline"] = "a b"
    assert _problems(broken) == [
        "metadata.name: 'gpu_training' is not a DNS-1035 label",
        "metadata.labels.raypipe.io/pipeline: 'a b' is not a valid label value",
    ]


def test_core_objects_are_checked_against_the_kubernetes_schemas() -> None:
    config_map, _ = job_manifests(p.plain, {"a": 1})
    config_map["data"]["count"] = 3
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "raypipe"},
        "spec": {"ports": [{"port": "http"}]},
    }
    problems = [str(x) for x in validate_objects([config_map, service])]
    assert problems == [
        "document 1 (ConfigMap addition-pipeline-pipeline): data.count: expected string, "
        "got int (3)",
        "document 2 (Service raypipe): spec.ports[0].port: expected integer, got str ('http')",
    ]


def test_validate_file_reads_every_document_and_raises_once(tmp_path: Path) -> None:
    config_map, job = job_manifests(p.plain, {"a": 1})
    job["spec"]["activeDeadlineSeconds"] = 0
    config_map["metadata"]["nme"] = "x"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump_all([config_map, None, job]))
    with pytest.raises(ManifestValidationError) as caught:
        validate_file(path)
    assert str(caught.value) == (
        f"{path}: 2 problems:\n"
        "  - document 1 (ConfigMap addition-pipeline-pipeline): metadata.nme: unknown field\n"
        "  - document 3 (RayJob addition-pipeline): spec.activeDeadlineSeconds: must be a "
        "positive integer"
    )
