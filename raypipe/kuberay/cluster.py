"""A KubeRay ``RayCluster`` for a pipeline: a head that runs no steps, a worker group per
(image, accelerator) its steps ask for, autoscaled, with production pod defaults.

Each worker group is named by :func:`raypipe.dsl.placement.worker_group` and its Ray nodes
carry the Ray node label ``raypipe.io/group=<group>`` (KubeRay's top-level ``labels``
field, which KubeRay also copies onto the pods), the label a step with ``image=`` or
``accelerator=`` is scheduled with. Groups declare custom resources (the steps' own, and
``accelerator_type:<X>`` for an accelerator) so Ray's autoscaler (v2) can scale them up
from zero pods. Pods set requests equal to limits, run as the non-root ``ray`` user
(uid 1000 in ``rayproject/ray`` images) without privilege escalation, and mount no host
path.

Example:
    >>> manifest = cluster_manifest(my_pipeline, ClusterOptions(namespace="ml"))
    >>> [g["groupName"] for g in manifest["spec"]["workerGroupSpecs"]]  # doctest: +SKIP
    ['default', 'trainer-h100-f69cd1']
"""

from __future__ import annotations

import math
import warnings
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from raypipe.dsl.options import parse_cpu, parse_memory
from raypipe.dsl.pipeline import Pipeline
from raypipe.dsl.placement import GROUP_LABEL
from raypipe.kuberay.errors import ManifestOptionError
from raypipe.kuberay.groups import WorkerGroupPlan, plan_worker_groups
from raypipe.kuberay.names import check_namespace, check_object_name, label_value, object_name
from raypipe.runtime.failures import SKIP_FEASIBILITY_ENV
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.models import PipelineSpec

__all__ = [
    "DEFAULT_IMAGE",
    "GKE_ACCELERATORS",
    "HEAD_GROUP",
    "ClusterOptions",
    "as_spec",
    "cluster_manifest",
    "cluster_spec",
]

DEFAULT_IMAGE = "raypipe:0.1.0"
"""The image ``deploy/kuberay/Dockerfile`` builds (raypipe on ``rayproject/ray``)."""

GKE_ACCELERATORS = {
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
    "K80": "nvidia-tesla-k80",
    "T4": "nvidia-tesla-t4",
    "L4": "nvidia-l4",
    "A100": "nvidia-tesla-a100",
    "A100-40G": "nvidia-tesla-a100",
    "A100-80G": "nvidia-a100-80gb",
    "H100": "nvidia-h100-80gb",
    "H200": "nvidia-h200-141gb",
    "B200": "nvidia-b200",
}
"""Ray accelerator types -> the GKE node label ``cloud.google.com/gke-accelerator``."""

HEAD_GROUP = "head"
"""The head's :data:`~raypipe.dsl.placement.GROUP_LABEL` value (no worker group has it:
:func:`~raypipe.dsl.placement.worker_group` names end in a digest, or are ``default``)."""

_GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
_GPU_RESOURCE = "nvidia.com/gpu"
_OBJECT_STORE_SHARE = 0.3  # Ray's default object store: 30% of a node's memory
_MEMORY_STEP = 256 * 2**20
_MAX_CLUSTER_NAME = 53  # KubeRay: MaxRayClusterNameLength
_RAY_UID, _RAY_GID = 1000, 100  # the ray user of rayproject/ray images

PipelineLike = Pipeline | PipelineSpec


