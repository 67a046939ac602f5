"""A KubeRay ``RayJob`` (or ``RayCronJob``) that runs a compiled pipeline, and the
``ConfigMap`` that carries its IR.

The entrypoint is ``raypipe run <IR file> --arg NAME=VALUE ...``, run by Ray's job
supervisor on the head, which joins the cluster through ``RAY_ADDRESS``. The IR (compact
JSON) travels in a ConfigMap mounted into the head; in ``K8sJobMode`` it is mounted into
the submitter pod too. With ``cluster=NAME`` the job runs on an existing RayCluster
(``clusterSelector``), whose head cannot mount a new ConfigMap: the submitter pod
(``K8sJobMode``) uploads the IR as the job's working directory instead.

The operator's rules are checked before anything is written (KubeRay's
``ValidateRayJobSpec``): a TTL needs ``shutdown_after_job_finishes``; an existing cluster
excludes a new cluster, shutting it down, and ``SidecarMode``; deadlines are positive.

Example:
    >>> config_map, ray_job = job_manifests(training, {"lr": 0.1}, JobOptions(namespace="ml"))
    >>> ray_job["spec"]["entrypoint"]  # doctest: +SKIP
    'raypipe run /home/ray/raypipe/pipeline/pipeline.json --arg lr=0.1'
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from raypipe.dsl.artifacts import Artifact
from raypipe.kuberay.cluster import (
    ClusterOptions,
    PipelineLike,
    as_spec,
    cluster_spec,
    container_env,
    container_security_context,
    object_metadata,
    pod_security_context,
    resource_name,
)
from raypipe.kuberay.errors import ManifestOptionError
from raypipe.kuberay.names import check_object_name
from raypipe.spec.arguments import bind_arguments
from raypipe.spec.models import PipelineSpec

__all__ = [
    "IR_DIRECTORY",
    "IR_FILE",
    "JobOptions",
    "SubmissionMode",
    "cronjob_manifests",
    "entrypoint",
    "job_manifests",
]

SubmissionMode = Literal["HTTPMode", "K8sJobMode", "SidecarMode"]

IR_DIRECTORY = "/home/ray/raypipe/pipeline"
"""Where the ConfigMap with the IR is mounted in the head and submitter pods."""

IR_FILE = "pipeline.json"

_MAX_JOB_NAME = 47  # KubeRay: MaxRayJobNameLength (the cluster name adds 6 characters)
_MAX_CONFIG_MAP_BYTES = 1024 * 1024  # Kubernetes refuses larger ConfigMaps


class JobOptions(BaseModel):
    """How a RayJob runs a pipeline; ``cluster`` describes the RayCluster it creates.

    Example:
        >>> JobOptions(ttl_seconds_after_finished=600).shutdown_after_job_finishes
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, description="default: from the pipeline's name")
    namespace: str | None = None
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)
    existing_cluster: str | None = Field(
        default=None, description="run on this RayCluster (clusterSelector) instead"
    )
    submission_mode: SubmissionMode = "HTTPMode"
    shutdown_after_job_finishes: bool | None = Field(
        default=None, description="delete the cluster when the job ends (default: yes)"
    )
    ttl_seconds_after_finished: NonNegativeInt | None = None
    active_deadline_seconds: PositiveInt | None = None
    backoff_limit: NonNegativeInt | None = None
    run_options: list[str] = Field(
        default_factory=list, description="more `raypipe run` options, e.g. ['--no-cache']"
    )


def job_manifests(
    pipeline: PipelineLike,
    arguments: Mapping[str, Any] | None = None,
    options: JobOptions | None = None,
) -> list[dict[str, Any]]:
    """The ``ConfigMap`` with the pipeline's IR and the ``RayJob`` that runs it.

    Raises:
        PipelineArgumentError: the arguments do not fit the pipeline's inputs.
        ManifestOptionError: an option is wrong or breaks one of KubeRay's rules.
    """
    spec = as_spec(pipeline)
    options = options or JobOptions()
    name = resource_name(spec, options.name, field="name", max_length=_MAX_JOB_NAME)
    config_map = _config_map(spec, f"{name}-pipeline", options.namespace)
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": object_metadata(spec, name, options.namespace),
        "spec": _job_spec(spec, arguments, options, config_map["metadata"]["name"]),
    }
    return [config_map, job]


