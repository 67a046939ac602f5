"""One real Ray and one ``mlflow server`` for the whole session, and a fresh RAYPIPE_HOME
per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.mlflow_server import MlflowServer


@pytest.fixture(scope="session", autouse=True)
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Start Ray once per test session (starting it per test would cost seconds each)."""
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the session: creating its schema takes over a second,
    too much for every test. Tests about MLflow itself pass their own store."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` for the tests that need one (tests/test_mlflow.py and the
    tracking-outage test): started once, as it takes 5-25 s. A test that stops it (an
    outage) starts it again on the same port before it ends; tests tell their records apart
    by experiment and raypipe run id."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def raypipe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str) -> Path:
    """Each test writes artifacts under its own RAYPIPE_HOME."""
    home = tmp_path / "raypipe-home"
    monkeypatch.setenv("RAYPIPE_HOME", str(home))
    monkeypatch.delenv("RAYPIPE_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("RAYPIPE_QUIET", "1")  # no progress display; test_progress turns it on
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    return home


@pytest.fixture
def in_flight(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many steps were in flight after each submission of a run in the test (the real
    ``Execution._submit_step``, counted)."""
    from raypipe.runtime.execution import Execution

    seen: list[int] = []
    submit = Execution._submit_step

    def counted(self: Any, step: Any) -> Any:
        refs = submit(self, step)
        seen.append(len(self._pending))
        return refs

    monkeypatch.setattr(Execution, "_submit_step", counted)
    return seen