class ClusterOptions(BaseModel):
    """How the RayCluster of a pipeline is made; every field has a production default.

    Example:
        >>> ClusterOptions(image="ghcr.io/acme/raypipe:0.1.0", max_replicas=8).max_replicas
        8
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, description="default: from the pipeline's name")
    namespace: str | None = None
    image: str = Field(default=DEFAULT_IMAGE, description="head and groups without image=")
    ray_version: str = Field(default_factory=lambda: version("ray"))
    head_cpu: str = "1"
    head_memory: str = "4Gi"
    worker_memory: str = Field(default="4Gi", description="the least memory of a worker pod")
    min_replicas: NonNegativeInt = 0
    max_replicas: PositiveInt = 4
    idle_timeout_seconds: PositiveInt = 60
    env: dict[str, str] = Field(default_factory=dict, description="in every Ray container")
    env_from_secrets: list[str] = Field(
        default_factory=list, description="Secrets whose keys become environment variables"
    )
    artifact_root: str | None = Field(
        default=None, description="RAYPIPE_ARTIFACT_ROOT: storage every pod reaches (s3://...)"
    )
    mlflow_tracking_uri: str | None = None
    node_selectors: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="accelerator type -> node selector of its pods (default: GKE's label)",
    )
    service_account: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)
    image_pull_policy: str = "IfNotPresent"
    auth_token: bool = Field(
        default=False,
        description="Ray token authentication (authOptions.mode: token; KubeRay keeps the "
        "token in a Secret and gives it to every Ray container)",
    )


def as_spec(pipeline: PipelineLike) -> PipelineSpec:
    """The compiled form of ``pipeline``."""
    return pipeline if isinstance(pipeline, PipelineSpec) else compile_pipeline(pipeline)


def cluster_manifest(
    pipeline: PipelineLike, options: ClusterOptions | None = None
) -> dict[str, Any]:
    """A ``RayCluster`` object (a dict ready for YAML) that can run ``pipeline``.

    Example:
        >>> cluster_manifest(addition)["spec"]["headGroupSpec"]["rayStartParams"]
        {'num-cpus': '0', 'dashboard-host': '0.0.0.0'}

    Raises:
        ManifestOptionError: an option is wrong (name, quantity), naming the field.
    """
    spec = as_spec(pipeline)
    options = options or ClusterOptions()
    name = resource_name(spec, options.name, field="name", max_length=_MAX_CLUSTER_NAME)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": object_metadata(spec, name, options.namespace),
        "spec": cluster_spec(spec, options),
    }


def resource_name(spec: PipelineSpec, given: str | None, *, field: str, max_length: int) -> str:
    """``given`` when it is a valid name, else one made from the pipeline's name."""
    if given is None:
        return object_name(spec.name, max_length=max_length)
    problem = check_object_name(given, max_length=max_length)
    if problem is not None:
        raise ManifestOptionError(problem, pipeline=spec.name, field=field)
    return given


