"""The UI's own routes against the real service: the page and assets without a token and
without traversal, every data route behind the token and the namespace, live step states
as server-sent events (a silent step's start included, and the steps of a run without
lineage), the live pipelines, experiments and recurring-runs lists, step details,
previews, comparisons and an artifact's lineage."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
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


def _states_until(
    http: httpx.Client, run_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The run's state and every step's, gathered from its states stream until ``done`` of
    them holds (or the stream ended)."""
    seen: dict[str, Any] = {"run": None, "steps": {}}
    with http.stream("GET", f"{UI}/runs/{run_id}/states", timeout=120) as response:
        buffer = ""
        for text in response.iter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                name, data = block.split("\n")
                if name == "event: end":
                    return seen
                body = json.loads(data.removeprefix("data: "))
                seen["run"] = body["run"]
                seen["steps"].update(body["steps"])
                if done(seen):
                    return seen
    return seen


def test_a_silent_step_is_running_with_its_start_and_node_then_succeeded(
    http: httpx.Client, client: raypipe.Client, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    run_id = client.create_run_from_pipeline_func(pipelines.silent, {"gates": str(gates)}).run_id
    running = _states_until(
        http, run_id, lambda seen: seen["steps"].get("gate", {}).get("state") == "RUNNING"
    )
    assert running["steps"]["gate"]["state"] == "RUNNING", running
    step = http.get(f"{UI}/runs/{run_id}/steps/gate").json()
    assert step["state"] == "RUNNING" and step["logs"] == []  # it printed nothing
    assert step["start_time"] and step["node_ip"] and step["end_time"] is None
    assert [(a["attempt"], a["end_time"]) for a in step["attempts"]] == [(1, None)]
    (gates / "only").touch()
    ended = _states_until(http, run_id, lambda seen: False)  # to the stream's end
    assert ended["run"]["state"] == "SUCCEEDED"
    assert ended["steps"]["gate"]["state"] == "SUCCEEDED"


def test_a_run_without_lineage_shows_how_each_step_went(
    http: httpx.Client, client: raypipe.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raypipe.runtime.config import RuntimeConfig
    from raypipe.tracking.lineage.query import executions

    monkeypatch.setenv("RAYPIPE_TRACKING", "0")  # the service's runs are not tracked
    run_id = client.create_run_from_pipeline_func(pipelines.failing, {"rows": 9}).run_id
    client.wait_for_run_completion(run_id, timeout=120)
    assert executions(run_id, root=RuntimeConfig.from_env().lineage_root) == []  # no lineage
    ended = _states_until(http, run_id, lambda seen: False)
    assert ended["run"]["state"] == "FAILED"
    assert ended["steps"]["parse-rows"]["state"] == "FAILED"
    assert ended["steps"]["never"]["state"] in ("UPSTREAM_FAILED", "CANCELED")
    step = http.get(f"{UI}/runs/{run_id}/steps/parse-rows").json()
    assert step["state"] == "FAILED" and step["error_type"] == "builtins.ValueError"
    assert step["start_time"] and step["end_time"] and step["node_ip"]
    assert [a["attempt"] for a in step["attempts"]] == [1, 2]
    assert all("bad input row 9" in a["traceback"] for a in step["attempts"])
    assert step["logs"] == [1, 2]


def _event_until(
    server: str,
    path: str,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    opened: threading.Event | None = None,
) -> dict[str, Any]:
    """The first ``name`` event of the stream at ``path`` for which ``done`` holds
    (``opened`` is set once the first event arrived)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", f"{server}{path}", headers=headers, timeout=120) as response:
        assert response.status_code == 200, response.read()
        buffer = ""
        for text in response.iter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                event, data = block.split("\n")
                assert event == f"event: {name}", event
                body = dict(json.loads(data.removeprefix("data: ")))
                if opened is not None:
                    opened.set()
                if done(body):
                    return body
    raise AssertionError(f"{path} ended without the event looked for")


def _after(
    server: str,
    path: str,
    name: str,
    done: Callable[[dict[str, Any]], bool],
    act: Callable[[], Any],
) -> dict[str, Any]:
    """The event of ``path``'s stream that shows what ``act()`` (called once the stream
    sent its first event) changed."""
    with ThreadPoolExecutor(1) as pool:
        opened = threading.Event()
        watched = pool.submit(_event_until, server, path, name, done, opened)
        assert opened.wait(timeout=60)
        act()
        return watched.result(timeout=120)


def test_the_pipelines_list_stream_shows_a_pipeline_uploaded_meanwhile(
    server: str, client: raypipe.Client
) -> None:
    first = _event_until(server, f"{UI}/pipelines/live", "pipelines", lambda body: True)
    assert "ui-silent" not in [p["display_name"] for p in first["pipelines"]]
    found = _after(
        server,
        f"{UI}/pipelines/live",
        "pipelines",
        lambda body: "ui-silent" in [p["display_name"] for p in body["pipelines"]],
        lambda: client.upload_pipeline_from_pipeline_func(pipelines.silent),
    )
    names = [p["display_name"] for p in found["pipelines"]]
    assert names == sorted(names)  # by name


def test_the_experiments_stream_counts_each_experiments_runs_as_they_come(
    server: str, client: raypipe.Client
) -> None:
    experiment = client.create_experiment("live-counts").experiment_id

    def counts(body: dict[str, Any]) -> tuple[int, int] | None:
        found = [e for e in body["experiments"] if e["experiment_id"] == experiment]
        return (found[0]["runs"], found[0]["active_runs"]) if found else None

    path = f"{UI}/experiments/live"
    first = _event_until(server, path, "experiments", lambda body: True)
    assert counts(first) == (0, 0)
    started: list[str] = []
    one = _after(
        server,
        path,
        "experiments",
        lambda body: (counts(body) or (0, 0))[0] == 1,
        lambda: started.append(
            client.create_run_from_pipeline_func(
                pipelines.failing, {"rows": 11}, experiment_name="live-counts"
            ).run_id
        ),
    )
    assert counts(one) in ((1, 1), (1, 0))  # active until it ended
    client.wait_for_run_completion(started[0], timeout=120)
    ended = _event_until(server, path, "experiments", lambda body: counts(body) == (1, 0))
    assert ended["experiments"][0]["display_name"] <= ended["experiments"][-1]["display_name"]
    archived = _event_until(
        server, f"{path}?storage_state=ARCHIVED", "experiments", lambda body: True
    )
    assert counts(archived) is None


def test_the_recurring_runs_stream_follows_status_and_next_tick(
    server: str, client: raypipe.Client
) -> None:
    uploaded = client.upload_pipeline_from_pipeline_func(pipelines.stepwise, "live-recurring")
    made = client.create_recurring_run(
        None,
        "live hourly",
        interval_second=3600,
        pipeline_id=uploaded.pipeline_id,
        params={"gates": "/nonexistent"},
        start_time=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    recurring = made.recurring_run_id

    def view(body: dict[str, Any]) -> dict[str, Any] | None:
        found = [r for r in body["recurringRuns"] if r["recurring_run_id"] == recurring]
        return found[0] if found else None

    path = f"{UI}/recurringruns/live"
    first = view(_event_until(server, path, "recurringRuns", lambda body: True))
    assert first is not None and first["status"] == "ENABLED"
    assert first["runs"] == 0 and first["last_run"] is None
    assert first["next_tick_at"] is not None  # the start time: nothing fired yet
    disabled = _after(
        server,
        path,
        "recurringRuns",
        lambda body: (view(body) or {}).get("status") == "DISABLED",
        lambda: client.disable_recurring_run(recurring),
    )
    assert (view(disabled) or {})["next_tick_at"] is None
    client.delete_recurring_run(recurring)
