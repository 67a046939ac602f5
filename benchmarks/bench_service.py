"""The service API under load: 100,000 stored runs, 50 concurrent clients on loopback.

What is measured (issue 7, item 8): the latency of the *call*, not of the execution. The
server is a real ``uvicorn`` process serving what ``raypipe server`` serves
(``raypipe.api.server``: ``app_from_environment``, its HTTP protocol with ``TCP_NODELAY``,
``--workers`` processes, ``--threads`` request threads each) with a bearer token and
``execute=False`` (runs are recorded, nothing runs on Ray: with the executor on, a create
does the same work and the executor starts the run afterwards), on SQLite and on
PostgreSQL. Before it starts, the store gets 100,000 runs in 20 experiments (inserted
in bulk through the store's own tables and types, not over HTTP: about 3 KB of pipeline
snapshot each, states 70 % SUCCEEDED, 15 % FAILED, 5 % each RUNNING, PENDING, CANCELED,
created over the last 30 days).

Then, for each backend, phases of ``--clients`` concurrent clients (asyncio tasks in this
process, one keep-alive connection each; the server is another process), each sending
its requests back to back (a closed loop: 50 requests in flight at every moment):

* **health**: ``GET /healthz``, the HTTP stack alone: the floor under the rest.
* **create**: ``POST /runs`` of the stored pipeline version with two parameters, in one
  of the 20 experiments (client ``i`` uses experiment ``i % 20``). Target p99 ≤ 100 ms.
* **list**: ``GET /runs`` filtered (by experiment and state ``SUCCEEDED``, by state
  ``FAILED``, or by experiment; in turn), 50 a page, following ``next_page_token`` for
  5 pages before starting over with the next filter. Target p99 ≤ 150 ms.

and create and list with one client (the service time, without queueing) and, with
``--paced``, with each client pausing 0 to 2 s (1 s on average) between requests: about
50 requests a second offered, a team at work rather than 50 scripts in a loop.
Latencies are the clients' (request written to response read); the server adds an
``x-server-ms`` header (time inside the app, thread pool wait included), reported as
"server p50/p99". "Server CPU ms/request" is the CPU time (user + system) of the server's
processes during the phase over its requests: the cost of a request, which a machine
shared with other work does not inflate the way it inflates latency. The clients speak
HTTP/1.1 on asyncio streams (``RawConnection``): ``httpx.AsyncClient`` (``--client
httpx``) costs more CPU than the server's work here.

Run (``make test-postgres`` first, for its server on 127.0.0.1:54329; the benchmark
makes a schema of its own in that database and drops it at the end)::

    .venv/bin/python benchmarks/bench_service.py --paced             # both, ~5 minutes
    .venv/bin/python benchmarks/bench_service.py --backend sqlite --runs 20000
    .venv/bin/python benchmarks/bench_service.py --workers 2 --paced --json /tmp/s.json
    .venv/bin/python benchmarks/bench_service.py --backend sqlite --threads 40   # AnyIO's
    .venv/bin/python benchmarks/bench_service.py --profile          # cProfile, in-process

``RAYPIPE_TEST_POSTGRES_URL`` (or ``--postgres-url``) names another PostgreSQL. Not in
``run_all.py``: it needs PostgreSQL and takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # raypipe and tests.pipelines from this checkout

NAMESPACE = "bench"
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/apis/v2beta1"
DEFAULT_POSTGRES_URL = "postgresql://raypipe:raypipe@127.0.0.1:54329/raypipe_test"
EXPERIMENTS = 20
PAGES_PER_WALK = 5
TARGETS_MS = {"create": 100.0, "list": 150.0, "health": math.nan}
STATES = [("SUCCEEDED", 70), ("FAILED", 15), ("RUNNING", 5), ("PENDING", 5), ("CANCELED", 5)]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


# -- the server process ----------------------------------------------------------------------


def server_app() -> ASGIApp:
    """The app a uvicorn worker serves (``bench_service:server_app``, a factory): what
    ``raypipe server`` serves (``raypipe.api.server.app_from_environment``: the store of
    ``RAYPIPE_DATABASE_URL``, the tokens of ``RAYPIPE_API_TOKENS``), with records only
    (``execute=False`` in its ``ServerConfig``), wrapped to report its own time."""
    from raypipe.api.server import app_from_environment

    return _timing(app_from_environment())


def _timing(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: an ``x-server-ms`` header with the time spent inside ``app``."""

    async def timed(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = f"{(time.perf_counter() - start) * 1000:.3f}".encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-server-ms", spent)],
                }
            await send(message)

        await app(scope, receive, send_timed)

    return timed


