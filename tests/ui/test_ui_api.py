"""The UI's own routes against the real service: the page and assets without a token and
without traversal, every data route behind the token and the namespace, live step states
as server-sent events, step details, previews, comparisons and an artifact's lineage."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import raypipe
from tests.ui import pipelines
from tests.ui.conftest import OTHER_TOKEN, TOKEN

UI = "/ui/api"


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}) as opened:
        yield opened


@pytest.fixture(scope="module")
def finished(client: raypipe.Client) -> dict[str, str]:
    """Run ids of an ended run of each kind: one that wrote artifacts, two failed ones."""
    runs = {
        "artifacts": client.create_run_from_pipeline_func(pipelines.artifacts).run_id,
        "failed-3": client.create_run_from_pipeline_func(pipelines.failing, {"rows": 3}).run_id,
        "failed-4": client.create_run_from_pipeline_func(pipelines.failing, {"rows": 4}).run_id,
    }
    for run_id in runs.values():
        client.wait_for_run_completion(run_id, timeout=120)
    return runs


def test_the_page_and_its_assets_need_no_token_and_nothing_else_is_served(server: str) -> None:
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and '<script type="module"' in page.text
    script = httpx.get(f"{server}/ui/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    for path in ("../router.py", "..%2Frouter.py", "%2e%2e/router.py", "/etc/passwd", "nope.js"):
        assert httpx.get(f"{server}/ui/static/{path}").status_code == 404, path


def test_data_routes_need_the_token_and_hide_other_namespaces(
    server: str, http: httpx.Client, finished: dict[str, str]
) -> None:
    run_id = finished["artifacts"]
    routes = [
        f"{UI}/runs/{run_id}/graph",
        f"{UI}/runs/{run_id}/states",
        f"{UI}/runs/live?state=FAILED",
        f"{UI}/runs/{run_id}/steps/report",
        f"{UI}/runs/{run_id}/preview?uri=x",
        f"{UI}/runs/{run_id}/mlflow",
        f"{UI}/runs/{run_id}/artifact-lineage?uri=x",
        f"{UI}/compare?run_id={run_id}&run_id={finished['failed-3']}",
    ]
    for route in routes:
        assert httpx.get(f"{server}{route}").status_code == 401, route
        if "/live" in route:
            continue  # a list: another namespace sees its own runs (below)
        other = httpx.get(f"{server}{route}", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        assert other.status_code == 404, route
    other_runs = _first_events(server, OTHER_TOKEN, "state=FAILED", 1)
    assert other_runs == [{"runs": [], "next_page_token": None}]
    assert http.get(f"{UI}/runs/{run_id}/graph").status_code == 200


def test_states_stream_every_step_then_ends(http: httpx.Client, finished: dict[str, str]) -> None:
    events = []
    with http.stream("GET", f"{UI}/runs/{finished['failed-3']}/states") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for block in response.read().decode().split("\n\n"):
            if block:
                name, data = block.split("\n")
                events.append((name.removeprefix("event: "), json.loads(data[6:])))
    (first, body), (last, _) = events
    assert first == "states" and last == "end"
    assert body["run"]["state"] == "FAILED"
    assert body["steps"]["parse-rows"]["state"] == "FAILED"
    assert body["steps"]["never"]["state"] in ("UPSTREAM_FAILED", "CANCELED")


def _first_events(
    server: str, token: str, query: str, count: int, first: threading.Event | None = None
) -> list[dict[str, Any]]:
    """The first ``count`` ``runs`` events of the runs list's stream for ``query``
    (``first`` is set once the first one arrived)."""
    found: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{server}{UI}/runs/live?{query}", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for text in response.iter_text():
            buffer += text
            while "\n\n" in buffer and len(found) < count:
                block, buffer = buffer.split("\n\n", 1)
                name, data = block.split("\n")
                assert name == "event: runs"
                found.append(json.loads(data.removeprefix("data: ")))
                if first is not None:
                    first.set()
            if len(found) == count:
                return found
    return found


def test_the_runs_list_stream_sends_the_page_then_new_runs_and_their_states(
    server: str, client: raypipe.Client, finished: dict[str, str]
) -> None:
    query = "state=FAILED&state=RUNNING&state=PENDING&page_size=2"
    with ThreadPoolExecutor(1) as pool:
        listed = threading.Event()
        watched = pool.submit(_first_events, server, TOKEN, query, 2, listed)
        assert listed.wait(timeout=60)  # the first page is read before the new run exists
        new = client.create_run_from_pipeline_func(pipelines.failing, {"rows": 5}).run_id
        first, second = watched.result(timeout=120)
    assert new not in [r["run_id"] for r in first["runs"]]
    assert finished["failed-3"] in [r["run_id"] for r in first["runs"]]
    assert second["runs"][0]["run_id"] == new  # newest first: the new run joined the page
    client.wait_for_run_completion(new, timeout=120)
    (ended,) = _first_events(server, TOKEN, query, 1)
    assert ended["runs"][0]["run_id"] == new and ended["runs"][0]["state"] == "FAILED"
    assert len(ended["runs"]) == 2 and ended["next_page_token"]  # failed-3 is on page 2
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{server}{UI}/runs/live?page_token=x", headers=auth).status_code == 400


def test_a_step_has_its_attempts_values_and_artifacts(
    http: httpx.Client, finished: dict[str, str]
) -> None:
    failed = http.get(f"{UI}/runs/{finished['failed-4']}/steps/parse-rows").json()
    assert failed["state"] == "FAILED" and failed["error_type"] == "builtins.ValueError"
    assert [a["attempt"] for a in failed["attempts"]] == [1, 2]  # retried once
    for attempt in failed["attempts"]:
        assert "bad input row 4" in attempt["traceback"]
        assert "row 4 looks wrong" in attempt["log_tail"]
    assert failed["logs"] == [1, 2]
    report = http.get(f"{UI}/runs/{finished['artifacts']}/steps/report").json()
    assert report["state"] == "SUCCEEDED" and report["cache_key"]
    assert {a["output"] for a in report["artifacts"]} == {
        "notes",
        "page",
        "scores",
        "quality",
        "table",
        "columns",
    }
    assert {v["name"]: v["value"] for v in report["values"] if v["kind"] == "parameter"} == {
        "Output": 0.93
    }
    missing = http.get(f"{UI}/runs/{finished['artifacts']}/steps/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_previews_of_a_run_and_refusals(http: httpx.Client, finished: dict[str, str]) -> None:
    run_id = finished["artifacts"]
    report = http.get(f"{UI}/runs/{run_id}/steps/report").json()
    uri = {a["output"]: a["uri"] for a in report["artifacts"]}

    def preview(output: str) -> dict[str, Any]:
        found = http.get(f"{UI}/runs/{run_id}/preview", params={"uri": uri[output]})
        assert found.status_code == 200, found.text
        return dict(found.json())

    notes = preview("notes")
    assert "<h1>Model report</h1>" in notes["html"] and "<script>" not in notes["html"]
    assert preview("scores")["rows"] == [["accuracy", 0.93], ["loss", 0.21]]
    assert preview("quality")["matrix"] == [[8, 2], [1, 9]]
    assert preview("table")["total_rows"] == 50
    assert preview("columns")["columns"] == ["k", "v"]
    outside = http.get(f"{UI}/runs/{run_id}/preview", params={"uri": "/etc/passwd"})
    assert outside.status_code == 404


def test_compare_puts_parameters_and_metrics_side_by_side(
    http: httpx.Client, finished: dict[str, str]
) -> None:
    ids = [finished["failed-3"], finished["failed-4"], finished["artifacts"]]
    found = http.get(f"{UI}/compare", params=[("run_id", i) for i in ids]).json()
    assert [r["parameters"] for r in found["runs"]] == [{"rows": 3}, {"rows": 4}, {}]
    assert found["runs"][2]["metrics"] == {
        "Output": 0.93,
        "report.scores.accuracy": 0.93,
        "report.scores.loss": 0.21,
    }
    one = http.get(f"{UI}/compare", params={"run_id": ids[0]})
    assert one.status_code == 400 and "run_id" in one.json()["error"]


def test_an_artifacts_lineage_names_the_step_that_made_it(
    http: httpx.Client, finished: dict[str, str]
) -> None:
    run_id = finished["artifacts"]
    report = http.get(f"{UI}/runs/{run_id}/steps/report").json()
    uri = next(a["uri"] for a in report["artifacts"] if a["output"] == "table")
    found = http.get(f"{UI}/runs/{run_id}/artifact-lineage", params={"uri": uri}).json()
    assert {(r["depth"], r["task"]) for r in found["upstream"]} == {(0, "report")}
    assert found["downstream"] == []


def test_mlflow_links_need_the_ui_url_and_name_the_run_and_its_tracked_steps(
    http: httpx.Client, finished: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = finished["artifacts"]
    assert http.get(f"{UI}/runs/{run_id}/mlflow").json() == {"run_url": None, "steps": {}}
    raypipe.tracking.flush()
    monkeypatch.setenv("RAYPIPE_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    links = http.get(f"{UI}/runs/{run_id}/mlflow").json()
    pattern = r"http://mlflow\.example:5000/#/experiments/\w+/runs/\w+"
    assert re.fullmatch(pattern, links["run_url"])
    assert re.fullmatch(pattern, links["steps"]["report"])  # it wrote metrics: tracked
    ids = [finished["failed-3"], run_id]
    compare = http.get(f"{UI}/compare", params=[("run_id", i) for i in ids]).json()
    assert compare["mlflow_compare_url"].startswith("http://mlflow.example:5000/#/compare-runs?")