def object_metadata(spec: PipelineSpec, name: str, namespace: str | None) -> dict[str, Any]:
    """``metadata`` of a generated object: its name, namespace and raypipe's labels."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        problem = check_namespace(namespace)
        if problem is not None:
            raise ManifestOptionError(problem, pipeline=spec.name, field="namespace")
        metadata["namespace"] = namespace
    metadata["labels"] = {
        "app.kubernetes.io/managed-by": "raypipe",
        "raypipe.io/pipeline": label_value(spec.name) or "pipeline",
    }
    return metadata


def cluster_spec(
    spec: PipelineSpec,
    options: ClusterOptions,
    *,
    head_volumes: list[dict[str, Any]] | None = None,
    head_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``spec`` of a RayCluster (also a RayJob's ``rayClusterSpec``) for ``spec``."""
    _check_quantities(spec, options)
    groups = plan_worker_groups(spec)
    return {
        "rayVersion": options.ray_version,
        **({"authOptions": {"mode": "token"}} if options.auth_token else {}),
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2",  # v2 scales groups for label selectors
            "upscalingMode": "Default",
            "idleTimeoutSeconds": options.idle_timeout_seconds,
            "imagePullPolicy": options.image_pull_policy,
            "securityContext": container_security_context(),
            "resources": _resources("500m", "512Mi", gpus=0),
        },
        "headGroupSpec": {
            # Steps run on workers only: the head keeps the GCS, dashboard and the driver.
            "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
            # the runtime sees a cluster laid out in groups by this label, even while every
            # worker group is scaled to zero
            "labels": {GROUP_LABEL: HEAD_GROUP},
            "template": {
                "metadata": {"labels": {GROUP_LABEL: HEAD_GROUP}},
                "spec": _pod_spec(
                    options,
                    _container(
                        "ray-head",
                        options.image,
                        options,
                        _resources(options.head_cpu, options.head_memory, gpus=0),
                        # the driver runs here: skip the "fits on a running node" check
                        # because the autoscaler adds nodes on demand
                        extra_env={SKIP_FEASIBILITY_ENV: "1"},
                        ports=[("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)],
                        mounts=head_mounts or [],
                    ),
                    volumes=head_volumes or [],
                    node_selector={},
                    gpu=False,
                ),
            },
        },
        "workerGroupSpecs": [_worker_group(spec, g, options) for g in groups],
    }


def container_security_context() -> dict[str, Any]:
    """A container that cannot gain privileges, with every Linux capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context() -> dict[str, Any]:
    """Run as the ``ray`` user of rayproject/ray images, with the runtime's seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": _RAY_UID,
        "runAsGroup": _RAY_GID,
        "fsGroup": _RAY_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _worker_group(
    spec: PipelineSpec, group: WorkerGroupPlan, options: ClusterOptions
) -> dict[str, Any]:
    if group.gpus and group.image is None and group.accelerator is None:
        warnings.warn(
            f"{spec.name}: steps {', '.join(group.tasks)} ask for GPUs without an accelerator "
            f"or image, so every pod of the {group.name!r} group gets {group.gpus} GPU(s); "
            "set accelerator= on them to give them a GPU group of their own",
            stacklevel=3,
        )
    max_replicas = max(options.max_replicas, group.min_pods)
    min_replicas = min(options.min_replicas, max_replicas)
    resources = {k: _number(v) for k, v in sorted(group.resources.items())}
    if group.accelerator is not None:
        resources[f"accelerator_type:{group.accelerator}"] = "1"
    memory = max(
        parse_memory(options.worker_memory),
        math.ceil(group.memory / (1 - _OBJECT_STORE_SHARE) / _MEMORY_STEP) * _MEMORY_STEP,
    )
    worker: dict[str, Any] = {
        "groupName": group.name,
        "replicas": min_replicas,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "rayStartParams": {},
        "labels": {**group.labels, GROUP_LABEL: group.name},
    }
    if resources:
        worker["resources"] = resources
    worker["template"] = {
        "metadata": {"labels": {**group.labels, GROUP_LABEL: group.name}},
        "spec": _pod_spec(
            options,
            _container(
                "ray-worker",
                group.image or options.image,
                options,
                _resources(str(group.cpus), _memory_quantity(memory), gpus=group.gpus),
            ),
            volumes=[],
            node_selector=_node_selector(spec, group, options),
            gpu=group.gpus > 0,
        ),
    }
    return worker


def _pod_spec(
    options: ClusterOptions,
    container: dict[str, Any],
    *,
    volumes: list[dict[str, Any]],
    node_selector: dict[str, str],
    gpu: bool,
) -> dict[str, Any]:
    pod: dict[str, Any] = {}
    if options.service_account is not None:
        pod["serviceAccountName"] = options.service_account
    if options.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in options.image_pull_secrets]
    pod["securityContext"] = pod_security_context()
    if node_selector:
        pod["nodeSelector"] = node_selector
    if gpu:  # GPU node pools are tainted so that only pods asking for GPUs land there
        pod["tolerations"] = [{"key": _GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    pod["containers"] = [container]
    if volumes:
        pod["volumes"] = volumes
    return pod


def _container(
    name: str,
    image: str,
    options: ClusterOptions,
    resources: dict[str, Any],
    *,
    extra_env: dict[str, str] | None = None,
    ports: list[tuple[str, int]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
    }
    env = container_env(options) | (extra_env or {})
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if options.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in options.env_from_secrets]
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports]
    container["resources"] = resources
    container["securityContext"] = container_security_context()
    if mounts:
        container["volumeMounts"] = mounts
    return container


def container_env(options: ClusterOptions) -> dict[str, str]:
    """The environment every Ray container gets: ``env``, artifact root and MLflow."""
    env = dict(options.env)
    if options.artifact_root is not None:
        env["RAYPIPE_ARTIFACT_ROOT"] = options.artifact_root
    if options.mlflow_tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = options.mlflow_tracking_uri
    return env


def _resources(cpu: str, memory: str, *, gpus: int) -> dict[str, Any]:
    """Requests equal to limits: a Guaranteed pod, and Ray sees what it really has."""
    amounts: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[_GPU_RESOURCE] = str(gpus)
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _node_selector(
    spec: PipelineSpec, group: WorkerGroupPlan, options: ClusterOptions
) -> dict[str, str]:
    accelerator = group.accelerator
    if accelerator is None:
        return {}
    if accelerator in options.node_selectors:
        return dict(options.node_selectors[accelerator])
    gke = GKE_ACCELERATORS.get(accelerator)
    if gke is None:
        warnings.warn(
            f"{spec.name}: worker group {group.name!r} (accelerator {accelerator!r}, steps "
            f"{', '.join(group.tasks)}) has no node selector: raypipe knows no node label "
            f"for {accelerator!r}; pass one with --node-selector {accelerator}=KEY=VALUE",
            stacklevel=3,
        )
        return {}
    return {_GKE_ACCELERATOR_LABEL: gke}


def _check_quantities(spec: PipelineSpec, options: ClusterOptions) -> None:
    for field in ("head_cpu",):
        try:
            parse_cpu(getattr(options, field))
        except ValueError as exc:
            raise ManifestOptionError(str(exc), pipeline=spec.name, field=field) from exc
    for field in ("head_memory", "worker_memory"):
        try:
            parse_memory(getattr(options, field))
        except ValueError as exc:
            raise ManifestOptionError(str(exc), pipeline=spec.name, field=field) from exc


def _memory_quantity(size: int) -> str:
    gib = 2**30
    return f"{size // gib}Gi" if size % gib == 0 else f"{math.ceil(size / 2**20)}Mi"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
