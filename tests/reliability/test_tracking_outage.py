"""Tracking outage: the MLflow tracking server is killed mid-run and started again.

A real ``mlflow server`` (SQLite backend, a free port; the session's, tests/conftest.py)
takes the run's records through raypipe's default tracking (MLflow and lineage). Once the
pipeline's MLflow run exists, the server is SIGKILLed while a step waits; the run must
still finish, with a ``RuntimeWarning`` saying what is not logged yet. When the server is
back, ``raypipe.tracking.flush`` writes the missed records: every step's MLflow run FINISHED
with its metric, the parent ended; lineage (which never depended on MLflow) is complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import raypipe
import raypipe.tracking
from tests.mlflow_server import MlflowServer
from tests.reliability.pipelines import outage

pytestmark = pytest.mark.slow

_WAIT_S = 60.0


def test_a_run_outlives_an_mlflow_outage_and_its_records_are_written_when_it_is_back(
    tmp_path: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    gate = tmp_path / "gate"
    handle = raypipe.submit(outage, {"gate": str(gate)}, tracking=True, run_name="outage")
    assert raypipe.tracking.flush(timeout=_WAIT_S)  # the parent run and its params are in
    mlflow_server.stop()  # killed while the second step waits
    try:
        with pytest.warns(RuntimeWarning) as caught:
            gate.touch()
            result = handle.wait(progress=False)
            assert not raypipe.tracking.flush(timeout=0.5)  # records wait for the server
        assert result.ok, result.error
        assert result.output == 1.5
        messages = [str(w.message) for w in caught]
        assert any("'outage'" in m and "not logged yet" in m for m in messages), messages
    finally:
        mlflow_server.start()
    started = time.monotonic()
    assert raypipe.tracking.flush(timeout=_WAIT_S)
    print(f"missed records written {time.monotonic() - started:.1f} s after the restart")

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("outage")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`raypipe.run_id` = '{result.run_id}'"
    )
    parents = [r for r in runs if "raypipe.task" not in r.data.tags]
    assert len(parents) == 1  # not created twice by the retries
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["raypipe.status"] == "SUCCEEDED"
    assert parents[0].data.params == {"gate": str(gate)}
    steps = {r.data.tags["raypipe.task"]: r for r in runs if "raypipe.task" in r.data.tags}
    assert {t: r.info.status for t, r in steps.items()} == {
        "measured": "FINISHED",
        "measured-2": "FINISHED",
        "measured-3": "FINISHED",
    }
    assert {t: r.data.metrics["Output"] for t, r in steps.items()} == {
        "measured": 0.5,
        "measured-2": 1.0,
        "measured-3": 1.5,
    }

    _, rows = raypipe.lineage.sql(
        "SELECT task, state FROM executions WHERE run_id = ? ORDER BY task", [result.run_id]
    )
    assert rows == [
        ("measured", "SUCCEEDED"),
        ("measured-2", "SUCCEEDED"),
        ("measured-3", "SUCCEEDED"),
    ]
    (status,) = raypipe.lineage.sql("SELECT status FROM runs WHERE run_id = ?", [result.run_id])[1]
    assert status == ("SUCCEEDED",)
