"""``raypipe server``: the service in uvicorn, in one process or in several.

With ``workers`` above 1, uvicorn starts that many processes on one listening socket;
each builds the app from the :class:`ServerConfig` the parent left in
``RAYPIPE_SERVER_CONFIG`` (a process boundary: JSON, validated). Every process serves
the API; the one holding the store's executor lease also runs the runs and the
schedules (:mod:`raypipe.api.leadership`). Requests are CPU-bound Python, so one process
serves one core's worth: more workers use more cores.

Example:
    >>> serve(ServerConfig(port=8888, workers=4))   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CONFIG_ENV", "NoDelayHttpProtocol", "ServerConfig", "app_from_environment", "serve"]

CONFIG_ENV = "RAYPIPE_SERVER_CONFIG"
"""Where ``serve`` leaves the configuration for its worker processes."""


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
        store, executor=executor, execute=config.execute, request_threads=config.threads
    )
    # What is here now (modules, the app, its validators) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks all of it, which
    # took tens of milliseconds in the middle of requests.
    gc.freeze()
    return app


def serve(config: ServerConfig) -> None:
    """Serve until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    os.environ[CONFIG_ENV] = config.model_dump_json()  # read by each worker process
    uvicorn.run(
        f"{__name__}:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        http=NoDelayHttpProtocol,
        log_level="warning",
    )
