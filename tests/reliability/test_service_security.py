"""Security, the service's and KubeRay's side: bearer tokens compared in constant time
and never logged, no file outside a run's artifacts through the web UI's routes, and
nothing privileged in a generated KubeRay manifest.

The REST routes' traversal checks (artifacts:download, logs) are
``tests/test_service_fuzz.py::test_no_route_serves_a_file_outside_the_runs_artifacts``;
the attempts here are the same, sent to the UI's ``/ui/api/*`` and ``/ui/static`` routes.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

import raypipe
from raypipe.api.app import API_PREFIX
from raypipe.api.auth import parse_tokens
from raypipe.api.store import Store
from raypipe.api.ui.router import UI_API
from raypipe.kuberay import (
    ClusterOptions,
    JobOptions,
    cluster_manifest,
    cronjob_manifests,
    job_manifests,
)
from tests.kuberay.pipelines import gpu_training, images, loops, plain
from tests.reliability.service_pipelines import tiny
from tests.reliability.service_process import ServerProcess
from tests.test_service_fuzz import AUTH, NAMESPACE, SECRET, _app, _artifacts, traversal

REPO = Path(__file__).parent.parent.parent

# -- tokens ----------------------------------------------------------------------------------


def test_a_token_is_compared_with_every_known_one_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every lookup calls ``hmac.compare_digest`` once per configured token, whether the
    token is known or not and wherever it is: no ``==``, no dict lookup, no early exit."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counted(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counted)
    tokens = parse_tokens("first-token:a, second-token:b, third-token:c")
    for token, namespace in (
        ("first-token", "a"),
        ("third-token", "c"),
        ("first-tokeN", None),
        ("", None),
        ("x" * 1000, None),
    ):
        calls.clear()
        assert tokens.namespace_of(token) == namespace
        assert len(calls) == 3, token
        assert {given for _, given in calls} == {token.encode()}


VALID, INVALID = "valid-token-7f3a9c1e5b", "invalid-token-2d8e4f6a0c"


def test_tokens_never_appear_in_the_servers_most_verbose_logs(
    tmp_path: Path, raypipe_home: Path
) -> None:
    """A real server with every logger at DEBUG (uvicorn's at TRACE) serves requests with
    a valid token (one of them runs a pipeline), an invalid one, malformed ones: its
    whole output, and every file it wrote under RAYPIPE_HOME, hold neither token."""
    log = tmp_path / "server.log"
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with ServerProcess.start(
        database, raypipe_home, log, tokens=f"{VALID}:team", verbose=True
    ) as server:
        good = {"Authorization": f"Bearer {VALID}"}
        spec = json.loads(json.dumps(raypipe.compile(tiny).to_dict()))
        with httpx.Client(base_url=server.base, timeout=60) as http:
            made = http.post(
                f"{API_PREFIX}/runs",
                json={"display_name": "logged", "pipeline_spec": spec},
                headers=good,
            )
            assert made.is_success, made.text
            run_id = made.json()["run_id"]
            for headers in (
                {"Authorization": f"Bearer {INVALID}"},
                {"Authorization": f"Basic {INVALID}"},
                {"Authorization": INVALID},
                {"authorization": f"bearer {INVALID}"},
            ):
                assert http.get(f"{API_PREFIX}/runs", headers=headers).status_code == 401
            assert http.post(f"{API_PREFIX}/runs", content=b"{", headers=good).status_code == 400
            bad = http.post(f"{API_PREFIX}/runs", json={"pipeline_spec": 1}, headers=good)
            assert bad.status_code == 400
            assert http.get(f"{API_PREFIX}/runs/nope", headers=good).status_code == 404
            deadline = time.monotonic() + 120
            while (run := http.get(f"{API_PREFIX}/runs/{run_id}", headers=good).json())[
                "state"
            ] not in ("SUCCEEDED", "FAILED"):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            assert run["state"] == "SUCCEEDED", run
            assert http.get(f"{API_PREFIX}/runs/{run_id}/logs", headers=good).is_success
    text = log.read_text(errors="replace")
    print(f"\n{len(text.splitlines())} lines of server output checked")
    # the logging was on: request lines (uvicorn TRACE/access) and the app's own DEBUG
    assert "GET /apis/v2beta1/runs" in text and "TRACE" in text, text[-2000:]
    assert "DEBUG" in text, text[-2000:]
    for token in (VALID, INVALID):
        assert token not in text, [line for line in text.splitlines() if token in line][:3]
        for written in raypipe_home.rglob("*"):
            if written.is_file():
                assert token.encode() not in written.read_bytes(), written


# -- the UI's routes: a run's own files, nothing else ----------------------------------------


@pytest.fixture
def traversal_run(tmp_path: Path) -> Iterator[tuple[TestClient, str, dict[str, str], Path]]:
    """A run whose step links an output to a file outside the artifact root and imports
    one, recorded in the service; with a client that has a valid token."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    result = raypipe.run(traversal, {"secret": str(secret)}, quiet=True, cache=False)
    assert result.status == "SUCCEEDED", result
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as store:
        store.create_run(
            NAMESPACE,
            display_name="traversal",
            pipeline_spec=raypipe.compile(traversal).model_dump_json(),
            arguments={"secret": str(secret)},
            run_id=result.run_id,
        )
        with TestClient(_app(store)) as client:
            artifacts = {a["output"]: a["uri"] for a in _artifacts(client, result.run_id)}
            yield client, result.run_id, artifacts, secret


def test_no_ui_route_serves_a_file_outside_the_runs_artifacts(
    traversal_run: tuple[TestClient, str, dict[str, str], Path],
) -> None:
    client, run_id, artifacts, secret = traversal_run
    report = artifacts["report"]
    preview = f"{UI_API}/runs/{run_id}/preview"
    shown = client.get(preview, params={"uri": report}, headers=AUTH)
    assert shown.status_code == 200 and "report" in shown.text, shown.text  # it works
    root = report.split(f"/{run_id}/")[0]
    # the run's own records, whose files are outside the root: described, never read
    for uri in (artifacts["link"], artifacts["artifact"]):
        for route in (preview, f"{UI_API}/runs/{run_id}/artifact-lineage"):
            answer = client.get(route, params={"uri": uri}, headers=AUTH)
            assert answer.status_code in (200, 404), (route, uri, answer.status_code)
            assert SECRET not in answer.text, (route, uri)
    uris = [
        f"file://{secret}",
        "/etc/passwd",
        "../../../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"{report}/../../../../../../../etc/passwd",
        f"{report}/../link",
        f"{root}/../secret.txt",
        f"{root}/%2e%2e/secret.txt",
        f"{root}/%252e%252e/secret.txt",
        report.replace("/report", "/../../../../secret.txt"),
        f"{report}\x00.txt",
        root,
    ]
    for uri in uris:
        for route in (preview, f"{UI_API}/runs/{run_id}/artifact-lineage"):
            answer = client.get(route, params={"uri": uri}, headers=AUTH)
            assert answer.status_code in (400, 404), (route, uri, answer.status_code)
            assert SECRET not in answer.text, (route, uri)
    # spelled in the raw path or query (no client-side encoding)
    secret_path = str(secret).replace("/", "%2F")
    for path in (
        f"{preview}?uri=%2Fetc%2Fpasswd",
        f"{UI_API}/runs/{run_id}/steps/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"{UI_API}/runs/{run_id}/steps/write-and-link%2F..%2F..%2F..%2Fsecret.txt",
        f"{UI_API}/runs/{run_id}/steps/{secret_path}",
        f"{UI_API}/runs/..%2F..%2F..%2Fetc/steps/x",
        "/ui/static/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/ui/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/ui/static/{secret_path}",
        "/ui/static/..%2F..%2F..%2Fraypipe%2Fapi%2Fauth.py",
    ):
        answer = client.get(path, headers=AUTH)
        assert answer.status_code in (400, 404), (path, answer.status_code)
        assert SECRET not in answer.text and "root:" not in answer.text, path
        assert "compare_digest" not in answer.text, path
    step = client.get(f"{UI_API}/runs/{run_id}/steps/write-and-link", headers=AUTH)
    assert step.status_code == 200 and SECRET not in step.text


# -- KubeRay manifests -----------------------------------------------------------------------


def _generated() -> list[tuple[str, dict[str, Any]]]:
    """The manifests raypipe.kuberay makes for a few pipelines (GPU training included),
    and the deploy kit's static ones."""
    made: list[tuple[str, dict[str, Any]]] = []
    for pipeline, arguments in ((plain, {"a": 1}), (gpu_training, {}), (images, {}), (loops, {})):
        name = raypipe.compile(pipeline).name
        made.append((f"{name} cluster", cluster_manifest(pipeline, ClusterOptions(namespace="ml"))))
        for kind, objects in (
            ("job", job_manifests(pipeline, arguments, JobOptions())),
            ("cronjob", cronjob_manifests(pipeline, arguments, JobOptions(), schedule="0 * * * *")),
        ):
            made += [(f"{name} {kind} {o['kind']}", o) for o in objects]
    for path in sorted((REPO / "deploy" / "kuberay").glob("*.yaml")):
        made += [(path.name, o) for o in yaml.safe_load_all(path.read_text()) if o]
    return made


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """Every (path, key, value) of a nested document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield where, key, value
            yield from _walk(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}[{index}]")


def test_no_generated_manifest_is_privileged_and_every_pod_runs_as_non_root() -> None:
    manifests = _generated()
    pods = 0
    for name, manifest in manifests:
        text = yaml.safe_dump(manifest)
        assert "docker.sock" not in text and "/var/run/docker" not in text, name
        for where, key, value in _walk(manifest, name):
            assert not (key == "privileged" and value is True), where
            assert not (key == "allowPrivilegeEscalation" and value is True), where
            assert key not in ("hostPath", "hostPID", "hostIPC", "hostNetwork") or not value, (
                where,
                key,
            )
            if key == "capabilities":
                assert not value.get("add"), (where, value)
            if key == "spec" and isinstance(value, dict) and "containers" in value:
                pods += 1
                pod_level = value.get("securityContext", {}).get("runAsNonRoot") is True
                for container in value["containers"] + value.get("initContainers", []):
                    context = container.get("securityContext", {})
                    assert context.get("runAsNonRoot", pod_level) is True, (where, container)
                    assert context.get("runAsUser", 1) != 0, (where, container)
    assert pods >= 12, pods  # head, workers, submitters... (the walk did find the pods)
