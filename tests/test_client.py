"""raypipe.Client and the service commands of the CLI, against a real server: the FastAPI
app under uvicorn on a free port, a SQLite store, bearer tokens, and the executor running
runs on this session's Ray."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import uvicorn

import raypipe
from raypipe import dsl
from raypipe.api.app import create_app
from raypipe.api.auth import parse_tokens
from raypipe.api.executor import RunExecutor
from raypipe.api.store import Store
from raypipe.cli import main
from tests.pipelines import addition

KFP_ADD = Path(__file__).parent / "data" / "kfp" / "pipelines" / "add_numbers.yaml"
TOKEN, OTHER_TOKEN = "team-token", "other-token"
_WAIT_S = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on a free port, with two tokens (namespaces ``team`` and ``other``)."""
    root = tmp_path_factory.mktemp("client")
    with pytest.MonkeyPatch.context() as env, Store(f"sqlite:///{root / 'service.db'}") as store:
        env.setenv("RAYPIPE_HOME", str(root / "home"))  # each test sets its own as well
        app = create_app(
            store,
            executor=RunExecutor(store, poll_seconds=0.1),
            tokens=parse_tokens(f"{TOKEN}:team,{OTHER_TOKEN}:other"),
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        served = uvicorn.Server(config)
        thread = threading.Thread(target=served.run, name="raypipe-test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + _WAIT_S
        while not served.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            served.should_exit = True
            thread.join(timeout=30)


@pytest.fixture
def client(server: str) -> Iterator[raypipe.Client]:
    with raypipe.Client(server, token=TOKEN) as opened:
        yield opened


def _name(prefix: str) -> str:
    """A display name no other test uses (the server lives for the whole module)."""
    return f"{prefix}-{time.monotonic_ns()}"


@dsl.component
def wait_for(path: str) -> str:
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.05)
    return path


@dsl.pipeline(name="gated")
def gated(path: str) -> str:
    return wait_for(path=path).output


def test_experiments_are_created_found_by_name_archived_and_deleted(
    client: raypipe.Client,
) -> None:
    name = _name("churn")
    made = client.create_experiment(name, description="weekly churn models")
    assert made.display_name == name and made.storage_state == "AVAILABLE"
    assert client.create_experiment(name).experiment_id == made.experiment_id  # as kfp does
    assert client.get_experiment(experiment_name=name).experiment_id == made.experiment_id
    assert client.get_experiment(made.experiment_id).description == "weekly churn models"

    kfp_filter = json.dumps(
        {"predicates": [{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": name}]}
    )
    listed = client.list_experiments(filter=kfp_filter, sort_by="created_at desc")
    assert [e.experiment_id for e in listed.experiments] == [made.experiment_id]

    assert client.archive_experiment(made.experiment_id).storage_state == "ARCHIVED"
    archived = client.list_experiments(filter={"storage_state": "ARCHIVED"}).experiments
    assert made.experiment_id in [e.experiment_id for e in archived]
    assert client.unarchive_experiment(made.experiment_id).storage_state == "AVAILABLE"
    client.delete_experiment(made.experiment_id)
    with pytest.raises(raypipe.ApiError) as missing:
        client.get_experiment(made.experiment_id)
    assert missing.value.status_code == 404 and made.experiment_id in missing.value.message


def test_raypipe_and_kfp_yaml_upload_as_pipelines_with_versions_and_run(
    client: raypipe.Client, tmp_path: Path
) -> None:
    compiled = tmp_path / "addition.yaml"
    raypipe.compile(addition, compiled)
    name = _name("addition")
    pipeline = client.upload_pipeline(compiled, pipeline_name=name, description="a + b + c")
    assert client.get_pipeline(pipeline.pipeline_id).display_name == name
    assert client.get_pipeline_id(name) == pipeline.pipeline_id
    (v1,) = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert v1.display_name == "v1"
    stored = client.get_pipeline_version(pipeline.pipeline_id, v1.pipeline_version_id)
    assert stored.pipeline_spec is not None and stored.pipeline_spec["name"] == "addition"
    v2 = client.upload_pipeline_version(compiled, "v2", pipeline_name=name)
    assert v2.pipeline_id == pipeline.pipeline_id
    found = client.list_pipelines(filter={"name_contains": name}).pipelines
    assert [p.pipeline_id for p in found] == [pipeline.pipeline_id]

    kfp = client.upload_pipeline(KFP_ADD, pipeline_name=_name("add-numbers"))
    run = client.run_pipeline(None, "kfp", params={"a": 2, "b": 5}, pipeline_id=kfp.pipeline_id)
    assert run.pipeline_version_id is not None  # the pipeline's latest (only) version
    ended = client.wait_for_run_completion(run.run_id, timeout=_WAIT_S, sleep_duration=0.1)
    assert ended.state == "SUCCEEDED", ended.error

    with pytest.raises(raypipe.ApiError) as has_versions:
        client.delete_pipeline(pipeline.pipeline_id)
    assert has_versions.value.status_code == 409
    client.delete_pipeline(pipeline.pipeline_id, cascade=True)
    assert client.get_pipeline_id(name) is None


def test_a_pipeline_function_runs_in_a_named_experiment_and_lists_filter_by_state(
    client: raypipe.Client,
) -> None:
    experiment = _name("nightly")
    result = client.create_run_from_pipeline_func(
        addition, arguments={"a": 1, "b": 2}, run_name="first", experiment_name=experiment
    )
    run = result.wait_for_run_completion(timeout=_WAIT_S)
    assert run.state == "SUCCEEDED", run.error
    assert run.runtime_config.parameters == {"a": 1, "b": 2}
    experiment_id = client.get_experiment(experiment_name=experiment).experiment_id
    assert run.experiment_id == experiment_id

    package = client.create_run_from_pipeline_package(
        KFP_ADD, arguments={"a": 3, "b": 4}, experiment_id=experiment_id
    )
    assert package.wait_for_run_completion(_WAIT_S).state == "SUCCEEDED"

    ours = client.list_runs(experiment_id=experiment_id, sort_by="created_at")
    assert [r.run_id for r in ours.runs] == [result.run_id, package.run_id]
    assert client.list_runs(experiment_id=experiment_id, state="RUNNING").runs == []
    done = client.list_runs(experiment_id=experiment_id, state=["SUCCEEDED", "FAILED"])
    assert len(done.runs) == 2
    paged = client.list_runs(experiment_id=experiment_id, page_size=1, sort_by="created_at")
    assert paged.next_page_token is not None
    rest = client.list_runs(
        paged.next_page_token, 1, sort_by="created_at", experiment_id=experiment_id
    )
    assert [r.run_id for r in rest.runs] == [package.run_id]

    assert client.archive_run(result.run_id).storage_state == "ARCHIVED"
    client.delete_run(result.run_id)
    with pytest.raises(raypipe.ApiError) as gone:
        client.get_run(result.run_id)
    assert gone.value.status_code == 404


def test_waiting_times_out_naming_the_run_then_terminate_and_retry(
    client: raypipe.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    result = client.create_run_from_pipeline_func(
        gated, arguments={"path": str(gate)}, run_name="blocked"
    )
    with pytest.raises(TimeoutError, match=rf"run {result.run_id} \('blocked'\) is still"):
        client.wait_for_run_completion(result.run_id, timeout=0.3, sleep_duration=0.1)

    assert client.terminate_run(result.run_id).state == "CANCELING"
    assert client.wait_for_run_completion(result.run_id, _WAIT_S, 0.1).state == "CANCELED"
    with pytest.raises(raypipe.ApiError) as ended:
        client.terminate_run(result.run_id)
    assert ended.value.status_code == 409 and "already ended CANCELED" in ended.value.message

    gate.touch()
    assert client.retry_run(result.run_id).state in ("PENDING", "RUNNING")
    assert client.wait_for_run_completion(result.run_id, _WAIT_S, 0.1).state == "SUCCEEDED"


def test_refused_requests_raise_api_error_with_the_servers_message(
    client: raypipe.Client, tmp_path: Path
) -> None:
    assert issubclass(raypipe.ApiError, raypipe.RaypipeError)
    with pytest.raises(raypipe.ApiError) as missing:
        client.get_run("nope")
    assert missing.value.status_code == 404
    assert str(missing.value).startswith("GET /apis/v2beta1/runs/nope: 404: ")

    with pytest.raises(raypipe.ApiError) as wrong:
        client.create_run_from_pipeline_func(addition, arguments={"a": "one", "b": 2})
    assert wrong.value.status_code == 400
    assert wrong.value.details[0]["field"] == "a" and "addition.a" in wrong.value.message

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nroot: {}\n")
    name = _name("broken")
    with pytest.raises(raypipe.ApiError) as invalid:
        client.upload_pipeline(broken, pipeline_name=name)
    assert invalid.value.status_code == 400 and "pipeline_spec" in invalid.value.message
    assert client.get_pipeline_id(name) is None  # no pipeline without a version is left

    with pytest.raises(raypipe.ApiError) as bad_sort:
        client.list_runs(sort_by="size")
    assert bad_sort.value.status_code == 400 and "sort_by" in bad_sort.value.message
    with pytest.raises(raypipe.ApiError, match="experiment 'no such' not found"):
        client.get_experiment(experiment_name="no such")
    with pytest.raises(ValueError, match="not supported"):
        client.list_runs(filter='{"predicates": [{"key": "x", "operation": "LESS_THAN"}]}')

    with pytest.raises(raypipe.ApiError) as unreachable:
        raypipe.Client("127.0.0.1:9", timeout=2).list_runs()
    assert unreachable.value.status_code is None
    assert "cannot reach the raypipe service" in unreachable.value.message


def test_tokens_choose_the_namespace_and_none_is_refused(server: str) -> None:
    with raypipe.Client(server) as anonymous:
        assert anonymous.healthz()["status"] == "ok"  # the only route without a token
        with pytest.raises(raypipe.ApiError) as refused:
            anonymous.list_experiments()
    assert refused.value.status_code == 401 and "bearer token" in refused.value.message
    with raypipe.Client(server, token=TOKEN) as team, raypipe.Client(server, OTHER_TOKEN) as other:
        made = team.create_experiment(_name("private"))
        with pytest.raises(raypipe.ApiError) as hidden:
            other.get_experiment(made.experiment_id)
        assert hidden.value.status_code == 404


def test_recurring_runs_start_runs_and_are_enabled_disabled_and_deleted(
    client: raypipe.Client, tmp_path: Path
) -> None:
    experiment_id = client.create_experiment(_name("scheduled")).experiment_id
    compiled = tmp_path / "addition.yaml"
    raypipe.compile(addition, compiled)
    hourly = client.create_recurring_run(
        experiment_id,
        "hourly",
        compiled,
        params={"a": 1, "b": 2},
        interval_second=3600,
        start_time=datetime.now(timezone.utc) - timedelta(seconds=1),  # one tick due now
    )
    assert hourly.status == "ENABLED" and hourly.trigger.periodic_schedule is not None
    assert hourly.trigger.periodic_schedule.interval_second == 3600

    deadline = time.monotonic() + _WAIT_S
    while not (runs := client.list_runs(experiment_id=experiment_id).runs):
        assert time.monotonic() < deadline, "the recurring run started no run"
        time.sleep(0.2)
    (run,) = runs
    assert run.recurring_run_id == hourly.recurring_run_id
    assert client.wait_for_run_completion(run.run_id, _WAIT_S, 0.1).state == "SUCCEEDED"

    assert client.disable_recurring_run(hourly.recurring_run_id).status == "DISABLED"
    assert client.enable_recurring_run(hourly.recurring_run_id).status == "ENABLED"
    nightly = client.create_recurring_run(
        experiment_id,
        "nightly",
        pipeline_id=client.upload_pipeline_from_pipeline_func(addition, _name("a")).pipeline_id,
        params={"a": 1, "b": 2},
        cron_expression="0 0 2 * * *",
        enabled=False,
    )
    assert nightly.status == "DISABLED" and nightly.pipeline_version_id is not None
    assert client.get_recurring_run(nightly.recurring_run_id).display_name == "nightly"
    listed = client.list_recurring_runs(experiment_id=experiment_id, sort_by="name")
    assert [r.display_name for r in listed.recurringRuns] == ["hourly", "nightly"]

    with pytest.raises(raypipe.ApiError) as bad_cron:
        client.create_recurring_run(
            experiment_id, "bad", compiled, {"a": 1, "b": 2}, cron_expression="every day"
        )
    assert bad_cron.value.status_code == 400 and "trigger" in bad_cron.value.message
    with pytest.raises(ValueError, match="exactly one of cron_expression and interval_second"):
        client.create_recurring_run(experiment_id, "neither", compiled)

    for made in (hourly, nightly):
        client.delete_recurring_run(made.recurring_run_id)
    assert client.list_recurring_runs(experiment_id=experiment_id).recurringRuns == []
    assert client.get_run(run.run_id).recurring_run_id is None  # its runs stay


def test_cli_lists_creates_uploads_and_changes_runs(
    server: str,
    client: raypipe.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RAYPIPE_HOST", server)
    monkeypatch.setenv("RAYPIPE_TOKEN", TOKEN)
    experiment = _name("cli")
    assert main(["experiments", "create", experiment]) == 0
    assert f"experiment {experiment!r}: " in capsys.readouterr().out
    assert main(["experiments", "list", "--json"]) == 0
    assert experiment in [e["display_name"] for e in json.loads(capsys.readouterr().out)]

    compiled = tmp_path / "addition.yaml"
    raypipe.compile(addition, compiled)
    pipeline = _name("cli-addition")
    assert main(["pipelines", "upload", str(compiled), "--name", pipeline]) == 0
    assert f"pipeline {pipeline!r}: " in capsys.readouterr().out
    assert main(["pipelines", "list"]) == 0
    assert pipeline in capsys.readouterr().out

    gate = tmp_path / "gate"
    run_id = client.create_run_from_pipeline_func(
        gated, {"path": str(gate)}, run_name="cli-run", experiment_name=experiment
    ).run_id
    experiment_id = client.get_experiment(experiment_name=experiment).experiment_id
    assert main(["runs", "terminate", run_id]) == 0
    assert capsys.readouterr().out == f"run {run_id}: CANCELING\n"
    client.wait_for_run_completion(run_id, _WAIT_S, 0.1)
    assert main(["runs", "list", "--experiment", experiment_id, "--state", "canceled"]) == 0
    table = capsys.readouterr().out
    assert run_id in table and "cli-run" in table and "CANCELED" in table
    assert main(["runs", "list", "--experiment", experiment_id, "--state", "RUNNING"]) == 0
    assert run_id not in capsys.readouterr().out

    gate.touch()
    assert main(["runs", "retry", run_id]) == 0
    assert capsys.readouterr().out.startswith(f"run {run_id}: ")
    client.wait_for_run_completion(run_id, _WAIT_S, 0.1)
    assert main(["runs", "get", run_id]) == 0
    shown = capsys.readouterr().out
    assert "state: SUCCEEDED" in shown and f'parameters: {{"path": "{gate}"}}' in shown
    assert main(["runs", "get", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "SUCCEEDED"

    assert main(["runs", "get", "nope"]) == 2
    assert "404" in capsys.readouterr().err
    monkeypatch.delenv("RAYPIPE_TOKEN")
    assert main(["runs", "list", "--host", server]) == 2
    assert "401" in capsys.readouterr().err
    assert main(["runs", "list", "--token", TOKEN]) == 0  # --token, host from RAYPIPE_HOST
