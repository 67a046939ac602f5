"""The service's REST API, for real: a SQLite store, the runtime on this session's Ray, and
a service process killed with SIGKILL whose run the next instance finishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import ray
from fastapi.testclient import TestClient

import raypipe
from raypipe import dsl
from raypipe.api.app import API_PREFIX, create_app
from raypipe.api.auth import DEFAULT_NAMESPACE, parse_tokens
from raypipe.api.executor import RunExecutor
from raypipe.api.leadership import EXECUTOR_LEASE
from raypipe.api.store import RunState, Store
from tests.pipelines import addition
from tests.reliability.service_process import kill_all

KFP_ADD = Path(__file__).parent / "data" / "kfp" / "pipelines" / "add_numbers.yaml"
_WAIT_S = 90.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as opened:
        yield opened


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    executor = RunExecutor(store, poll_seconds=0.1)
    with TestClient(create_app(store, executor=executor, tokens=parse_tokens(""))) as test:
        yield test


def _wait_for_end(client: TestClient | httpx.Client, run_id: str, **kwargs: Any) -> dict[str, Any]:
    deadline = time.monotonic() + _WAIT_S
    while True:
        run: dict[str, Any] = client.get(f"{API_PREFIX}/runs/{run_id}", **kwargs).json()
        if run["state"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(0.1)


def _wait_for_state(client: TestClient | httpx.Client, run_id: str, state: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while (found := client.get(f"{API_PREFIX}/runs/{run_id}").json()["state"]) != state:
        assert time.monotonic() < deadline, f"run {run_id} still {found}, not {state}"
        time.sleep(0.05)


def test_health_answers_without_a_token(store: Store) -> None:
    app = create_app(store, tokens=parse_tokens("t:team"), execute=False)
    with TestClient(app) as test:
        assert test.get("/healthz").json() == {"status": "ok", "database": "sqlite"}
        assert test.get(f"{API_PREFIX}/runs").status_code == 401
        assert "openapi" in test.get("/openapi.json").json()


def test_health_is_answered_during_a_burst_of_creates_not_after_it(store: Store) -> None:
    """16 creates and a ``/healthz`` read in one wake-up of the event loop, as uvicorn
    starts them (a task each, called with the whole request): the health check is
    answered after the create in progress, not behind all 16 (the event-loop routes take
    turns, and the loop reads its sockets at each turn). Order, not time."""
    spec = json.loads(json.dumps(raypipe.compile(addition).to_dict()))
    arguments = {"parameters": {"a": 1, "b": 2}}
    body = json.dumps({"display_name": "r", "pipeline_spec": spec, "runtime_config": arguments})
    app = create_app(store, execute=False, tokens=parse_tokens(""))
    ended: list[str] = []

    async def call(name: str, method: str, path: str, content: bytes = b"") -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": content, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200, name
            elif not message.get("more_body"):
                ended.append(name)

        headers = [(b"host", b"raypipe"), (b"content-type", b"application/json")]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(content)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)

    async def burst() -> None:
        async with app.router.lifespan_context(app):
            creates = [
                call(f"create-{i}", "POST", f"{API_PREFIX}/runs", body.encode()) for i in range(16)
            ]
            await asyncio.gather(*creates, call("health", "GET", "/healthz"))

    asyncio.run(burst())
    assert len(ended) == 17
    assert ended.index("health") <= 1, ended


def test_runs_without_an_experiment_go_to_default_even_after_it_was_deleted(
    store: Store,
) -> None:
    """The app keeps the Default experiment's id; once that experiment is deleted, the
    next run lands in a new Default rather than failing on the old id."""
    spec = json.loads(json.dumps(raypipe.compile(addition).to_dict()))
    arguments = {"parameters": {"a": 1, "b": 2}}
    body = {"display_name": "r", "pipeline_spec": spec, "runtime_config": arguments}
    with TestClient(create_app(store, execute=False, tokens=parse_tokens(""))) as test:
        first = test.post(f"{API_PREFIX}/runs", json=body).json()
        ended = store.transition_run(
            DEFAULT_NAMESPACE, first["run_id"], [RunState.PENDING], RunState.CANCELED
        )
        assert ended  # an active run is not deleted
        test.delete(f"{API_PREFIX}/runs/{first['run_id']}").raise_for_status()
        deleted = test.delete(f"{API_PREFIX}/experiments/{first['experiment_id']}")
        assert deleted.is_success, deleted.text
        second = test.post(f"{API_PREFIX}/runs", json=body)
        assert second.is_success, second.text
        assert second.json()["experiment_id"] != first["experiment_id"]
        default = test.get(f"{API_PREFIX}/experiments/{second.json()['experiment_id']}")
        assert default.json()["display_name"] == "Default"


def test_upload_a_pipeline_version_and_run_it(client: TestClient) -> None:
    pipeline = client.post(f"{API_PREFIX}/pipelines", json={"display_name": "addition"}).json()
    version = client.post(
        f"{API_PREFIX}/pipelines/{pipeline['pipeline_id']}/versions",
        json={"display_name": "v1", "pipeline_spec": raypipe.compile(addition).to_dict()},
    ).json()
    assert version["pipeline_spec"]["name"] == "addition"
    created = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "first",
            "pipeline_version_id": version["pipeline_version_id"],
            "runtime_config": {"parameters": {"a": 1, "b": 2}},
        },
    )
    assert created.status_code == 200, created.text
    run = _wait_for_end(client, created.json()["run_id"])
    assert run["state"] == "SUCCEEDED", run
    assert run["runtime_config"] == {"parameters": {"a": 1, "b": 2}}
    assert run["experiment_id"]  # the namespace's default experiment

    listed = client.get(f"{API_PREFIX}/runs", params={"state": "SUCCEEDED"}).json()
    assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]]


def test_a_kfp_compiled_yaml_runs_through_the_api(client: TestClient) -> None:
    created = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "kfp",
            "pipeline_spec_yaml": KFP_ADD.read_text(),
            "runtime_config": {"parameters": {"a": 2, "b": 5}},
        },
    ).json()
    run = _wait_for_end(client, created["run_id"])
    assert run["state"] == "SUCCEEDED", run
    result_output = raypipe.lineage.sql(
        "SELECT count(*) FROM executions WHERE run_id = ?", [run["run_id"]]
    )[1]
    assert result_output[0][0] >= 1  # the runtime recorded the run under the same id


def test_bad_requests_name_the_field(client: TestClient) -> None:
    missing = client.post(f"{API_PREFIX}/experiments", json={})
    assert missing.status_code == 400 and "display_name" in missing.json()["error"]
    both = client.post(f"{API_PREFIX}/runs", json={"display_name": "x"})
    assert both.status_code == 400 and "exactly one of pipeline_version_id" in both.text
    wrong = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "x",
            "pipeline_spec": raypipe.compile(addition).to_dict(),
            "runtime_config": {"parameters": {"a": "one", "b": 2}},
        },
    )
    assert wrong.status_code == 400
    assert wrong.json()["details"][0]["field"] == "a"
    assert client.get(f"{API_PREFIX}/runs/nope").status_code == 404
    assert client.get(f"{API_PREFIX}/runs", params={"sort_by": "size"}).status_code == 400


def test_namespaces_do_not_see_each_other(store: Store) -> None:
    tokens = parse_tokens("alpha-token:alpha,beta-token:beta")
    with TestClient(create_app(store, tokens=tokens, execute=False)) as test:
        alpha = {"Authorization": "Bearer alpha-token"}
        beta = {"Authorization": "Bearer beta-token"}
        made = test.post(f"{API_PREFIX}/experiments", json={"display_name": "e"}, headers=alpha)
        experiment_id = made.json()["experiment_id"]
        assert test.get(f"{API_PREFIX}/experiments/{experiment_id}", headers=alpha).is_success
        assert (
            test.get(f"{API_PREFIX}/experiments/{experiment_id}", headers=beta).status_code == 404
        )
        assert test.get(f"{API_PREFIX}/experiments", headers=beta).json()["experiments"] == []
        wrong = {"Authorization": "Bearer nope"}
        assert test.get(f"{API_PREFIX}/experiments", headers=wrong).status_code == 401


@dsl.component
def wait_for(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return path


@dsl.component
def fail_once(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "ok"


@dsl.pipeline(name="gated")
def gated(path: str) -> str:
    return wait_for(path=path).output


@dsl.pipeline(name="retried")
def retried(gate: str, marker: str) -> str:
    waited = wait_for(path=gate)
    return fail_once(marker=marker).after(waited).output


def test_terminate_cancels_and_retry_reruns_only_what_failed(
    client: TestClient, tmp_path: Path
) -> None:
    started = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "blocked",
            "pipeline_spec": raypipe.compile(gated).to_dict(),
            "runtime_config": {"parameters": {"path": str(tmp_path / "never")}},
        },
    ).json()
    _wait_for_state(client, started["run_id"], "RUNNING")  # the executor took it from the store
    stopped = client.post(f"{API_PREFIX}/runs/{started['run_id']}:terminate")
    assert stopped.status_code == 200 and stopped.json()["state"] == "CANCELING"
    assert _wait_for_end(client, started["run_id"])["state"] == "CANCELED"

    gate = tmp_path / "gate"
    gate.touch()
    created = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "retry-me",
            "pipeline_spec": raypipe.compile(retried).to_dict(),
            "runtime_config": {"parameters": {"gate": str(gate), "marker": str(tmp_path / "m")}},
        },
    ).json()
    first = _wait_for_end(client, created["run_id"])
    assert first["state"] == "FAILED" and "first attempt fails" in first["error"]["error"]
    gate.unlink()  # if wait-for ran again, the retry would hang: it must come from the cache
    again = client.post(f"{API_PREFIX}/runs/{created['run_id']}:retry")
    assert again.status_code == 200, again.text
    assert _wait_for_end(client, created["run_id"])["state"] == "SUCCEEDED"
    conflict = client.post(f"{API_PREFIX}/runs/{created['run_id']}:retry")
    assert conflict.status_code == 409


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(database: str, port: int, home: Path, log: Path, *options: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "RAYPIPE_HOME": str(home),
        "RAYPIPE_DATABASE_URL": database,
        "RAYPIPE_TRACKING": "0",
    }
    env.pop("RAYPIPE_API_TOKENS", None)
    with log.open("a") as output:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [
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
            ],
            env=env,
            cwd=Path(__file__).parent.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait_until_up(base: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).is_success:
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


def test_a_run_survives_a_killed_service(tmp_path: Path, raypipe_home: Path) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    gate = tmp_path / "gate"
    log = tmp_path / "server.log"
    first = _serve(database, port, raypipe_home, log)
    try:
        _wait_until_up(base)
        created = httpx.post(
            f"{base}{API_PREFIX}/runs",
            json={
                "display_name": "survivor",
                "pipeline_spec": json.loads(json.dumps(raypipe.compile(gated).to_dict())),
                "runtime_config": {"parameters": {"path": str(gate)}},
            },
            timeout=30,
        )
        assert created.is_success, created.text
        run_id = created.json()["run_id"]
        deadline = time.monotonic() + _WAIT_S
        while httpx.get(f"{base}{API_PREFIX}/runs/{run_id}").json()["state"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        kill_all(first)  # the API and executor processes too: a crash, no shutdown code
    finally:
        if first.poll() is None:
            first.kill()
    gate.touch()
    second = _serve(database, port, raypipe_home, log)
    try:
        _wait_until_up(base)
        with httpx.Client(base_url=base) as http:
            run = _wait_for_end(http, run_id)
        assert run["state"] == "SUCCEEDED", (run, log.read_text()[-3000:])
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()


@dsl.component
def write_report(text: str, report: dsl.Output[dsl.Dataset]) -> str:
    print(f"writing {text}")
    with open(report.path, "w") as f:
        f.write(text)
    return text


@dsl.pipeline(name="reporting")
def reporting(text: str = "hello") -> str:
    return write_report(text=text).outputs["Output"]


@dsl.component
def link_out(target: str, report: dsl.Output[dsl.Dataset]) -> None:
    import os

    os.symlink(target, report.path)  # an artifact that points outside the artifact root


@dsl.pipeline(name="linking")
def linking(target: str) -> None:
    link_out(target=target)


def _eventually(check: Any, what: str) -> Any:
    deadline = time.monotonic() + _WAIT_S
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def test_artifacts_logs_and_lineage_of_a_run_and_nothing_else(
    client: TestClient, tmp_path: Path
) -> None:
    created = client.post(
        f"{API_PREFIX}/runs",
        json={"display_name": "report", "pipeline_spec": raypipe.compile(reporting).to_dict()},
    ).json()
    run_id = created["run_id"]
    assert _wait_for_end(client, run_id)["state"] == "SUCCEEDED"
    base = f"{API_PREFIX}/runs/{run_id}"
    artifacts = _eventually(
        lambda: client.get(f"{base}/artifacts").json()["artifacts"], "the run's lineage"
    )
    (report,) = artifacts
    assert (report["task"], report["output"], report["type"]) == (
        "write-report",
        "report",
        "Dataset",
    )
    download = client.get(f"{base}/artifacts:download", params={"uri": report["uri"]})
    assert download.status_code == 200 and download.content == b"hello"
    assert client.get(f"{base}/logs").json()["logs"] == [{"task": "write-report", "attempt": 1}]
    assert client.get(f"{base}/logs/write-report").text == "writing hello\n"
    followed = client.get(f"{base}/logs/write-report", params={"follow": "true"})
    assert followed.text == "writing hello\n"  # the run ended: the stream ends too
    lineage = client.get(f"{base}/lineage").json()
    assert [e["task"] for e in lineage["executions"]] == ["write-report"]

    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    root = report["uri"].rsplit("/", 4)[0]
    for uri in (
        str(outside),
        "/etc/passwd",
        f"{report['uri']}/../../../../../etc/passwd",
        report["uri"].replace("report", "%2e%2e/%2e%2e/secret"),
        f"{root}/../secret.txt",
    ):
        refused = client.get(f"{base}/artifacts:download", params={"uri": uri})
        assert refused.status_code == 404, uri
    assert client.get(f"{API_PREFIX}/runs/nope/artifacts").status_code == 404

    linked = client.post(
        f"{API_PREFIX}/runs",
        json={
            "display_name": "link",
            "pipeline_spec": raypipe.compile(linking).to_dict(),
            "runtime_config": {"parameters": {"target": str(outside)}},
        },
    ).json()
    assert _wait_for_end(client, linked["run_id"])["state"] == "SUCCEEDED"
    link_base = f"{API_PREFIX}/runs/{linked['run_id']}"
    (symlink,) = _eventually(
        lambda: client.get(f"{link_base}/artifacts").json()["artifacts"], "the link's lineage"
    )
    escaped = client.get(f"{link_base}/artifacts:download", params={"uri": symlink["uri"]})
    assert escaped.status_code == 404  # resolved, the link leaves the artifact root


def test_following_the_log_of_a_step_the_run_does_not_have_is_not_found(store: Store) -> None:
    with TestClient(create_app(store, execute=False, tokens=parse_tokens(""))) as client:
        run = client.post(
            f"{API_PREFIX}/runs",
            json={
                "display_name": "waiting",
                "pipeline_spec": raypipe.compile(addition).to_dict(),
                "runtime_config": {"parameters": {"a": 1, "b": 2}},
            },
        ).json()
        assert run["state"] == "PENDING"  # never ends here: nothing executes
        for follow in ("true", "false"):
            missing = client.get(
                f"{API_PREFIX}/runs/{run['run_id']}/logs/no-such-step", params={"follow": follow}
            )
            assert missing.status_code == 404, missing.text
            assert "no-such-step" in missing.json()["error"]


@dsl.component
def append_line_after(path: str, line: str, gate: str) -> str:
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@dsl.pipeline(name="gated-append")
def gated_append(gate: str, out: str, line: str) -> str:
    waited = wait_for(path=gate)
    return append_line_after(path=out, line=line, gate=waited.output).output


def test_two_server_workers_one_executes_each_run_exactly_once(
    tmp_path: Path, raypipe_home: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    gate, out = tmp_path / "gate", tmp_path / "lines.txt"
    log = tmp_path / "server.log"
    server = _serve(database, port, raypipe_home, log, "--workers", "2")
    try:
        _wait_until_up(base)
        spec = json.loads(json.dumps(raypipe.compile(gated_append).to_dict()))

        def create(i: int) -> str:  # six clients at once, spread over both workers
            with httpx.Client(base_url=base, timeout=60) as http:
                listed = http.get(f"{API_PREFIX}/runs", params={"page_size": 5})
                assert listed.is_success, listed.text
                created = http.post(
                    f"{API_PREFIX}/runs",
                    json={
                        "display_name": f"run-{i}",
                        "pipeline_spec": spec,
                        "runtime_config": {
                            "parameters": {"gate": str(gate), "out": str(out), "line": f"run-{i}"}
                        },
                    },
                )
                assert created.is_success, created.text
                run_id: str = created.json()["run_id"]
                return run_id

        with ThreadPoolExecutor(6) as pool:
            run_ids = list(pool.map(create, range(6)))
        with httpx.Client(base_url=base) as http:
            for run_id in run_ids:
                _wait_for_state(http, run_id, "RUNNING")  # held at the gate
        with Store(database) as store:  # one process holds the executor lease and every run
            holder = store.lease_holder(EXECUTOR_LEASE)
            assert holder is not None
            owners = {store.get_run("default", run_id).owner_id for run_id in run_ids}
            assert owners == {holder.owner_id}, (owners, holder)
        gate.touch()
        with httpx.Client(base_url=base) as http:
            ended = [_wait_for_end(http, run_id)["state"] for run_id in run_ids]
        assert ended == ["SUCCEEDED"] * 6, log.read_text()[-3000:]
        assert sorted(out.read_text().split()) == sorted(f"run-{i}" for i in range(6))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_server_workers_share_connections_and_a_killed_one_is_replaced(
    tmp_path: Path, raypipe_home: Path
) -> None:
    """``--workers 2``: each process listens on its own socket, so connections opened at
    once reach both (uvicorn's shared socket gave one process all 50 of a burst); a
    worker killed with SIGKILL is replaced; SIGTERM stops them all."""
    database = f"sqlite:///{tmp_path / 'service.db'}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = _serve(database, port, raypipe_home, log, "--workers", "2")
    parent = psutil.Process(server.pid)

    def listening() -> dict[int, psutil.Process]:
        found = {}
        for child in parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if any(
                    c.status == psutil.CONN_LISTEN and c.laddr.port == port
                    for c in child.net_connections("tcp")
                ):
                    found[child.pid] = child
        return found

    try:
        _wait_until_up(base)
        deadline = time.monotonic() + _WAIT_S
        while len(workers := listening()) < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(40)]
        try:
            for client in clients:
                assert client.get("/healthz").is_success
            served = {
                pid: sum(c.status == psutil.CONN_ESTABLISHED for c in p.net_connections("tcp"))
                for pid, p in workers.items()
            }
        finally:
            for client in clients:
                client.close()
        assert sorted(served.values())[0] > 0, served  # both took connections

        killed = next(iter(workers))
        os.kill(killed, signal.SIGKILL)
        while killed in (now := listening()) or len(now) < 2:
            assert time.monotonic() < deadline + _WAIT_S, log.read_text()
            time.sleep(0.2)
        for _ in range(10):  # new connections, some to the new process
            assert httpx.get(f"{base}/healthz", timeout=30).is_success
    finally:
        children = parent.children(recursive=True)
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive
