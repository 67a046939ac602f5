"""KubeRay manifests for a pipeline with an image step and a GPU training step.

The pipeline prepares data in its own image, trains on two L4 GPUs with Ray Train and
evaluates on a plain worker. ``raypipe.kuberay`` writes a RayCluster with one worker group
per (image, accelerator) and a RayJob that runs the pipeline, and checks both against the
KubeRay CRD schemas. Nothing here needs Kubernetes (or a GPU):

    python examples/kuberay_manifests.py [OUT_DIR]

then ``kubectl apply -f OUT_DIR/job.yaml`` on a cluster with the KubeRay operator. The
same from the shell: ``raypipe kuberay job examples/kuberay_manifests.py --arg epochs=3``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from raypipe import dsl
from raypipe.dsl import Dataset, Input, Output
from raypipe.kuberay import (
    ClusterOptions,
    JobOptions,
    check_objects,
    cluster_manifest,
    job_manifests,
    plan_worker_groups,
)
from raypipe.kuberay.cluster import as_spec

TOOLS_IMAGE = "ghcr.io/acme/data-tools:1.2"  # built FROM raypipe:0.1.0, with the tools


@dsl.component(image=TOOLS_IMAGE, num_cpus=2, memory="4Gi")
def prepare(rows: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write("\n".join(str(i) for i in range(rows)))


@dsl.component(train=dsl.TorchDistributed(num_workers=2, use_gpu=True, accelerator="L4"))
def train(data: Input[Dataset], epochs: int) -> float:
    with open(data.path) as f:
        rows = len(f.read().splitlines())
    return rows / (epochs + 1)


@dsl.component
def evaluate(score: float) -> str:
    return f"score {score:.2f}"


@dsl.pipeline(name="gpu-pipeline")
def gpu_pipeline(rows: int = 1000, epochs: int = 3) -> str:
    data = prepare(rows=rows)
    fitted = train(data=data.outputs["data"], epochs=epochs)
    return evaluate(score=fitted.output).output


def main(out_dir: str = "kuberay-manifests") -> list[str]:
    """Write cluster.yaml and job.yaml to ``out_dir``; return the worker groups' names."""
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    cluster = ClusterOptions(
        namespace="ml",
        artifact_root="s3://ml-artifacts/raypipe",  # every pod reads and writes artifacts
        mlflow_tracking_uri="http://mlflow.raypipe:5000",
        env_from_secrets=["s3-credentials"],
    )
    objects = [cluster_manifest(gpu_pipeline, cluster)]
    objects += job_manifests(
        gpu_pipeline,
        {"epochs": 5},
        JobOptions(namespace="ml", cluster=cluster, ttl_seconds_after_finished=600),
    )
    check_objects(objects)  # the KubeRay v1.7 CRD schemas, the operator's rules, core kinds
    (target / "cluster.yaml").write_text(yaml.safe_dump(objects[0], sort_keys=False))
    (target / "job.yaml").write_text(yaml.safe_dump_all(objects[1:], sort_keys=False))
    groups = plan_worker_groups(as_spec(gpu_pipeline))
    for group in groups:
        print(
            f"{group.name}: image {group.image or cluster.image}, {group.cpus} CPU, "
            f"{group.gpus} GPU ({group.accelerator or 'none'}), up to "
            f"{max(cluster.max_replicas, group.min_pods)} pods, steps {', '.join(group.tasks)}"
        )
    print(f"wrote {target / 'cluster.yaml'} and {target / 'job.yaml'}")
    return [group.name for group in groups]


if __name__ == "__main__":
    main(*sys.argv[1:2])
