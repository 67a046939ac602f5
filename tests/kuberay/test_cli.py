"""``raypipe kuberay``: cluster, job, cronjob and validate from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raypipe.cli import main

ROOT = Path(__file__).parents[2]
PIPELINES = Path(__file__).parent / "pipelines.py"


def test_cluster_then_validate_the_written_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "cluster.yaml"
    code = main(
        ["kuberay", "cluster", f"{PIPELINES}:gpu_training", "--namespace", "ml",
         "--image", "registry/raypipe:1", "--max-replicas", "8", "--env", "MODE=prod",
         "--node-selector", "H100=pool=h100", "-o", str(target)]
    )  # fmt: skip
    assert code == 0
    assert "wrote RayCluster gpu-training" in capsys.readouterr().err
    (cluster,) = yaml.safe_load_all(target.read_text())
    assert cluster["metadata"]["namespace"] == "ml"
    gpu = cluster["spec"]["workerGroupSpecs"][1]
    assert gpu["template"]["spec"]["nodeSelector"] == {"pool": "h100"}
    assert gpu["maxReplicas"] == 8
    assert main(["kuberay", "validate", str(target)]) == 0
    assert "1 object valid" in capsys.readouterr().err


def test_job_from_a_compiled_file_with_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled = tmp_path / "plain.yaml"
    assert main(["compile", f"{PIPELINES}:plain", "-o", str(compiled)]) == 0
    assert main(["kuberay", "job", str(compiled), "--arg", "a=4", "--name", "nightly",
                 "--submission-mode", "K8sJobMode", "--ttl-seconds-after-finished", "300",
                 "--run-option=--no-cache"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    config_map, job = yaml.safe_load_all(out)
    assert job["metadata"]["name"] == "nightly"
    assert job["spec"]["entrypoint"].endswith("--arg a=4 --skip-resource-check --no-cache")
    assert job["spec"]["ttlSecondsAfterFinished"] == 300
    assert config_map["metadata"]["name"] == "nightly-pipeline"


def test_wrong_options_exit_2_with_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["kuberay", "job", f"{PIPELINES}:plain", "--arg", "a=1",
                 "--keep-cluster", "--ttl-seconds-after-finished", "60"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "Addition Pipeline.ttl_seconds_after_finished: KubeRay allows a TTL only" in err
    assert main(["kuberay", "cronjob", f"{PIPELINES}:plain", "--arg", "a=1",
                 "--schedule", "61 * * * *"]) == 2  # fmt: skip
    assert "schedule: '61 * * * *' is not a 5-field cron expression" in capsys.readouterr().err
    assert main(["kuberay", "cluster", f"{PIPELINES}:plain", "--max-replicas", "0"]) == 2
    assert "--max-replicas: Input should be greater than 0" in capsys.readouterr().err


def test_validate_prints_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: c}\n"
        "spec:\n  headGroupSpec:\n    rayStartParams: {num-cpus: 0}\n"
        "    template: {spec: {containers: [{name: h, image: i}]}}\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}\n"
    )
    assert main(["kuberay", "validate", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"error: {broken}: 3 problems:" in err
    assert (
        "document 1 (RayCluster c): spec.headGroupSpec.rayStartParams.num-cpus: "
        "expected string, got int (0)" in err
    )
    assert "document 2 (Deployment d): spec.selector: required field is missing" in err
    assert "document 2 (Deployment d): spec.template: required field is missing" in err


def test_every_generated_kind_round_trips_through_validate(tmp_path: Path) -> None:
    for action, extra in [
        ("cluster", []),
        ("job", ["--arg", "lrs=[0.1]"]),
        ("cronjob", ["--schedule", "0 3 * * *", "--submission-mode", "K8sJobMode"]),
    ]:
        target = tmp_path / f"{action}.yaml"
        assert main(["kuberay", action, f"{PIPELINES}:loops", *extra, "-o", str(target)]) == 0
        assert main(["kuberay", "validate", str(target)]) == 0