def cronjob_manifests(
    pipeline: PipelineLike,
    arguments: Mapping[str, Any] | None = None,
    options: JobOptions | None = None,
    *,
    schedule: str,
    time_zone: str | None = None,
) -> list[dict[str, Any]]:
    """The ``ConfigMap`` with the IR and a ``RayCronJob`` that runs it on ``schedule``.

    Example:
        >>> cronjob_manifests(p, schedule="0 * * * *")[1]["spec"]["schedule"]  # doctest: +SKIP
        '0 * * * *'

    Raises:
        ManifestOptionError: the schedule is not a cron expression, or as for a RayJob.
    """
    spec = as_spec(pipeline)
    options = options or JobOptions()
    if not croniter.is_valid(schedule) or len(schedule.split()) not in (1, 5):
        raise ManifestOptionError(
            f"{schedule!r} is not a 5-field cron expression (minute hour day month weekday)",
            pipeline=spec.name,
            field="schedule",
        )
    name = resource_name(spec, options.name, field="name", max_length=_MAX_JOB_NAME)
    config_map = _config_map(spec, f"{name}-pipeline", options.namespace)
    cron_spec: dict[str, Any] = {"schedule": schedule}
    if time_zone is not None:
        cron_spec["timeZone"] = time_zone
    cron_spec["jobTemplate"] = _job_spec(spec, arguments, options, config_map["metadata"]["name"])
    cron = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": object_metadata(spec, name, options.namespace),
        "spec": cron_spec,
    }
    return [config_map, cron]


def entrypoint(
    spec: PipelineSpec, arguments: Mapping[str, Any] | None, ir_path: str, run_options: list[str]
) -> str:
    """The shell command that runs the pipeline on the head, arguments checked first.

    Example:
        >>> entrypoint(spec, {"a": 1}, "/p/pipeline.json", [])  # doctest: +SKIP
        'raypipe run /p/pipeline.json --arg a=1 --skip-resource-check'
    """
    given = dict(arguments or {})
    bind_arguments(spec, given)  # every missing, unknown or mistyped argument, at once
    words = ["raypipe", "run", ir_path]
    for key, value in given.items():
        words += ["--arg", f"{key}={_cli_text(value)}"]
    # the autoscaler adds the nodes a step needs: do not fail for want of a running one
    words += ["--skip-resource-check", *run_options]
    return shlex.join(words)


def _job_spec(
    spec: PipelineSpec,
    arguments: Mapping[str, Any] | None,
    options: JobOptions,
    config_map: str,
) -> dict[str, Any]:
    _check_job_rules(spec, options)
    existing = options.existing_cluster
    volume = {"name": "pipeline", "configMap": {"name": config_map}}
    mount = {"name": "pipeline", "mountPath": IR_DIRECTORY, "readOnly": True}
    ir_path = IR_FILE if existing is not None else f"{IR_DIRECTORY}/{IR_FILE}"
    job: dict[str, Any] = {
        "entrypoint": entrypoint(spec, arguments, ir_path, options.run_options),
        "submissionMode": options.submission_mode,
    }
    if existing is not None:
        # ray job submit (in the submitter pod) uploads the mounted IR as the working dir
        job["runtimeEnvYAML"] = json.dumps({"working_dir": IR_DIRECTORY}) + "\n"
        job["clusterSelector"] = {"ray.io/cluster": existing}
    else:
        shutdown = options.shutdown_after_job_finishes
        job["shutdownAfterJobFinishes"] = True if shutdown is None else shutdown
        if options.ttl_seconds_after_finished is not None:
            job["ttlSecondsAfterFinished"] = options.ttl_seconds_after_finished
    if options.active_deadline_seconds is not None:
        job["activeDeadlineSeconds"] = options.active_deadline_seconds
    if options.backoff_limit is not None:
        job["backoffLimit"] = options.backoff_limit
    if options.submission_mode == "K8sJobMode":
        job["submitterPodTemplate"] = _submitter(options, volume, mount)
    if existing is None:
        job["rayClusterSpec"] = cluster_spec(
            spec, options.cluster, head_volumes=[volume], head_mounts=[mount]
        )
    return job


