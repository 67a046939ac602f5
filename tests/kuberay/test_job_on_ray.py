"""A generated RayJob runs for real: a Ray cluster started from the generated RayCluster's
groups (the head with its rayStartParams and labels, one worker of the default group), and
the job submitted as KubeRay's K8sJobMode submitter does it: ``ray job submit`` with the
ConfigMap's files as the working directory and the RayJob's entrypoint.

What Kubernetes itself would add (pods, the ConfigMap mount, the operator) is not here;
everything Ray and raypipe do is: the entrypoint's command line and arguments, the IR read
back on the head, and the steps placed off the head (``num-cpus: "0"``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from raypipe.kuberay import JobOptions, cluster_manifest, job_manifests
from raypipe.kuberay.job import IR_DIRECTORY, IR_FILE
from tests.cluster.local_cluster import (
    RayStartNode,
    answers,
    free_port,
    hermetic_env,
    stop_cluster,
    wait_for,
)
from tests.kuberay import pipelines as p

_START_TIMEOUT_S = 90.0
_JOB_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class GroupedCluster:
    address: str  # host:port of the head's GCS
    dashboard: str  # http://host:port of the Jobs API, as KubeRay's head service exposes it
    env: dict[str, str]
    temp_dir: Path


def _ray_start_args(group: dict[str, Any]) -> list[str]:
    """``ray start`` options for a group, as KubeRay derives them from the manifest."""
    args = [f"--{key}={value}" for key, value in group.get("rayStartParams", {}).items()]
    labels = ",".join(f"{k}={v}" for k, v in sorted(group.get("labels", {}).items()))
    if labels:
        args.append(f"--labels={labels}")
    custom = {k: float(v) for k, v in group.get("resources", {}).items()}
    if custom:
        args.append(f"--resources={json.dumps(custom)}")
    if "num-cpus" not in group.get("rayStartParams", {}):
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        args.append(f"--num-cpus={limits['cpu']}")
    return args


@pytest.fixture(scope="module")
def grouped_cluster() -> Iterator[GroupedCluster]:
    manifest = cluster_manifest(p.plain)
    head_group = manifest["spec"]["headGroupSpec"]
    (default_group,) = manifest["spec"]["workerGroupSpecs"]
    temp_dir = Path(tempfile.mkdtemp(prefix="raypipe-kuberay-"))
    env = hermetic_env(
        RAY_AUTH_MODE="disabled",  # set explicitly: a ~/.ray/auth_token would turn it on
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        RAYPIPE_HOME=str(temp_dir / "home"),
        RAYPIPE_QUIET="1",
        # the image's PATH: `raypipe` and `ray` where this Python has them
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    port, dashboard = free_port(), free_port()

    def common() -> list[str]:
        return [
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
        ]

    head_args = [
        a for a in _ray_start_args(head_group) if not a.startswith("--dashboard-host")
    ]  # the Jobs API on loopback here, not 0.0.0.0
    nodes: list[RayStartNode] = []
    try:
        head = RayStartNode(
            "head",
            [
                "--head",
                f"--port={port}",
                f"--temp-dir={temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}",
                *head_args,
                *common(),
            ],  # fmt: skip
            env,
            temp_dir / "head.log",
        )
        nodes.append(head)

        def dashboard_answers() -> bool:
            head.check_running()
            return answers(port) and answers(dashboard)

        wait_for(dashboard_answers, _START_TIMEOUT_S, "the head's GCS and dashboard")
        nodes.append(
            RayStartNode(
                "worker",
                [f"--address=127.0.0.1:{port}", *_ray_start_args(default_group), *common()],
                env,
                temp_dir / "worker.log",
            )
        )
        yield GroupedCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", env, temp_dir)
    finally:
        try:
            stop_cluster(nodes, temp_dir, port)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_generated_job_runs_the_pipeline_on_the_worker_group_not_the_head(
    grouped_cluster: GroupedCluster, tmp_path: Path
) -> None:
    options = JobOptions(
        existing_cluster="raypipe",
        submission_mode="K8sJobMode",
        run_options=["--json", "--no-tracking"],
    )
    config_map, job = job_manifests(p.plain, {"a": 1, "b": 5}, options)
    mounted = tmp_path / "pipeline"  # what the ConfigMap volume holds in the submitter pod
    mounted.mkdir()
    for name, text in config_map["data"].items():
        (mounted / name).write_text(text)
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env == {"working_dir": IR_DIRECTORY}
    runtime_env["working_dir"] = str(mounted)
    assert (mounted / IR_FILE).is_file()

    submit = [
        sys.executable, "-m", "ray.scripts.scripts", "job", "submit",
        f"--address={grouped_cluster.dashboard}",
        f"--runtime-env-json={json.dumps(runtime_env)}",
        "--", *shlex.split(job["spec"]["entrypoint"]),
    ]  # fmt: skip
    done = subprocess.run(
        submit,
        env=grouped_cluster.env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_JOB_TIMEOUT_S,
    )
    logs = done.stdout
    assert done.returncode == 0, f"{logs[-4000:]}\n{done.stderr[-3000:]}"
    result = json.JSONDecoder().raw_decode(logs[logs.index('{\n  "run_id"') :])[0]
    assert result["status"] == "SUCCEEDED"
    assert result["outputs"] == {"Output": 11}  # add(add(1, 5), 5)
    (node,) = {task["node_id"] for task in result["tasks"].values()}
    labels = _node_labels(grouped_cluster)
    assert labels[node]["raypipe.io/group"] == "default"  # not the head: it has no CPU
    assert sorted(n["raypipe.io/group"] for n in labels.values()) == ["default", "head"]


def _node_labels(cluster: GroupedCluster) -> dict[str, dict[str, str]]:
    """Each alive node's Ray labels, read by a driver of its own."""
    script = (
        "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(json.dumps({n['NodeID']: n['Labels'] for n in ray.nodes() if n['Alive']}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, cluster.address],
        env=cluster.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, dict[str, str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found
