"""MLflow tracking against real MLflow: a SQLite store, a real ``mlflow server``, an outage.

The server is the session's ``mlflow_server`` (tests/conftest.py: started once, it takes
5-25 s); the outage test stops it and starts it again on the same port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

import raypipe
from raypipe import dsl
from raypipe.dsl import HTML, ClassificationMetrics, Markdown, Metrics, Output
from raypipe.tracking import MlflowTracker, find_mlflow_run, flush, mlflow_fields
from tests.mlflow_server import MlflowServer, free_port

# MLflow's SQL store imports SQLAlchemy features SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


# -- pipelines -------------------------------------------------------------------------


@dsl.component
def train(lr: float, epochs: int, config: dict) -> float:
    loss = 1.0
    for epoch in range(epochs):
        loss *= 1 - lr
        raypipe.log_metric("loss", loss, step=epoch)
    return round(1 - loss, 4)


@dsl.component
def report(accuracy: float, page: Output[Markdown], scores: Output[Metrics]) -> None:
    with open(page.path, "w") as f:
        f.write(f"# Accuracy\n\n{accuracy}\n")
    scores.log_metric("accuracy", accuracy)


@dsl.component
def confusion(matrix: Output[ClassificationMetrics]) -> None:
    matrix.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])


@dsl.component
def plain(x: int) -> int:
    return x + 1


@dsl.component
def label(accuracy: float) -> str:
    return "good" if accuracy > 0.5 else "poor"


@dsl.component(track=True)
def marked(x: int) -> str:
    return f"x={x}"


class Outcome(NamedTuple):
    accuracy: float
    verdict: str


@dsl.pipeline(name="churn-model")
def churn_model(
    lr: float,
    epochs: int = 4,
    config: dict = {"opt": {"name": "adam", "betas": [0.9, 0.99]}},  # noqa: B006
    note: str = "",
) -> Outcome:
    t = train(lr=lr, epochs=epochs, config=config)
    report(accuracy=t.output)
    confusion()
    plain(x=epochs)
    marked(x=epochs)
    verdict = label(accuracy=t.output)
    return Outcome(accuracy=t.output, verdict=verdict.output)


@dsl.pipeline(name="one-marked")
def one_marked(x: int = 1) -> str:
    return marked(x=x).output


@dsl.component(track=True)
def explode(x: int) -> int:
    raise ValueError(f"bad x {x}")


@dsl.pipeline(name="exploding")
def exploding(x: int = 1) -> int:
    return explode(x=x).output


@dsl.pipeline(name="wide-loop")
def wide_loop(n: int = 200) -> None:
    with dsl.ParallelFor(list(range(200))) as item:
        plain(x=item)


@dsl.component(track=True)
def wait_for(flag: str) -> float:
    deadline = time.monotonic() + 60
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.05)
    raypipe.log_metric("waited", 1.0)
    return 1.0


@dsl.pipeline(name="waiting")
def waiting(flag: str) -> float:
    return wait_for(flag=flag).output


@dsl.component
def big_page(page: Output[HTML]) -> None:
    with open(page.path, "w") as f:
        f.write("<p>" + "x" * (6 * 1024 * 1024) + "</p>")


@dsl.pipeline(name="big-page")
def big_page_pipeline() -> None:
    big_page()


# -- helpers ---------------------------------------------------------------------------


def sqlite_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def children(client: MlflowClient, parent: Run) -> dict[str, Run]:
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    return {run.info.run_name: run for run in runs}


def parent_run(run_id: str, uri: str) -> Run:
    found = find_mlflow_run(run_id, tracking_uri=uri)
    assert found is not None, f"no MLflow run for raypipe run {run_id}"
    return found


# -- a local SQLite store --------------------------------------------------------------


def test_run_is_logged_to_sqlite_with_flattened_params_tags_and_output_metrics(
    raypipe_home: Path,
) -> None:
    uri = sqlite_uri(raypipe_home)
    tracker = MlflowTracker(uri, experiment="churn")
    long_note = "n" * 7000
    result = raypipe.run(
        churn_model,
        {"lr": 0.5, "note": long_note},
        run_name="churn-lr-0.5",
        experiment="churn",
        tracking=False,
        observers=[tracker],
    )
    assert result.ok
    client = MlflowClient(uri)
    # for a local store, the run is in MLflow when raypipe.run returns
    parent = parent_run(result.run_id, uri)
    assert tracker.mlflow_run_ids[result.run_id] == parent.info.run_id
    assert client.get_experiment(parent.info.experiment_id).name == "churn"
    assert parent.info.run_name == "churn-lr-0.5"
    assert parent.info.status == "FINISHED"
    params = parent.data.params
    assert params["lr"] == "0.5" and params["epochs"] == "4"
    assert params["config.opt.name"] == "adam"
    assert params["config.opt.betas.0"] == "0.9" and params["config.opt.betas.1"] == "0.99"
    assert params["note"] == "n" * mlflow_fields.MAX_PARAM_LENGTH
    assert "note (7000 characters)" in parent.data.tags["raypipe.truncated_params"]
    tags = parent.data.tags
    assert tags["raypipe.run_id"] == result.run_id
    assert tags["raypipe.pipeline"] == "churn-model"
    assert len(tags["raypipe.spec_digest"]) == 64
    assert tags["raypipe.status"] == "SUCCEEDED"
    assert tags["raypipe.steps"] == "6" and tags["raypipe.steps.SUCCEEDED"] == "6"
    assert tags["raypipe.output.verdict"] == "good"
    assert parent.data.metrics == {"accuracy": result.outputs["accuracy"]}

    steps = children(client, parent)
    # plain and label log nothing to compare: lineage has them, MLflow does not
    assert set(steps) == {"train", "report", "confusion", "marked"}
    trained = steps["train"]
    assert trained.info.status == "FINISHED"
    assert trained.data.params["lr"] == "0.5"
    assert trained.data.params["config.opt.betas.1"] == "0.99"
    assert trained.data.tags["raypipe.task"] == "train"
    assert trained.data.tags["raypipe.attempt"] == "1"
    assert trained.data.tags["raypipe.state"] == "SUCCEEDED"
    assert trained.data.tags["raypipe.cache_hit"] == "false"
    assert trained.data.tags["raypipe.run_id"] == result.run_id
    curve = client.get_metric_history(trained.info.run_id, "loss")
    assert [(m.step, round(m.value, 4)) for m in curve] == [
        (0, 0.5),
        (1, 0.25),
        (2, 0.125),
        (3, 0.0625),
    ]
    assert trained.data.metrics["Output"] == result.outputs["accuracy"]

    reported = steps["report"]
    assert reported.data.metrics == {"accuracy": result.outputs["accuracy"]}
    files = {f.path for f in client.list_artifacts(reported.info.run_id)}
    assert files == {"page.md", "scores.json"}
    page = Path(client.download_artifacts(reported.info.run_id, "page.md", str(raypipe_home)))
    assert page.read_text().startswith("# Accuracy")
    matrix = steps["confusion"]
    assert {f.path for f in client.list_artifacts(matrix.info.run_id)} == {"matrix.json"}
    assert steps["marked"].data.params == {"x": "4"}
    # artifacts of a SQLite store live next to it, not in the working directory
    assert (raypipe_home / "mlartifacts" / "churn").is_dir()


def test_mlflows_own_default_experiment_keeps_artifacts_next_to_a_new_sqlite_store(
    raypipe_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's Default experiment is MLflow's built-in one (id 0): on a store MLflow
    made, its artifacts went to ``./mlruns/0`` in the working directory."""
    uri = sqlite_uri(raypipe_home)
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    tracker = MlflowTracker(uri, experiment="Default")
    result = raypipe.run(reporting, tracking=False, observers=[tracker])
    assert result.ok
    client = MlflowClient(uri)
    default = client.get_experiment_by_name("Default")
    assert default is not None and default.experiment_id == "0"
    assert Path(default.artifact_location) == raypipe_home / "mlartifacts" / "0"
    reported = children(client, parent_run(result.run_id, uri))["report"]
    assert {f.path for f in client.list_artifacts(reported.info.run_id)} == {
        "page.md",
        "scores.json",
    }
    assert list(workdir.iterdir()) == []  # no ./mlruns


