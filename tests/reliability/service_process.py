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

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
import ray

from raypipe.api.server import CONFIG_ENV, ServerConfig

REPO = Path(__file__).parent.parent.parent
WAIT_S = 120.0

# ``raypipe server``'s app with every logger at DEBUG and uvicorn's at TRACE (request lines,
# ASGI messages): what ``raypipe server`` runs, at its most verbose
_VERBOSE_SERVER = """
import logging, sys, uvicorn
from raypipe.api.server import NoDelayHttpProtocol
logging.basicConfig(level=logging.DEBUG)
uvicorn.run("raypipe.api.server:app_from_environment", factory=True, port=int(sys.argv[1]),
            http=NoDelayHttpProtocol, log_level="trace", access_log=True)
"""


def kill_all(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process`` and every process under it, children first (were the main
    process killed alone, its children would shut down cleanly on their own)."""
    children = psutil.Process(process.pid).children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=WAIT_S)
    psutil.wait_procs(children, timeout=WAIT_S)


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
        verbose: bool = False,
    ) -> ServerProcess:
        """``raypipe server`` on ``database`` (a free port unless given), up and answering;
        ``verbose``: its app with every logger at DEBUG, uvicorn's at TRACE."""
        port = port or free_port()
        env = server_env(database, home, tokens)
        address = ray.get_runtime_context().gcs_address
        if verbose:
            config = ServerConfig(port=port, address=address, lease_seconds=2)
            env[CONFIG_ENV] = config.model_dump_json()
            command = [sys.executable, "-c", _VERBOSE_SERVER, str(port)]
            return cls._launch(command, env, port, log)
        command = [
            sys.executable,
            "-m",
            "raypipe.cli",
            "server",
            "--port",
            str(port),
            "--address",
            address,
            "--lease-seconds",
            "2",
            *options,
        ]
        return cls._launch(command, env, port, log)

    @classmethod
    def _launch(
        cls, command: list[str], env: dict[str, str], port: int, log: Path
    ) -> ServerProcess:
        with log.open("ab") as output:  # the child has its own copy of the descriptor
            process = subprocess.Popen(
                command,
                env=env,
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
        """SIGKILL to every process of the server (its API and executor processes, then
        the main one): no shutdown code runs anywhere (the crash under test)."""
        kill_all(self.process)

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
