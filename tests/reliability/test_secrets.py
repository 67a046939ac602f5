"""Secrets and privileges: a ``dsl.Secret`` reaches its step and nothing else.

A run with two steps that get a secret as an environment variable (one from its
component's ``env``, one from ``set_env_variable``): one prints it and returns its digest,
the other raises an error that contains it. Afterwards every record of the run is searched
for the secret's value: the compiled IR, the run's manifest and every other file under
``RAYPIPE_HOME`` (lineage Parquet read through DuckDB, step logs, cache entries), the
MLflow store (params, tags, metrics, the SQLite file itself) and the Ray session's own
log files (what workers printed). It must be in none of them.

Steps run as ordinary Ray worker processes: the user running Ray, no sidecar, no child
process, no docker socket.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

import raypipe
import raypipe.tracking
from raypipe.errors import PipelineDefinitionError
from tests.reliability.pipelines import SECRET_SOURCE, step_privileges, with_secrets


def _files_with(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` whose bytes contain ``needle`` (Parquet is searched through
    DuckDB: its pages may be compressed)."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            import duckdb

            text = str(duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall())
            if needle.decode() in text:
                found.append(str(path))
        elif needle in path.read_bytes():
            found.append(str(path))
    return found


def test_a_secret_reaches_its_step_and_no_record_of_the_run(
    tmp_path: Path, raypipe_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cr3t-{secrets.token_hex(16)}"
    monkeypatch.setenv(SECRET_SOURCE, secret)
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")

    spec = raypipe.compile(with_secrets, tmp_path / "with-secrets.yaml")
    ir = (tmp_path / "with-secrets.yaml").read_text()
    assert SECRET_SOURCE in ir and secret not in ir  # the name travels, not the value
    result = raypipe.run(spec, tracking=True, fail_fast=False)

    assert result.status == "FAILED"
    assert result.output == hashlib.sha256(secret.encode()).hexdigest()  # the step had it
    error = result.tasks["leaks-token"].error
    assert error is not None
    assert "the service refused token ***" in error.message
    assert secret not in error.message + error.traceback + (error.log_tail or "")
    assert secret not in result.model_dump_json()
    assert raypipe.tracking.flush(timeout=60)

    needle = secret.encode()
    assert _files_with(raypipe_home, needle) == []
    assert _files_with(tmp_path, needle) == []  # the MLflow store and its artifacts
    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs  # the run and its tracked step were logged
    for run in runs:
        assert secret not in str((run.data.params, run.data.tags, run.data.metrics))
    # what the workers printed went through Ray to its session logs: redacted there too
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    assert "calling the service with ***" in "".join(
        p.read_text(errors="replace") for p in (session / "logs").glob("worker-*.out")
    )
    assert _files_with(session / "logs", needle) == []


def test_a_secret_missing_from_the_environment_fails_before_anything_runs(
    raypipe_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_SOURCE, raising=False)
    with pytest.raises(PipelineDefinitionError) as caught:
        raypipe.run(with_secrets, tracking=True)
    fields = {(p.task, p.field) for p in caught.value.problems}
    assert fields == {("leaks-token", "env.TOKEN"), ("uses-token", "env.API_TOKEN")}
    assert f"has no {SECRET_SOURCE}" in str(caught.value)
    assert not (raypipe_home / "runs").exists()


def test_steps_run_as_ordinary_ray_workers_without_sidecars() -> None:
    result = raypipe.run(step_privileges, tracking=False)
    assert result.ok, result.error
    seen = result.output
    assert (seen["uid"], seen["euid"], seen["gid"]) == (os.getuid(), os.geteuid(), os.getgid())
    assert "raylet" in seen["parent"]  # a worker the raylet started, nothing in between
    assert seen["children"] == []  # no sidecar or helper process next to the step
    assert not seen["docker_socket_open"]
