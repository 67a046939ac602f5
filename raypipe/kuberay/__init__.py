"""Run pipelines on Kubernetes through KubeRay: RayCluster, RayJob and RayCronJob
manifests made from a pipeline, and their validation against the KubeRay CRD schemas.

Example:
    >>> from raypipe.kuberay import ClusterOptions, cluster_manifest, job_manifests
    >>> cluster = cluster_manifest(addition, ClusterOptions(namespace="ml"))
    >>> config_map, ray_job = job_manifests(addition, {"a": 1, "b": 2})
    >>> check_objects([cluster, config_map, ray_job])   # raises if any is invalid
"""

from raypipe.kuberay.cluster import DEFAULT_IMAGE, ClusterOptions, cluster_manifest
from raypipe.kuberay.errors import ManifestOptionError, ManifestProblem, ManifestValidationError
from raypipe.kuberay.groups import WorkerGroupPlan, plan_worker_groups
from raypipe.kuberay.job import JobOptions, cronjob_manifests, job_manifests
from raypipe.kuberay.validate import check_objects, validate_file, validate_objects

__all__ = [
    "DEFAULT_IMAGE",
    "ClusterOptions",
    "JobOptions",
    "ManifestOptionError",
    "ManifestProblem",
    "ManifestValidationError",
    "WorkerGroupPlan",
    "check_objects",
    "cluster_manifest",
    "cronjob_manifests",
    "job_manifests",
    "plan_worker_groups",
    "validate_file",
    "validate_objects",
]