def _check_job_rules(spec: PipelineSpec, options: JobOptions) -> None:
    """KubeRay's rules for a RayJob, checked here so nothing invalid is written."""

    def fail(field: str, problem: str) -> None:
        raise ManifestOptionError(problem, pipeline=spec.name, field=field)

    if options.existing_cluster is not None:
        problem = _cluster_name_problem(options.existing_cluster)
        if problem is not None:
            fail("existing_cluster", problem)
        if options.shutdown_after_job_finishes:
            fail(
                "shutdown_after_job_finishes",
                "a job on an existing cluster (clusterSelector) cannot shut that cluster down",
            )
        if options.ttl_seconds_after_finished is not None:
            fail(
                "ttl_seconds_after_finished",
                "a TTL deletes the job's own cluster; a job on an existing cluster has none",
            )
        if options.submission_mode != "K8sJobMode":
            fail(
                "submission_mode",
                f"{options.submission_mode} cannot bring the pipeline's IR to an existing "
                "cluster (its head cannot mount a new ConfigMap); use K8sJobMode, whose "
                "submitter pod uploads it as the job's working directory",
            )
    elif options.shutdown_after_job_finishes is False and options.ttl_seconds_after_finished:
        fail(
            "ttl_seconds_after_finished",
            "KubeRay allows a TTL only with shutdown_after_job_finishes=True (the TTL is how "
            "long the finished cluster is kept)",
        )


def _cluster_name_problem(name: str) -> str | None:
    return check_object_name(name, max_length=53)  # KubeRay: MaxRayClusterNameLength


def _submitter(
    options: JobOptions, volume: dict[str, Any], mount: dict[str, Any]
) -> dict[str, Any]:
    """The K8sJobMode submitter pod: KubeRay fills in its ``ray job submit`` command."""
    container: dict[str, Any] = {
        "name": "ray-job-submitter",
        "image": options.cluster.image,
        "imagePullPolicy": options.cluster.image_pull_policy,
    }
    env = container_env(options.cluster)
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    container["resources"] = {
        "limits": {"cpu": "500m", "memory": "512Mi"},
        "requests": {"cpu": "500m", "memory": "512Mi"},
    }
    container["securityContext"] = container_security_context()
    container["volumeMounts"] = [mount]
    pod: dict[str, Any] = {"restartPolicy": "Never"}
    if options.cluster.service_account is not None:
        pod["serviceAccountName"] = options.cluster.service_account
    if options.cluster.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in options.cluster.image_pull_secrets]
    pod["securityContext"] = pod_security_context()
    pod["containers"] = [container]
    pod["volumes"] = [volume]
    return {"spec": pod}


def _config_map(spec: PipelineSpec, name: str, namespace: str | None) -> dict[str, Any]:
    ir = json.dumps(spec.to_dict(), separators=(",", ":"), sort_keys=True)
    if len(ir.encode()) > _MAX_CONFIG_MAP_BYTES - 4096:
        raise ManifestOptionError(
            f"the compiled pipeline is {len(ir.encode()) // 1024} KiB; a ConfigMap holds at "
            "most 1 MiB (large constants or closures in components travel in the IR: load "
            "them from storage in the step instead)",
            pipeline=spec.name,
            field="ir",
        )
    metadata = object_metadata(spec, name, namespace)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {IR_FILE: ir}}


def _cli_text(value: Any) -> str:
    """A value as ``raypipe run --arg`` reads it back (strings as they are, else JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Artifact):
        return value.uri
    return json.dumps(value, separators=(",", ":"))
