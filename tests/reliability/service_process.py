"""A real ``raypipe server`` subprocess for the service's reliability tests.

It serves a store given by URL, runs steps on this test session's Ray (``--address``), and
writes its stdout and stderr to a log file the test reads. :func:`serve` starts it the
way ``tests/test_service_api.py`` does (same command, same environment), with tokens and
extra options the tests here need; :class:`ServerProcess` waits for it and ends it.

Example:
    >>> database = f"sqlite:///{tmp}/service.db"
    >>> with ServerProcess.start(database, home, log) as server:  # doctest: +SKIP
    ...     httpx.get(f"{server.base}/healthz")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import ray

REPO = Path(__file__).parent.parent.parent
WAIT_S = 120.0


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database: str, home: Path, tokens: str | None = None) -> dict[str, str]:
    """The environment of a server process: its store, its RAYPIPE_HOME, no MLflow, and
    ``tokens`` (``token:namespace,...``) or none at all."""
    env = {
        **os.environ,
        "RAYPIPE_HOME": str(home),
        "RAYPIPE_DATABASE_URL": database,
        "RAYPIPE_TRACKING": "0",
    }
    env.pop("RAYPIPE_API_TOKENS", None)
    env.pop("RAYPIPE_API_TOKEN_FILE", None)
    if tokens is not None:
        env["RAYPIPE_API_TOKENS"] = tokens
    return env


@dataclass
class ServerProcess:
    """One server subprocess on ``port``; a context manager that ends it (SIGTERM, then
    SIGKILL after 30 s) unless the test killed it already."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        database: str,
        home: Path,
        log: Path,
        *options: str,
        port: int | None = None,
        tokens: str | None = None,
    ) -> ServerProcess:
        """``raypipe server`` on ``database`` (a free port unless given), up and answering."""
        port = port or free_port()
        command = [
            sys.executable,
            "-m",
            "raypipe.cli",
            "server",
            "--port",
            str(port),
            "--address",
            ray.get_runtime_context().gcs_address,
            "--lease-seconds",
            "2",
            *options,
        ]
        with log.open("ab") as output:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                command,
                env=server_env(database, home, tokens),
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, port, log)
        server.wait_until_up()
        return server

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).is_success:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the crash under test)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT_S)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
