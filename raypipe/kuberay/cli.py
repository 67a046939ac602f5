"""``raypipe kuberay``: write RayCluster, RayJob and RayCronJob manifests for a pipeline,
and check manifest files against the KubeRay and Kubernetes schemas.

Example:
    $ raypipe kuberay cluster examples/quickstart.py:addition --namespace ml -o cluster.yaml
    $ raypipe kuberay job addition.yaml --arg a=1 --arg b=2 -o job.yaml
    $ raypipe kuberay cronjob addition.yaml --arg a=1 --arg b=2 --schedule "0 * * * *"
    $ raypipe kuberay validate job.yaml

Exit codes: 0 written (or valid); 2 the pipeline, its arguments or an option is wrong, or
the file holds an invalid object (every problem is printed with its field path).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from raypipe.cli import UsageError, _load_target, _parse_arguments, add_pipeline_arguments
from raypipe.kuberay.cluster import ClusterOptions, as_spec, cluster_manifest
from raypipe.kuberay.job import JobOptions, cronjob_manifests, job_manifests
from raypipe.kuberay.validate import check_objects, check_text, validate_file

__all__ = ["add_kuberay_parser"]

_Options = TypeVar("_Options", ClusterOptions, JobOptions)


def add_kuberay_parser(commands: Any) -> None:
    """Register ``kuberay`` and its actions on the top-level subparsers of ``raypipe``."""
    kuberay = commands.add_parser(
        "kuberay",
        help="Kubernetes manifests (KubeRay) for a pipeline, and their validation",
        description="Write KubeRay manifests that run a pipeline on Kubernetes, or check "
        "manifest files. See docs/kuberay.md.",
    )
    actions = kuberay.add_subparsers(dest="action", required=True, metavar="ACTION")

    cluster = actions.add_parser(
        "cluster",
        help="a RayCluster with a worker group per (image, accelerator) of the steps",
        description="Write a RayCluster whose head runs no steps and whose worker groups "
        "(one per image and accelerator the steps ask for) autoscale.",
    )
    _pipeline_arguments(cluster, with_args=False)
    _cluster_options(cluster)
    cluster.set_defaults(handler=_cluster)

    job = actions.add_parser(
        "job",
        help="a RayJob (and a ConfigMap with the IR) that runs the pipeline once",
        description="Write a ConfigMap holding the compiled pipeline and a RayJob whose "
        "entrypoint runs it with the given arguments, on a new cluster (as `cluster` "
        "writes) or on an existing one (--existing-cluster).",
    )
    _pipeline_arguments(job, with_args=True)
    _job_options(job)
    _cluster_options(job)
    job.set_defaults(handler=_job)

    cron = actions.add_parser(
        "cronjob",
        help="a RayCronJob that runs the pipeline on a schedule",
        description="As `job`, as a RayCronJob: a new RayJob on every tick of --schedule.",
    )
    _pipeline_arguments(cron, with_args=True)
    cron.add_argument("--schedule", required=True, help='a cron expression, e.g. "0 * * * *"')
    cron.add_argument("--time-zone", help="e.g. Europe/Paris (default: the operator's, UTC)")
    _job_options(cron)
    _cluster_options(cron)
    cron.set_defaults(handler=_cronjob)

    validate = actions.add_parser(
        "validate",
        help="check manifest files against the KubeRay and Kubernetes schemas",
        description="Check every object of each (multi-document) YAML file: KubeRay kinds "
        "against the KubeRay v1.7.0 CRD schemas and the operator's rules, core kinds "
        "against the Kubernetes API schemas. Problems are printed with field paths.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="a YAML file ('-' for stdin)")
    validate.set_defaults(handler=_validate)


def _pipeline_arguments(parser: argparse.ArgumentParser, *, with_args: bool) -> None:
    add_pipeline_arguments(parser, with_args=with_args)
    parser.add_argument("--name", help="the object's name (default: from the pipeline's)")
    parser.add_argument("--namespace", help="the namespace of every object")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    defaults = ClusterOptions()
    group.add_argument("--image", help=f"head and default worker image ({defaults.image})")
    group.add_argument("--ray-version", help=f"rayVersion ({defaults.ray_version})")
    group.add_argument("--head-cpu", help=f"the head's CPU ({defaults.head_cpu})")
    group.add_argument("--head-memory", help=f"the head's memory ({defaults.head_memory})")
    group.add_argument(
        "--worker-memory", help=f"the least memory of a worker pod ({defaults.worker_memory})"
    )
    group.add_argument("--min-replicas", type=int, help="pods per group at least (0)")
    group.add_argument(
        "--max-replicas", type=int, help="pods per group at most (4; more if a step needs)"
    )
    group.add_argument("--idle-timeout-seconds", type=int, help="scale down after idle (60)")
    group.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="in every Ray container"
    )
    group.add_argument(
        "--env-from-secret",
        action="append",
        default=[],
        metavar="SECRET",
        help="a Secret whose keys become environment variables (credentials)",
    )
    group.add_argument(
        "--artifact-root", help="RAYPIPE_ARTIFACT_ROOT: storage every pod reaches, e.g. s3://b/p"
    )
    group.add_argument("--mlflow-tracking-uri", help="MLFLOW_TRACKING_URI, e.g. http://mlflow:5000")
    group.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="ACCELERATOR=KEY=VALUE",
        help="the node label of an accelerator's nodes (default: GKE's gke-accelerator)",
    )
    group.add_argument("--service-account", help="the pods' service account")
    group.add_argument(
        "--auth-token",
        action="store_true",
        default=None,
        help="Ray token authentication (KubeRay's authOptions.mode: token)",
    )
    group.add_argument(
        "--image-pull-secret", action="append", default=[], metavar="SECRET", help="repeatable"
    )


def _job_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("job")
    group.add_argument(
        "--existing-cluster",
        metavar="RAYCLUSTER",
        help="run on this RayCluster (clusterSelector; needs --submission-mode K8sJobMode)",
    )
    group.add_argument(
        "--submission-mode",
        choices=["HTTPMode", "K8sJobMode", "SidecarMode"],
        default="HTTPMode",
        help="how KubeRay submits the job (HTTPMode: no submitter pod)",
    )
    shutdown = group.add_mutually_exclusive_group()
    shutdown.add_argument(
        "--shutdown-after-job-finishes",
        dest="shutdown",
        action="store_const",
        const=True,
        help="delete the job's cluster when it ends (default)",
    )
    shutdown.add_argument(
        "--keep-cluster", dest="shutdown", action="store_const", const=False, help="keep it"
    )
    group.add_argument(
        "--ttl-seconds-after-finished", type=int, help="keep the ended cluster this long"
    )
    group.add_argument("--active-deadline-seconds", type=int, help="fail the job after this")
    group.add_argument("--backoff-limit", type=int, help="retries, each on a new cluster")
    group.add_argument(
        "--run-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="a `raypipe run` option for the entrypoint, e.g. --run-option=--no-cache",
    )


def _cluster(args: argparse.Namespace) -> int:
    spec = as_spec(_load_target(args.pipeline))
    options = _cluster_settings(args, spec.name).model_copy(
        update={"name": args.name, "namespace": args.namespace}
    )
    return _write(args, spec.name, lambda: [cluster_manifest(spec, options)])


def _job(args: argparse.Namespace) -> int:
    spec = as_spec(_load_target(args.pipeline))
    arguments = _parse_arguments(spec, args.arg)
    options = _job_settings(args, spec.name)
    return _write(args, spec.name, lambda: job_manifests(spec, arguments, options))


def _cronjob(args: argparse.Namespace) -> int:
    spec = as_spec(_load_target(args.pipeline))
    arguments = _parse_arguments(spec, args.arg)
    options = _job_settings(args, spec.name)
    return _write(
        args,
        spec.name,
        lambda: cronjob_manifests(
            spec, arguments, options, schedule=args.schedule, time_zone=args.time_zone
        ),
    )


def _validate(args: argparse.Namespace) -> int:
    count = 0
    for name in args.files:
        if name == "-":
            objects = check_text(sys.stdin.read(), source="<stdin>")
        else:
            objects = validate_file(name)
        count += len(objects)
    print(f"{count} object{'s' if count != 1 else ''} valid", file=sys.stderr)
    return 0


def _write(args: argparse.Namespace, pipeline: str, make: Any) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        objects: list[dict[str, Any]] = make()
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    check_objects(objects, source=f"the manifests of {pipeline}")  # a bug if this fails
    header = f"# Generated by `raypipe kuberay {args.action}` for pipeline {pipeline!r}.\n"
    text = header + yaml.safe_dump_all(objects, sort_keys=False, width=100)
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    kinds = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objects)
    print(f"wrote {kinds} to {args.output}", file=sys.stderr)
    return 0


def _cluster_settings(args: argparse.Namespace, pipeline: str) -> ClusterOptions:
    given: dict[str, Any] = {
        "image": args.image,
        "ray_version": args.ray_version,
        "head_cpu": args.head_cpu,
        "head_memory": args.head_memory,
        "worker_memory": args.worker_memory,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "idle_timeout_seconds": args.idle_timeout_seconds,
        "artifact_root": args.artifact_root,
        "mlflow_tracking_uri": args.mlflow_tracking_uri,
        "service_account": args.service_account,
        "auth_token": args.auth_token,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    settings["env"] = dict(_pair(item, "--env") for item in args.env)
    settings["env_from_secrets"] = args.env_from_secret
    settings["image_pull_secrets"] = args.image_pull_secret
    selectors: dict[str, dict[str, str]] = {}
    for item in args.node_selector:
        accelerator, rest = _pair(item, "--node-selector")
        key, value = _pair(rest, "--node-selector")
        selectors.setdefault(accelerator, {})[key] = value
    settings["node_selectors"] = selectors
    return _options(ClusterOptions, settings, pipeline)


def _job_settings(args: argparse.Namespace, pipeline: str) -> JobOptions:
    settings: dict[str, Any] = {
        "name": args.name,
        "namespace": args.namespace,
        "cluster": _cluster_settings(args, pipeline),
        "existing_cluster": args.existing_cluster,
        "submission_mode": args.submission_mode,
        "shutdown_after_job_finishes": args.shutdown,
        "ttl_seconds_after_finished": args.ttl_seconds_after_finished,
        "active_deadline_seconds": args.active_deadline_seconds,
        "backoff_limit": args.backoff_limit,
        "run_options": args.run_option,
    }
    return _options(JobOptions, settings, pipeline)


def _options(model: type[_Options], settings: dict[str, Any], pipeline: str) -> _Options:
    try:
        return model(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"{pipeline}: --{field.replace('_', '-')}: {first['msg']}") from exc


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"{flag}: expected NAME=VALUE, got {item!r}")
    return key, value
