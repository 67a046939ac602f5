"""``raypipe server``: the service's processes.

On Linux, ``serve`` starts ``workers`` API processes and one executor process, and
starts another when one dies:

* each **API process** listens on a socket of its own on the port (``SO_REUSEPORT``: the
  kernel spreads connections over them) and serves the API: it stores runs and marks
  them for cancelling, and never executes. Requests are CPU-bound Python, so one process
  serves one core's worth: more workers use more cores;
* the **executor process** holds the store's executor lease (:mod:`raypipe.api.leadership`)
  and runs the runs and the schedules, so a burst of running pipelines does not hold the
  GIL that requests and ``/healthz`` are answered with.

Each builds what it runs from the :class:`ServerConfig` the parent left in
``RAYPIPE_SERVER_CONFIG`` (a process boundary: JSON, validated). Elsewhere, uvicorn serves
the API from ``workers`` processes, and the one holding the lease also executes.

Example:
    >>> serve(ServerConfig(port=8888, workers=4))   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CONFIG_ENV", "NoDelayHttpProtocol", "ServerConfig", "app_from_environment", "serve"]

CONFIG_ENV = "RAYPIPE_SERVER_CONFIG"
"""Where ``serve`` leaves the configuration for its worker processes."""

APP_FACTORY = f"{__name__}:app_from_environment"
"""What builds the app in each server process."""

_log = logging.getLogger("raypipe.api")


class ServerConfig(BaseModel):
    """How ``raypipe server`` runs: where it listens, how many processes, which Ray."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8888, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="processes serving the API")
    address: str | None = Field(default=None, description="Ray cluster (default: local)")
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a silent instance keeps its runs and the executor lease",
    )
    execute: bool = Field(default=True, description="False: records only, nothing runs")
    executor_process: bool = Field(
        default=False,
        description="set by serve for its API processes: the executor runs in a process "
        "of its own, so these never compete for the executor lease",
    )
    threads: int = Field(
        default=8,
        ge=1,
        description="requests served at once per process (AnyIO's pool): CPU-bound routes "
        "under one GIL gain nothing from more, and the tail grows (measured: 40 threads, "
        "create p99 0.48-0.73 s; 8 threads, 0.29-0.45 s, same throughput)",
    )


class NoDelayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Nagle's algorithm off on every connection.

    uvicorn's worker processes listen on a socket made without ``IPPROTO_TCP``, so asyncio
    does not set ``TCP_NODELAY`` on their connections; a response written in two parts
    (headers, body) then waits for the client's delayed ACK: 40 ms a request (measured).
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def app_from_environment() -> FastAPI:
    """The app of one server process (a uvicorn factory): the store of
    ``RAYPIPE_DATABASE_URL`` and tokens of ``RAYPIPE_API_TOKENS``, as ``create_app`` reads
    them, and the :class:`ServerConfig` in ``RAYPIPE_SERVER_CONFIG`` (defaults without)."""
    from raypipe.api.app import create_app
    from raypipe.api.executor import RunExecutor
    from raypipe.api.store import Store

    text = os.environ.get(CONFIG_ENV)
    config = ServerConfig.model_validate_json(text) if text else ServerConfig()
    store = Store()
    executor = (
        RunExecutor(store, address=config.address, lease_seconds=config.lease_seconds)
        if config.execute
        else None
    )
    app = create_app(
        store,
        executor=executor,
        execute=config.execute,
        request_threads=config.threads,
        lead=not config.executor_process,
    )
    # What is here now (modules, the app, its validators) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks all of it, which
    # took tens of milliseconds in the middle of requests.
    gc.freeze()
    return app


def serve(config: ServerConfig, *, factory: str = APP_FACTORY) -> None:
    """Serve until interrupted (SIGINT or SIGTERM).

    On Linux the API is served by ``config.workers`` processes and, unless ``execute`` is
    off, the runs are executed by one more process (see the module docstring); elsewhere
    by uvicorn, the executor in whichever API process holds the lease.

    ``factory`` is the import path of the function that builds each API process's app
    (the service's own unless a benchmark wraps it)."""
    import uvicorn

    if sys.platform == "linux" and (config.workers > 1 or config.execute):
        # read by each API process; the executor process reads ``config`` as it is
        os.environ[CONFIG_ENV] = config.model_copy(
            update={"executor_process": config.execute}
        ).model_dump_json()
        _serve_processes(config, factory)
        return
    os.environ[CONFIG_ENV] = config.model_dump_json()  # read by each worker process
    uvicorn.run(
        factory,
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        http=NoDelayHttpProtocol,
        log_level="warning",
    )


