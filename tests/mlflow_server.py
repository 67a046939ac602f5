"""A real ``mlflow server`` on 127.0.0.1 (SQLite backend, a free port) that a test can stop
and start again; the session's ``mlflow_server`` fixture (tests/conftest.py) is one.

Example:
    >>> server = MlflowServer(tmp_path)  # doctest: +SKIP
    >>> server.start()  # doctest: +SKIP
    >>> MlflowClient(server.url).search_experiments()  # doctest: +SKIP
    >>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """An ``mlflow server`` process on 127.0.0.1 that the test can stop and start again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = root / "server-artifacts"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'server.db'}",
                    "--artifacts-destination",
                    str(self.artifacts),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends it and its workers
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"mlflow server did not answer within 90 s: {self.log_tail()}")

    def stop(self) -> None:
        """Kill the server's process group (the group this fixture started), as a crash
        would; SQLite keeps what it committed."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        # the port is free once nothing answers on it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.1)
            except OSError:
                return

    def log_tail(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-3000:]
