"""The service with its UI on a free port, for the whole module: a SQLite store, a token,
the executor on the session's Ray, and one RAYPIPE_HOME (the server reads a run's files
from the home of the test that is running, so every test of a module shares one)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

import raypipe
from raypipe.api.app import create_app
from raypipe.api.auth import parse_tokens
from raypipe.api.executor import RunExecutor
from raypipe.api.store import Store

TOKEN = "ui-token"
OTHER_TOKEN = "ui-other"
_START_S = 60.0


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-home")


@pytest.fixture(autouse=True)
def raypipe_home(shared_home: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str) -> Path:
    """Overrides the suite's per-test home: the module's server reads one home."""
    monkeypatch.setenv("RAYPIPE_HOME", str(shared_home))
    monkeypatch.delenv("RAYPIPE_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("RAYPIPE_LINEAGE_ROOT", raising=False)
    monkeypatch.setenv("RAYPIPE_QUIET", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    return shared_home


@pytest.fixture(scope="module")
def server(shared_home: Path, mlflow_store: str) -> Iterator[str]:
    """The service (API and UI) at the returned URL; tokens ``ui-token`` (namespace ``team``)
    and ``ui-other`` (namespace ``other``)."""
    with (
        pytest.MonkeyPatch.context() as env,
        Store(f"sqlite:///{shared_home / 'service.db'}") as store,
    ):
        env.setenv("RAYPIPE_HOME", str(shared_home))
        env.setenv("RAYPIPE_QUIET", "1")
        env.setenv("MLFLOW_TRACKING_URI", mlflow_store)
        app = create_app(
            store,
            executor=RunExecutor(store, poll_seconds=0.1),
            tokens=parse_tokens(f"{TOKEN}:team,{OTHER_TOKEN}:other"),
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        served = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=served.run, name="raypipe-ui-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + _START_S
        while not served.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            served.should_exit = True
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[raypipe.Client]:
    with raypipe.Client(server, token=TOKEN) as opened:
        yield opened