@dsl.pipeline
def reporting() -> None:
    report(accuracy=0.5)


def test_default_experiment_is_the_pipeline_name_and_plain_loop_steps_get_no_mlflow_runs(
    raypipe_home: Path,
) -> None:
    uri = sqlite_uri(raypipe_home)
    result = raypipe.run(wide_loop, tracking=False, observers=[MlflowTracker(uri)])
    assert result.ok
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("wide-loop")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the pipeline run only
    tags = runs[0].data.tags
    assert tags["raypipe.steps"] == "200" and tags["raypipe.steps.SUCCEEDED"] == "200"
    assert runs[0].data.params == {"n": "200"}


def test_failed_run_and_failed_tracked_step_are_failed_in_mlflow(raypipe_home: Path) -> None:
    uri = sqlite_uri(raypipe_home)
    result = raypipe.run(exploding, tracking=False, observers=[MlflowTracker(uri)])
    assert result.status == "FAILED"
    client = MlflowClient(uri)
    parent = parent_run(result.run_id, uri)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["raypipe.status"] == "FAILED"
    assert "ValueError: bad x 1" in parent.data.tags["raypipe.error"]
    step = children(client, parent)["explode"]
    assert step.info.status == "FAILED"
    assert step.data.tags["raypipe.state"] == "FAILED"
    assert "bad x 1" in step.data.tags["raypipe.error"]