@dataclass
class Server:
    """A running server: its base URL and its process (uvicorn's parent)."""

    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time (user + system) its processes used so far, workers included: the
        cost of requests, apart from the waiting that a busy machine adds to latency."""
        import psutil  # type: ignore[import-untyped]

        parent = psutil.Process(self.pid)
        total = 0.0
        for process in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total


@contextlib.contextmanager
def serving(url: str, workers: int, threads: int | None = None) -> Iterator[Server]:
    """A ``uvicorn`` server process on a free loopback port, as ``raypipe server`` runs
    it (one process unless ``workers``), until the block ends."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from raypipe.api.server import ServerConfig

    config = ServerConfig(port=port, workers=workers, execute=False)
    if threads is not None:
        config = config.model_copy(update={"threads": threads})
    env = {
        **os.environ,
        "RAYPIPE_DATABASE_URL": url,
        "RAYPIPE_API_TOKENS": f"{TOKEN}:{NAMESPACE}",
        "RAYPIPE_TRACKING": "0",
        # this checkout's raypipe, and bench_service for the worker processes
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]),
    }
    env.pop("RAYPIPE_API_TOKEN_FILE", None)
    # raypipe.api.server.serve, as `raypipe server` runs it, with this module's app factory
    command = [
        sys.executable,
        "-c",
        "import sys; from raypipe.api.server import ServerConfig, serve; "
        "serve(ServerConfig.model_validate_json(sys.argv[1]), factory=sys.argv[2])",
        config.model_dump_json(),
        "bench_service:server_app",
    ]
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(command, env=env, cwd=HERE.parent, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (exit code {process.poll()})")
            time.sleep(0.2)
        yield Server(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        said = log.read().strip()
        log.close()
        if said:  # the server logs warnings and errors only
            _log(f"the server said:\n{said[-3000:]}")


# -- the database: made, filled, dropped ------------------------------------------------------


@contextlib.contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str]:
    """An empty database for one backend: a SQLite file in a temporary folder, or a fresh
    schema in the PostgreSQL database (dropped afterwards)."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="raypipe-bench-service-")
        try:
            yield f"sqlite:///{Path(folder) / 'service.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import sqlalchemy

    from raypipe.api.store.database import sqlalchemy_url

    server = sqlalchemy_url(postgres_url)
    schema = f"bench_service_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()


@dataclass
class Fixture:
    """What the clients need to know about the stored records."""

    experiments: list[str]
    pipeline_version_id: str
    runs: int
    insert_seconds: float


def fill(url: str, runs: int, seed: int = 7) -> Fixture:
    """Migrate the store, make the experiments and a pipeline version through the store
    API, then insert ``runs`` runs in bulk (ORM executemany, a few thousand a batch)."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    import raypipe
    from raypipe.api.store import Store
    from raypipe.api.store.models import ExperimentRow, RunRow
    from tests.pipelines import addition

    spec = raypipe.compile(addition).model_dump_json()
    with Store(url) as store:
        experiments = [
            store.create_experiment(NAMESPACE, f"experiment-{i}").experiment_id
            for i in range(EXPERIMENTS)
        ]
        pipeline = store.create_pipeline(NAMESPACE, "addition")
        version = store.create_pipeline_version(NAMESPACE, pipeline.pipeline_id, "v1", spec)
        engine = store._engine  # the store's engine: its types and connection settings
        rng = random.Random(seed)
        states = [state for state, weight in STATES for _ in range(weight)]
        now = datetime.now(timezone.utc)
        start = now - timedelta(days=30)
        step = (now - start) / max(runs, 1)
        arguments = json.dumps({"a": 1, "b": 2})
        began = time.perf_counter()
        batch = 5000
        with Session(engine) as session:
            for first in range(0, runs, batch):
                rows = []
                for i in range(first, min(first + batch, runs)):
                    created = start + step * i
                    state = rng.choice(states)
                    ended = state in ("SUCCEEDED", "FAILED", "CANCELED")
                    rows.append(
                        {
                            "id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                            "namespace": NAMESPACE,
                            "display_name": f"run-{i}",
                            "description": "",
                            "created_at": created,
                            "experiment_id": experiments[i % EXPERIMENTS],
                            "pipeline_version_id": version.pipeline_version_id,
                            "recurring_run_id": None,
                            "pipeline_spec": version.pipeline_spec,
                            "pipeline_spec_digest": version.digest,
                            "arguments": arguments,
                            "state": state,
                            "error_message": "step add failed" if state == "FAILED" else None,
                            "storage_state": "AVAILABLE",
                            "scheduled_at": created,
                            "finished_at": created + timedelta(seconds=30) if ended else None,
                            "owner_id": None,
                            "heartbeat_at": None,
                        }
                    )
                session.execute(insert(RunRow), rows)
                session.commit()
            for experiment_id in experiments:
                session.get_one(ExperimentRow, experiment_id).last_run_created_at = now
            session.commit()
        inserted = time.perf_counter() - began
        if engine.dialect.name == "postgresql":
            # VACUUM too, as a database in use has had: otherwise autovacuum takes up the
            # 100,000 fresh rows a minute later, in the middle of a phase.
            autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            with autocommit as connection:
                connection.exec_driver_sql("VACUUM ANALYZE")
        else:
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        assert store.count_runs(NAMESPACE) == runs
        return Fixture(experiments, version.pipeline_version_id, runs, inserted)


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Phase:
    """One phase's figures (milliseconds)."""

    backend: str
    operation: str
    clients: int
    paced: bool
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    server_p50: float
    server_p99: float
    server_cpu_ms: float
    client_cpu_ms: float
    target: float
    error_sample: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """No errors and the p99 within the target (the target is for 50 clients in a
        closed loop; other phases show how far they are from it)."""
        return self.errors == 0 and self.p99 <= self.target


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: the default client. It costs
    the client process a few microseconds a request, where ``httpx.AsyncClient`` costs
    milliseconds: on this machine 50 clients sharing one got 130–170 requests a second
    out of ``/healthz`` (p50 170–220 ms), these 1,100–2,300 (p50 18–27 ms), against the
    same server; so with httpx the benchmark mostly measured itself."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request and read its response: status, headers (lower-case names),
        body. Reconnects when the server closed the connection."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        head = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Authorization: {AUTH['Authorization']}",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split(" ", 2)[1]), headers, content

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxConnection:
    """The same through one ``httpx.AsyncClient`` per client (``--client httpx``)."""

    def __init__(self, base: str) -> None:
        import httpx

        self._http = httpx.AsyncClient(base_url=base, headers=AUTH, timeout=120)

    async def request(
        self, method: str, target: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = await self._http.request(method, target, content=body, headers=headers)
        return response.status_code, dict(response.headers), response.content

    async def close(self) -> None:
        await self._http.aclose()


async def _phase(
    base: str,
    fixture: Fixture,
    operation: str,
    clients: int,
    per_client: int,
    think_s: float,
    seed: int,
    kind: str,
) -> tuple[list[float], list[float], list[str], float]:
    latencies: list[float] = []
    server: list[float] = []
    errors: list[str] = []
    split = urlsplit(base)
    host, port = split.hostname or "127.0.0.1", split.port or 80

    async def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        experiment = fixture.experiments[number % len(fixture.experiments)]
        filters = [
            {"experiment_id": experiment, "state": "SUCCEEDED"},
            {"state": "FAILED"},
            {"experiment_id": experiment},
        ]
        connection = RawConnection(host, port) if kind == "raw" else HttpxConnection(base)
        token: str | None = None
        walk = page = 0
        try:
            for i in range(per_client):
                if think_s:
                    await asyncio.sleep(rng.uniform(0, 2 * think_s))
                body: bytes | None = None
                if operation == "create":
                    method, target = "POST", f"{API}/runs"
                    body = json.dumps(
                        {
                            "display_name": f"load-{number}-{i}",
                            "pipeline_version_id": fixture.pipeline_version_id,
                            "experiment_id": experiment,
                            "runtime_config": {"parameters": {"a": i, "b": number}},
                        }
                    ).encode()
                elif operation == "health":
                    method, target = "GET", "/healthz"
                else:
                    params: dict[str, Any] = {**filters[walk % len(filters)], "page_size": 50}
                    if token is not None:
                        params["page_token"] = token
                    method, target = "GET", f"{API}/runs?{urlencode(params)}"
                began = time.perf_counter()
                try:
                    status, headers, content = await connection.request(method, target, body)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    latencies.append((time.perf_counter() - began) * 1000)
                    errors.append(f"{type(exc).__name__}: {exc}")  # counted; the client goes on
                    await connection.close()
                    token = None
                    continue
                except Exception as exc:  # httpx's errors, with --client httpx
                    latencies.append((time.perf_counter() - began) * 1000)
                    errors.append(f"{type(exc).__name__}: {exc}")
                    token = None
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                if status != 200:
                    errors.append(f"{status} {content[:200]!r}")
                    token = None
                    continue
                server.append(float(headers.get("x-server-ms", "nan")))
                if operation == "list":
                    token = json.loads(content)["next_page_token"]
                    page += 1
                    if token is None or page == PAGES_PER_WALK:
                        token, page, walk = None, 0, walk + 1
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    seconds = time.perf_counter() - began
    return latencies, server, errors, seconds


def measure(
    server: Server,
    backend: str,
    fixture: Fixture,
    operation: str,
    clients: int,
    per_client: int,
    *,
    think_s: float = 0.0,
    seed: int = 1,
    kind: str = "raw",
) -> Phase:
    cpu_before, client_before = server.cpu_seconds(), time.process_time()
    latencies, in_app, errors, seconds = asyncio.run(
        _phase(server.base, fixture, operation, clients, per_client, think_s, seed, kind)
    )
    client_cpu = time.process_time() - client_before
    server_cpu = server.cpu_seconds() - cpu_before
    done = len(latencies)
    return Phase(
        backend=backend,
        operation=operation,
        clients=clients,
        paced=think_s > 0,
        requests=done,
        errors=len(errors),
        seconds=seconds,
        throughput=done / seconds,
        p50=_percentile(latencies, 50),
        p90=_percentile(latencies, 90),
        p95=_percentile(latencies, 95),
        p99=_percentile(latencies, 99),
        max=max(latencies),
        server_p50=_percentile(in_app, 50),
        server_p99=_percentile(in_app, 99),
        server_cpu_ms=server_cpu / done * 1000,
        client_cpu_ms=client_cpu / done * 1000,
        target=TARGETS_MS[operation],
        error_sample=errors[:3],
    )


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_backend(backend: str, args: argparse.Namespace) -> tuple[Fixture, list[Phase]]:
    phases: list[Phase] = []
    with database(backend, args.postgres_url) as url:
        _log(f"[{backend}] inserting {args.runs:,} runs ...")
        fixture = fill(url, args.runs)
        _log(f"[{backend}] {fixture.runs:,} runs in {fixture.insert_seconds:.1f} s")
        with serving(url, args.workers, args.threads) as server:
            # warm-up, untimed: connections, the app's first requests, the database's cache
            measure(server, backend, fixture, "create", args.clients, 2, kind=args.client)
            measure(server, backend, fixture, "list", args.clients, 4, kind=args.client)
            # the HTTP stack alone (uvicorn, FastAPI, a sync route, these clients): a floor
            plan: list[tuple[str, int, int, float]] = [("health", args.clients, args.requests, 0)]
            for operation in ("create", "list"):
                plan.append((operation, 1, args.single, 0.0))
                plan.append((operation, args.clients, args.requests, 0.0))
                if args.paced:
                    plan.append((operation, args.clients, args.paced_requests, args.think))
            for seed, (operation, clients, count, think) in enumerate(plan, start=2):
                result = measure(
                    server,
                    backend,
                    fixture,
                    operation,
                    clients,
                    count,
                    think_s=think,
                    seed=seed,
                    kind=args.client,
                )
                phases.append(result)
                _log(f"[{backend}] {_row(result)}")
    return fixture, phases


# -- profile: where a request's time goes, in-process -------------------------------------------


def profile(args: argparse.Namespace) -> None:
    """cProfile of the create and list route functions called directly in this process
    (``--single`` times each, on the first ``--backend``, ``--runs`` stored): where the
    server's CPU time
    goes, without HTTP, uvicorn and FastAPI's parsing (their share is the difference from
    the 1-client latency)."""
    from fastapi.routing import APIRoute

    from raypipe.api.app import create_app
    from raypipe.api.auth import parse_tokens
    from raypipe.api.schemas import CreateRun
    from raypipe.api.store import Store

    with database(args.backend[0], args.postgres_url) as url:
        fixture = fill(url, args.runs)
        with Store(url, migrate=False) as store:
            app = create_app(store, execute=False, tokens=parse_tokens(f"{TOKEN}:{NAMESPACE}"))
            routes = {
                (method, route.path): route
                for route in app.routes
                if isinstance(route, APIRoute)
                for method in route.methods
            }
            create = routes[("POST", f"{API}/runs")]
            listing = routes[("GET", f"{API}/runs")]
            body = CreateRun.model_validate(
                {
                    "display_name": "profiled",
                    "pipeline_version_id": fixture.pipeline_version_id,
                    "experiment_id": fixture.experiments[0],
                    "runtime_config": {"parameters": {"a": 1, "b": 2}},
                }
            )

            loop = asyncio.new_event_loop()  # the hot routes are ``async``

            def created() -> Any:
                return loop.run_until_complete(create.endpoint(body=body, ns=NAMESPACE))

            def listed() -> Any:
                return loop.run_until_complete(
                    listing.endpoint(
                        ns=NAMESPACE,
                        page_size=50,
                        page_token=None,
                        sort_by="-created_at",
                        experiment_id=fixture.experiments[0],
                        pipeline_version_id=None,
                        recurring_run_id=None,
                        state=["SUCCEEDED"],
                        name_contains=None,
                        storage_state=None,
                        pipeline_id=None,
                    )
                )

            for name, call in (("create", created), ("list", listed)):
                call()
                profiler = cProfile.Profile()
                began = time.perf_counter()
                profiler.enable()
                for _ in range(args.single):
                    call()  # the route returns its response, JSON written
                profiler.disable()
                each = (time.perf_counter() - began) / args.single * 1000
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("cumulative").print_stats(40)
                stats.sort_stats("tottime").print_stats(25)
                print(f"\n=== {name}: {each:.2f} ms a request (route function + response)\n")
                print(out.getvalue())


# -- report -----------------------------------------------------------------------------------


def _row(p: Phase) -> str:
    load = f"{p.clients} client{'s' if p.clients > 1 else ''}" + (", paced" if p.paced else "")
    if math.isnan(p.target):
        target = met = "—"
    else:
        target = f"≤ {p.target:.0f}"
        met = "yes" if p.met else f"**no** (+{p.p99 - p.target:.0f} ms)"
    return (
        f"| {p.backend} | {p.operation} | {load} | {p.requests} | {p.errors} | "
        f"{p.throughput:.0f}/s | {p.p50:.1f} | {p.p90:.1f} | {p.p95:.1f} | {p.p99:.1f} | "
        f"{p.max:.0f} | "
        f"{p.server_p50:.1f} / {p.server_p99:.1f} | {p.server_cpu_ms:.2f} | {target} | {met} |"
    )


def table(phases: list[Phase]) -> str:
    lines = [
        "| database | operation | load | requests | errors | throughput | p50 ms | p90 ms | "
        "p95 ms | p99 ms | max ms | server p50 / p99 ms | server CPU ms/request | target p99 "
        "| met |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    return "\n".join([*lines, *(_row(p) for p in phases)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--runs", type=int, default=100_000, help="runs stored first")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=30, help="per client, closed loop")
    parser.add_argument("--single", type=int, default=200, help="requests of the 1-client phase")
    parser.add_argument("--paced", action="store_true", help="also a phase with think time")
    parser.add_argument("--paced-requests", type=int, default=20, help="per client, paced")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause, paced (s)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--threads", type=int, help="requests served at once per process (default: raypipe's)"
    )
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="raw HTTP/1.1 on asyncio streams (default), or an httpx.AsyncClient per client",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("RAYPIPE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", action="store_true", help="cProfile in-process and stop")
    args = parser.parse_args()
    os.environ.setdefault("RAYPIPE_HOME", tempfile.mkdtemp(prefix="raypipe-bench-home-"))
    if args.profile:
        profile(args)
        return 0

    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    phases: list[Phase] = []
    inserts: dict[str, float] = {}
    for backend in args.backend:
        fixture, measured = bench_backend(backend, args)
        phases.extend(measured)
        inserts[backend] = fixture.insert_seconds
    elapsed = time.perf_counter() - began
    print(
        f"\nService API under load: {args.runs:,} runs stored, uvicorn with "
        f"{args.workers} worker(s), {args.client} clients, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; "
        f"bulk insert: "
        + ", ".join(f"{b} {s:.0f} s" for b, s in inserts.items())
        + f"; total {elapsed:.0f} s; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print(table(phases))
    for p in phases:
        if p.error_sample:
            print(f"\n{p.backend} {p.operation}: errors, e.g. {p.error_sample}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json)},
                    "phases": [asdict(p) for p in phases],
                },
                indent=2,
                default=str,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
