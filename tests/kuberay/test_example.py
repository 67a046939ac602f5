"""examples/kuberay_manifests.py writes valid manifests with a group per image and GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import kuberay_manifests
from raypipe.dsl.placement import worker_group
from raypipe.kuberay import validate_file


def test_the_example_writes_a_cluster_and_a_job_that_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = kuberay_manifests.main(str(tmp_path))
    assert groups == [
        "default",
        worker_group(kuberay_manifests.TOOLS_IMAGE, None),
        worker_group(None, "L4"),
    ]
    assert [o["kind"] for o in validate_file(tmp_path / "cluster.yaml")] == ["RayCluster"]
    assert [o["kind"] for o in validate_file(tmp_path / "job.yaml")] == ["ConfigMap", "RayJob"]
    assert "steps train" in capsys.readouterr().out