def test_one_tracker_serves_concurrent_runs(raypipe_home: Path, tmp_path: Path) -> None:
    uri = sqlite_uri(raypipe_home)
    tracker = MlflowTracker(uri, experiment="shared")
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    first = raypipe.submit(waiting, {"flag": str(slow)}, tracking=False, observers=[tracker])
    second = raypipe.submit(waiting, {"flag": str(fast)}, tracking=False, observers=[tracker])
    fast.touch()
    assert second.wait(progress=False).ok
    # the second run's end does not end the first one in MLflow
    assert parent_run(first.run_id, uri).info.status == "RUNNING"
    slow.touch()
    assert first.wait(progress=False).ok
    for handle in (first, second):
        assert parent_run(handle.run_id, uri).info.status == "FINISHED"


def test_canceled_run_is_killed_in_mlflow(raypipe_home: Path, tmp_path: Path) -> None:
    uri = sqlite_uri(raypipe_home)
    handle = raypipe.submit(
        waiting, {"flag": str(tmp_path / "never")}, tracking=False, observers=[MlflowTracker(uri)]
    )
    handle.cancel()
    result = handle.wait(progress=False)
    assert result.status == "CANCELED"
    parent = parent_run(result.run_id, uri)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["raypipe.status"] == "CANCELED"


def test_artifact_over_the_size_limit_is_not_copied_and_a_tag_says_so(raypipe_home: Path) -> None:
    uri = sqlite_uri(raypipe_home)
    result = raypipe.run(big_page_pipeline, tracking=False, observers=[MlflowTracker(uri)])
    assert result.ok
    client = MlflowClient(uri)
    step = children(client, parent_run(result.run_id, uri))["big-page"]
    assert client.list_artifacts(step.info.run_id) == []
    note = step.data.tags["raypipe.artifact_skipped.page"]
    assert note.startswith(f"{6 * 1024 * 1024 + 7} bytes")
    assert step.data.tags["raypipe.artifact.page"] == result.tasks["big-page"].outputs["page"].uri


def test_second_identical_run_tags_its_cache_hits(raypipe_home: Path) -> None:
    uri = sqlite_uri(raypipe_home)
    for _ in range(2):
        result = raypipe.run(one_marked, tracking=False, observers=[MlflowTracker(uri)])
        assert result.ok
    step = children(MlflowClient(uri), parent_run(result.run_id, uri))["marked"]
    hit = result.tasks["marked"].state == "CACHED"
    assert step.data.tags["raypipe.cache_hit"] == ("true" if hit else "false")
    assert step.info.status == "FINISHED"


def test_deleted_experiment_warns_what_was_not_logged_and_the_run_succeeds(
    raypipe_home: Path,
) -> None:
    uri = sqlite_uri(raypipe_home)
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.warns(RuntimeWarning, match="experiment 'gone' is deleted"):
        result = raypipe.run(
            exploding, {"x": 2}, tracking=False, observers=[MlflowTracker(uri, experiment="gone")]
        )
        assert flush(timeout=30)
    assert result.status == "FAILED"  # the pipeline's own failure, not tracking's


def test_sweep_example_logs_two_runs_to_compare(raypipe_home: Path) -> None:
    from examples import sweep_mlflow

    uri = sqlite_uri(raypipe_home)
    results = sweep_mlflow.run_sweep(tracking=False, observers=[MlflowTracker(uri)])
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("lr-sweep")
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`raypipe.pipeline` = 'lr-sweep'"
    )
    parents = [run for run in parents if "mlflow.parentRunId" not in run.data.tags]
    assert sorted(run.data.params["lr"] for run in parents) == ["0.05", "0.3"]
    for result in results:
        fitted = children(client, parent_run(result.run_id, uri))["fit"]
        curve = client.get_metric_history(fitted.info.run_id, "loss")
        assert [m.step for m in curve] == list(range(20))
        assert curve[-1].value < curve[0].value
        assert {f.path for f in client.list_artifacts(fitted.info.run_id)} == {
            "notes.md",
            "curve.json",
        }