# -- several processes: one listening socket each -------------------------------------------
#
# uvicorn's ``--workers`` shares one listening socket among its processes, and asyncio
# accepts every queued connection at each wake-up: 50 clients connecting at once went
# 50/0, 41/9 and 19/31 to two processes (measured), so one process served most of them
# while the other idled. With a socket each, bound with ``SO_REUSEPORT``, the kernel
# spreads new connections over the processes.


def _serve_processes(config: ServerConfig, factory: str) -> None:
    """Run ``config.workers`` API processes, each on its own ``SO_REUSEPORT`` socket, and
    the executor's process (if ``config.execute``); start another when one dies (unless
    it failed starting); stop them all on SIGINT or SIGTERM."""
    import multiprocessing

    # Bound, never listening: holds the port (and picks one for port 0) and is in the
    # port's group without taking connections.
    holder = _reuse_port_socket(config.host, config.port)
    port = holder.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    me = os.getpid()

    def start(role: str) -> _Child:
        target: Callable[..., None]
        args: tuple[Any, ...]
        if role == "executor":
            target, args = _execute_one, (me, config.model_dump_json())
        else:
            target, args = _serve_one, (me, config.host, port, factory)
        process = spawn.Process(target=target, args=args, name=f"raypipe-server-{role}")
        process.start()
        return _Child(role, process, time.monotonic())

    def stop(signum: int, _: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    roles = ["api"] * config.workers + (["executor"] if config.execute else [])
    children = [start(role) for role in roles]
    failure: str | None = None
    try:
        while not stopping.wait(0.5):
            for i, child in enumerate(children):
                code = child.process.exitcode
                if code is None:
                    continue
                if code > 0 and time.monotonic() - child.started < _STARTING_SECONDS:
                    failure = (
                        f"raypipe server: its {child.role} process exited with code {code} "
                        "while starting; stopping"
                    )
                    stopping.set()
                    break
                _log.warning(
                    "%s process %s exited with code %s; starting another",
                    child.role,
                    child.process.pid,
                    code,
                )
                children[i] = start(child.role)
    finally:
        for child in children:
            if child.process.is_alive():
                child.process.terminate()  # each stops cleanly on SIGTERM
        for child in children:
            child.process.join(timeout=60)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
        holder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure is not None:
        raise SystemExit(failure)


@dataclass
class _Child:
    role: str  # "api" or "executor"
    process: Any  # multiprocessing's spawned Process
    started: float


_STARTING_SECONDS = 10.0
"""A worker that exits with an error this soon after its start is failing to start (a
bad database URL, say), not crashing: the server stops with the error instead of
starting it again and again. One killed by a signal is started again."""


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_one(parent: int, host: str, port: int, factory: str) -> None:
    """An API process: its own listening socket on the shared port, its own app."""
    import uvicorn

    _end_with(parent)
    sock = _reuse_port_socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(factory, factory=True, http=NoDelayHttpProtocol, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def _execute_one(parent: int, config_json: str) -> None:
    """The executor's process: it holds the store's executor lease (or waits for it, if
    another server on the same database holds it) and runs the runs and the schedules,
    so their Ray driver work never holds the GIL an API process answers with."""
    from raypipe.api.executor import RunExecutor
    from raypipe.api.leadership import ExecutionLeader
    from raypipe.api.recurring import RecurringScheduler
    from raypipe.api.store import Store

    _end_with(parent)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.set())
    config = ServerConfig.model_validate_json(config_json)
    with Store() as store:
        executor = RunExecutor(store, address=config.address, lease_seconds=config.lease_seconds)
        leader = ExecutionLeader(store, executor, RecurringScheduler(store, executor))
        leader.start()
        try:
            while not stopping.wait(1.0):
                pass
        finally:
            leader.stop()  # the lease and the runs released for the next instance


def _end_with(parent: int) -> None:
    """Have the kernel send this process SIGTERM when the server's main process ends, even
    by SIGKILL: a child must not outlive it, holding the port or the executor lease."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it ended before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
