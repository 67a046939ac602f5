"""One real Ray and one ``mlflow server`` for the whole session, and a fresh RAYPIPE_HOME
per test."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.mlflow_server import MlflowServer

_REMOVE_ATTEMPTS = 5  # tries at removing a stopped Ray's session directory


@pytest.fixture(scope="session", autouse=True)
def ray_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start Ray once per test session (starting it per test would cost seconds each).

    A Ray that this fixture started leaves its session directory behind when it stops,
    with the virtual environment Ray built for the step that installs a package (about
    2.4 GB). After a session without failures it is removed, so that repeated
    ``make test`` runs do not fill /tmp; after a failure Ray's logs stay there to read.
    """
    session_dir = None
    if not ray.is_initialized():
        context = ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        session_dir = Path(context.address_info["session_dir"])
    yield
    ray.shutdown()
    if session_dir is not None and not request.session.testsfailed:
        _remove_ray_session(session_dir)


def _remove_ray_session(session_dir: Path) -> None:
    """Remove a stopped Ray's session directory. Its worker processes exit just after
    ``ray.shutdown()`` returns and may still write their last log lines: try again briefly."""
    for attempt in range(_REMOVE_ATTEMPTS):
        try:
            shutil.rmtree(session_dir)
            return
        except OSError:
            if attempt == _REMOVE_ATTEMPTS - 1:
                raise
            time.sleep(0.5)


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