def test_field_limits_match_the_installed_mlflow() -> None:
    from mlflow.utils import validation

    assert mlflow_fields.MAX_PARAM_LENGTH == validation.MAX_PARAM_VAL_LENGTH
    assert mlflow_fields.MAX_TAG_LENGTH == validation.MAX_TAG_VAL_LENGTH
    assert mlflow_fields.MAX_KEY_LENGTH == validation.MAX_ENTITY_KEY_LENGTH
    for key in ["acc@1", "a//b", "./x", "../y", "val/acc", "", "/abs", "x" * 300]:
        safe = mlflow_fields.mlflow_key(key)
        validation._validate_metric_name(safe)  # raises if MLflow would refuse it
        assert len(safe) <= validation.MAX_ENTITY_KEY_LENGTH


# -- a real tracking server ------------------------------------------------------------


def test_run_is_logged_to_an_mlflow_server_with_artifacts(
    raypipe_home: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    tracker = MlflowTracker(mlflow_server.url)
    result = raypipe.run(
        churn_model, {"lr": 0.3}, experiment="served", tracking=False, observers=[tracker]
    )
    assert result.ok
    assert flush(timeout=60)
    client = MlflowClient(mlflow_server.url)
    parent = find_mlflow_run(result.run_id, experiment="served")  # URI from the environment
    assert parent is not None and parent.info.status == "FINISHED"
    assert parent.data.params["config.opt.name"] == "adam"
    steps = children(client, parent)
    assert set(steps) == {"train", "report", "confusion", "marked"}
    curve = client.get_metric_history(steps["train"].info.run_id, "loss")
    assert [m.step for m in curve] == [0, 1, 2, 3]
    files = {f.path for f in client.list_artifacts(steps["report"].info.run_id)}
    assert files == {"page.md", "scores.json"}
    # proxied artifacts land under the server's --artifacts-destination
    assert list(mlflow_server.artifacts.rglob("page.md"))


def test_server_outage_warns_keeps_records_and_writes_them_when_it_is_back(
    raypipe_home: Path, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    uri = mlflow_server.url
    flag, ready = tmp_path / "go", tmp_path / "ready"
    ready.touch()
    first = MlflowTracker(uri, experiment="outage")
    handle = raypipe.submit(
        waiting, {"flag": str(flag)}, tracking=False, observers=[first], run_name="mid-run"
    )
    deadline = time.monotonic() + 60
    while handle.run_id not in first.mlflow_run_ids:  # the pipeline run is created early
        assert time.monotonic() < deadline, "the MLflow run was not created"
        time.sleep(0.05)
    assert flush(timeout=30)  # its params too: the server fails between two writes
    mlflow_server.stop()  # the server fails mid-run
    try:
        with pytest.warns(RuntimeWarning) as caught:
            flag.touch()
            during = handle.wait(progress=False)
            after = raypipe.run(
                waiting,
                {"flag": str(ready)},
                tracking=False,
                observers=[MlflowTracker(uri, experiment="outage")],
                run_name="while-down",
            )
            assert not flush(timeout=0.5)
        assert during.ok and after.ok  # tracking never fails a run
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("'mid-run'" in m and "not logged yet" in m for m in messages), messages
        assert any("'while-down'" in m and "the run itself" in m for m in messages), messages
        assert all(uri in m for m in messages if "not logged yet" in m)
    finally:
        mlflow_server.start()
    assert flush(timeout=60)
    client = MlflowClient(uri)
    for result, path in ((during, flag), (after, ready)):
        parent = parent_run(result.run_id, uri)
        assert parent.info.status == "FINISHED"
        assert parent.data.params == {"flag": str(path)}
        step = children(client, parent)["wait-for"]
        assert step.data.metrics == {"waited": 1.0, "Output": 1.0}
        assert step.info.status == "FINISHED"
    # the record created before the outage was not created twice
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string="attributes.run_name = 'mid-run'"
    )
    assert len(runs) == 1


def test_records_left_at_exit_are_named_in_a_warning(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        os.environ["RAYPIPE_MLFLOW_EXIT_FLUSH"] = "0.5"
        from raypipe.tracking.mlflow_writer import CreateRun, lane_for
        lane = lane_for("http://127.0.0.1:{free_port()}")
        lane.open_run("r1", "run 'doomed' (r1)")
        lane.submit([CreateRun("r1", "", "exp", "doomed", 0, {{}})])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "not logged to MLflow: run 'doomed' (r1): the run itself" in done.stderr
