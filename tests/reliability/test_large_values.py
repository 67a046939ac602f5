"""Large values: a 10,000-item loop and a 50 MB parameter pass between steps; values
larger than the object store spill to disk (see ``test_object_spilling.py``).

Nothing has a 1 MB ceiling: a parameter of 50 MB goes from the driver through two steps
as a plain value; lineage keeps its digest and size instead of the value, and MLflow gets
a truncated param with a tag that says so (a record, not a failure).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from mlflow import MlflowClient

import raypipe
import raypipe.tracking
from raypipe.tracking import find_mlflow_run
from tests.reliability.pipelines import big_parameter, wide_loop

pytestmark = pytest.mark.slow

LOOP_ITEMS = 10_000
PARAMETER_BYTES = 50 * 1024 * 1024


def test_a_10000_item_loop_runs_every_item_and_lineage_has_every_step() -> None:
    result = raypipe.run(wide_loop, {"n": LOOP_ITEMS}, tracking=True)
    assert result.ok, result.error
    assert result.output == sum(range(1, LOOP_ITEMS + 1))
    assert len(result.tasks) == LOOP_ITEMS + 2
    (counts,) = raypipe.lineage.sql(
        "SELECT count(*), count(DISTINCT task), count(*) FILTER (WHERE state = 'SUCCEEDED') "
        "FROM executions WHERE run_id = ?",
        [result.run_id],
    )[1]
    assert counts == (LOOP_ITEMS + 2,) * 3


def test_a_50_mb_parameter_passes_and_is_recorded_by_digest_not_refused() -> None:
    text = "x" * PARAMETER_BYTES
    result = raypipe.run(big_parameter, {"text": text}, tracking=True)
    assert result.ok, result.error
    assert result.output == PARAMETER_BYTES + 1

    # Lineage: the step's input and output by digest and size, not the value.
    digest = hashlib.sha256(json.dumps(text + "!").encode()).hexdigest()
    _, rows = raypipe.lineage.sql(
        "SELECT e.task, v.direction, v.value IS NULL, v.digest, v.size FROM events v "
        "JOIN executions e USING (run_id, execution_id) "
        "WHERE v.run_id = ? AND v.name IN ('text', 'Output') ORDER BY e.task, v.direction",
        [result.run_id],
    )
    assert ("exclaim", "output", True, digest, PARAMETER_BYTES + 3) in rows, rows
    assert ("text-length", "input", True, digest, PARAMETER_BYTES + 3) in rows, rows

    # MLflow: the param is cut to MLflow's limit and a tag says what was cut.
    assert raypipe.tracking.flush(timeout=60)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    parent = find_mlflow_run(result.run_id, tracking_uri=uri)
    assert parent is not None and parent.info.status == "FINISHED"
    assert len(parent.data.params["text"]) < 10_000
    assert f"text ({PARAMETER_BYTES} characters)" in parent.data.tags["raypipe.truncated_params"]
    assert MlflowClient(uri).get_run(parent.info.run_id).info.status == "FINISHED"
