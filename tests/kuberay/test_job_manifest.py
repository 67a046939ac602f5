"""RayJob and RayCronJob manifests: the IR in a ConfigMap, the entrypoint, KubeRay's rules."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from raypipe.errors import PipelineArgumentError
from raypipe.kuberay import (
    ClusterOptions,
    JobOptions,
    ManifestOptionError,
    check_objects,
    cronjob_manifests,
    job_manifests,
)
from raypipe.kuberay.job import IR_DIRECTORY, IR_FILE
from raypipe.spec import compile_pipeline, loads
from tests.kuberay import pipelines as p


def _mounts(pod: dict[str, Any]) -> list[str]:
    return [m["mountPath"] for m in pod["containers"][0].get("volumeMounts", [])]


def test_job_carries_the_ir_in_a_config_map_mounted_into_the_head() -> None:
    config_map, job = job_manifests(p.plain, {"a": 1, "b": 5})
    check_objects([config_map, job])
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"]["name"] == "addition-pipeline-pipeline"
    ir = loads(config_map["data"][IR_FILE])
    assert ir == compile_pipeline(p.plain)  # the same pipeline, read back
    spec = job["spec"]
    assert spec["submissionMode"] == "HTTPMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert "submitterPodTemplate" not in spec
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert head["volumes"] == [
        {"name": "pipeline", "configMap": {"name": config_map["metadata"]["name"]}}
    ]
    assert _mounts(head) == [IR_DIRECTORY]
    assert shlex.split(spec["entrypoint"]) == [
        "raypipe", "run", f"{IR_DIRECTORY}/{IR_FILE}",
        "--arg", "a=1", "--arg", "b=5", "--skip-resource-check",
    ]  # fmt: skip


def test_arguments_of_every_type_survive_the_command_line() -> None:
    from raypipe.cli import _parse_arguments

    _, job = job_manifests(p.loops, {"lrs": [0.5, 0.05], "threshold": 0.25})
    words = shlex.split(job["spec"]["entrypoint"])
    given = [words[i + 1] for i, w in enumerate(words) if w == "--arg"]
    parsed = _parse_arguments(compile_pipeline(p.loops), given)  # what `raypipe run` reads
    assert parsed == {"lrs": [0.5, 0.05], "threshold": 0.25}


def test_wrong_arguments_fail_before_anything_is_written() -> None:
    with pytest.raises(PipelineArgumentError) as caught:
        job_manifests(p.plain, {"b": "two", "z": 1})
    text = str(caught.value)
    assert "Addition Pipeline.z: unknown argument" in text
    assert "Addition Pipeline.a: missing required argument" in text
    assert "Addition Pipeline.b: expected int" in text


def test_k8s_job_mode_mounts_the_ir_into_the_submitter_too() -> None:
    options = JobOptions(
        submission_mode="K8sJobMode",
        ttl_seconds_after_finished=600,
        active_deadline_seconds=3600,
        backoff_limit=2,
        run_options=["--no-cache"],
        cluster=ClusterOptions(mlflow_tracking_uri="http://mlflow:5000"),
    )
    config_map, job = job_manifests(p.gpu_training, {}, options)
    check_objects([config_map, job])
    spec = job["spec"]
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]) == (600, 3600)
    assert spec["backoffLimit"] == 2
    submitter = spec["submitterPodTemplate"]["spec"]
    assert _mounts(submitter) == [IR_DIRECTORY]
    assert submitter["restartPolicy"] == "Never"
    assert submitter["containers"][0]["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert spec["entrypoint"].endswith("--skip-resource-check --no-cache")


def test_a_job_on_an_existing_cluster_uploads_the_ir_from_the_submitter() -> None:
    options = JobOptions(existing_cluster="shared-ray", submission_mode="K8sJobMode")
    config_map, job = job_manifests(p.plain, {"a": 1}, options)
    check_objects([config_map, job])
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": "shared-ray"}
    assert "rayClusterSpec" not in spec and "shutdownAfterJobFinishes" not in spec
    assert json.loads(spec["runtimeEnvYAML"]) == {"working_dir": IR_DIRECTORY}
    assert shlex.split(spec["entrypoint"])[:3] == ["raypipe", "run", IR_FILE]
    assert _mounts(spec["submitterPodTemplate"]["spec"]) == [IR_DIRECTORY]


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        (
            JobOptions(shutdown_after_job_finishes=False, ttl_seconds_after_finished=60),
            "ttl_seconds_after_finished",
            "only with shutdown_after_job_finishes=True",
        ),
        (
            JobOptions(
                existing_cluster="c", submission_mode="K8sJobMode", shutdown_after_job_finishes=True
            ),  # fmt: skip
            "shutdown_after_job_finishes",
            "cannot shut that cluster down",
        ),
        (
            JobOptions(
                existing_cluster="c", submission_mode="K8sJobMode", ttl_seconds_after_finished=5
            ),  # fmt: skip
            "ttl_seconds_after_finished",
            "has none",
        ),
        (JobOptions(existing_cluster="c"), "submission_mode", "use K8sJobMode"),
        (
            JobOptions(existing_cluster="c", submission_mode="SidecarMode"),
            "submission_mode",
            "SidecarMode cannot bring",
        ),
        (
            JobOptions(existing_cluster="Not A Name", submission_mode="K8sJobMode"),
            "existing_cluster",
            "not a DNS-1035 label",
        ),
        (JobOptions(name="x" * 48), "name", "longer than 47"),
    ],
)
def test_options_that_break_kuberay_rules_fail_naming_the_field(
    options: JobOptions, field: str, says: str
) -> None:
    with pytest.raises(ManifestOptionError, match=rf"^Addition Pipeline\.{field}: .*{says}"):
        job_manifests(p.plain, {"a": 1}, options)


def test_cronjob_runs_the_same_job_on_a_schedule() -> None:
    config_map, cron = cronjob_manifests(
        p.images, {"rows": 7}, JobOptions(namespace="ml"), schedule="0 * * * *", time_zone="UTC"
    )
    check_objects([config_map, cron])
    assert cron["kind"] == "RayCronJob"
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("0 * * * *", "UTC")
    template = cron["spec"]["jobTemplate"]
    assert "--arg rows=7" in template["entrypoint"]
    assert template["shutdownAfterJobFinishes"] is True
    assert {config_map["metadata"]["namespace"], cron["metadata"]["namespace"]} == {"ml"}


def test_a_cronjob_schedule_that_is_not_cron_fails_early() -> None:
    with pytest.raises(ManifestOptionError, match=r"images\.schedule: 'every hour' is not"):
        cronjob_manifests(p.images, {}, schedule="every hour")
