"""The lineage store: real Ray runs write Parquet through LineageWriter, real DuckDB reads it.

The main test runs a pipeline with a loop and conditions (one inside the loop, one after
it) and checks every edge: parameters, artifacts, in-memory objects and collected lists,
each from the producing execution's output to the consuming execution's input.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import raypipe
from raypipe import dsl
from raypipe.cli import main
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.events import InputRecord, RunEnded, RunStarted, StepEnded
from raypipe.runtime.result import (
    ArtifactRecord,
    AttemptRecord,
    RunResult,
    RunStatus,
    TaskResult,
    TaskState,
)
from raypipe.tracking.lineage import (
    TABLES,
    LineageError,
    LineageWriter,
    compact,
    connect,
    downstream,
    executions,
    runs_using,
    upstream,
)
from raypipe.tracking.lineage.compact import merge, merge_tables
from raypipe.tracking.lineage.store import LineageStore
from tests.pipelines import count_files, keep, make_data, scale, to_array
from tests.test_artifacts_remote import S3Server, s3  # noqa: F401  (the S3 fixture)

# Components (module level, as users write them); the shared ones are in tests.pipelines


@dsl.component
def pick_best(scores: list) -> float:
    return float(max(scores))


@dsl.component
def stack(arrays: Any) -> float:
    return float(sum(a.sum() for a in arrays))


@dsl.pipeline(name="lineage-flow")
def flow(rows: int = 4, threshold: float = 10.0) -> float:
    made = make_data(rows=rows)
    with dsl.ParallelFor([1, 2, 3]) as factor:
        s = scale(data=made.outputs["data"], factor=factor)
        arr = to_array(x=s.outputs["Output"])
        with dsl.If(s.outputs["Output"] > threshold):  # 6 (factor 1) is not: skipped
            k = keep(data=s.outputs["out"], total=s.outputs["Output"])
    best = pick_best(scores=dsl.Collected(s.outputs["Output"]))
    pick_best(scores=dsl.Collected(k.output))
    count_files(files=dsl.Collected(s.outputs["out"]))
    total = stack(arrays=dsl.Collected(arr.output))
    with dsl.If(best.output > 1000.0):  # never
        keep(data=made.outputs["data"], total=best.output)
    return total.output


@dsl.component(retries=1)
def explode(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


@dsl.component
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@dsl.component
def plus_one(x: float) -> float:
    return x + 1


@dsl.pipeline(name="lineage-failing")
def failing(x: int = 7) -> None:
    boom = explode(x=x)
    plus_one(x=boom.output)  # UPSTREAM_FAILED
    slow = nap(seconds=1.0)  # running when explode fails: finishes
    plus_one(x=slow.output)  # not started when the run stops: CANCELED


@dsl.pipeline(name="lineage-slow")
def slow_pipeline(seconds: float = 2.5) -> float:
    first = plus_one(x=1.0)
    return nap(seconds=seconds).after(first).output


# Helpers ------------------------------------------------------------------------------


def _run(pipeline: Any, root: Path, arguments: dict[str, Any] | None = None) -> RunResult:
    return raypipe.run(
        pipeline, arguments or {}, tracking=False, observers=[LineageWriter(str(root))]
    )


def _task(execution_id: str | None) -> str | None:
    """The task name of an execution id ("{run_id}/{task}")."""
    return None if execution_id is None else execution_id.partition("/")[2]


def _table(root: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    with connect(str(root)) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    """One run of the loop-and-condition pipeline, shared by the read-only tests."""
    home = tmp_path_factory.mktemp("flow")
    previous = os.environ.get("RAYPIPE_HOME")
    os.environ["RAYPIPE_HOME"] = str(home)  # this fixture outlives the per-test home
    try:
        result = _run(flow, home / "lineage")
    finally:
        if previous is not None:
            os.environ["RAYPIPE_HOME"] = previous
    assert result.status == "SUCCEEDED", result.error
    return home / "lineage", result


# The loop-and-condition pipeline: every execution and every edge ----------------------

EXPECTED_STATES = {
    "make-data": "SUCCEEDED",
    **{f"for-loop-1[{i}]/scale": "SUCCEEDED" for i in range(3)},
    **{f"for-loop-1[{i}]/to-array": "SUCCEEDED" for i in range(3)},
    "for-loop-1[0]/condition-2/keep": "SKIPPED",
    "for-loop-1[1]/condition-2/keep": "SUCCEEDED",
    "for-loop-1[2]/condition-2/keep": "SUCCEEDED",
    "pick-best": "SUCCEEDED",
    "pick-best-2": "SUCCEEDED",
    "count-files": "SUCCEEDED",
    "stack": "SUCCEEDED",
    "condition-3/keep-2": "SKIPPED",
}

# (producer task, output, consumer task, input, position in a collected list, kind)
EXPECTED_EDGES = {
    *(("make-data", "data", f"for-loop-1[{i}]/scale", "data", None, "artifact") for i in range(3)),
    *(
        (f"for-loop-1[{i}]/scale", "Output", f"for-loop-1[{i}]/to-array", "x", None, "parameter")
        for i in range(3)
    ),
    *(
        (
            f"for-loop-1[{i}]/scale",
            "out",
            f"for-loop-1[{i}]/condition-2/keep",
            "data",
            None,
            "artifact",
        )
        for i in (1, 2)
    ),
    *(
        (
            f"for-loop-1[{i}]/scale",
            "Output",
            f"for-loop-1[{i}]/condition-2/keep",
            "total",
            None,
            "parameter",
        )
        for i in (1, 2)
    ),
    *(
        (f"for-loop-1[{i}]/scale", "Output", "pick-best", "scores", i, "parameter")
        for i in range(3)
    ),
    # the skipped iteration is left out of the collected list: positions 0 and 1
    ("for-loop-1[1]/condition-2/keep", "Output", "pick-best-2", "scores", 0, "parameter"),
    ("for-loop-1[2]/condition-2/keep", "Output", "pick-best-2", "scores", 1, "parameter"),
    *((f"for-loop-1[{i}]/scale", "out", "count-files", "files", i, "artifact") for i in range(3)),
    *((f"for-loop-1[{i}]/to-array", "Output", "stack", "arrays", i, "object") for i in range(3)),
}


def test_loop_and_condition_pipeline_records_every_execution_and_edge(
    flow_run: tuple[Path, RunResult],
) -> None:
    root, result = flow_run
    con = connect(str(root))

    states = dict(con.execute("SELECT task, state FROM executions").fetchall())
    assert states == EXPECTED_STATES
    assert {t: str(r.state) for t, r in result.tasks.items()} == EXPECTED_STATES

    edges = con.execute(
        "SELECT source_execution_id, source_output, execution_id, name, position, kind FROM edges"
    ).fetchall()
    found = [(_task(s), o, _task(e), n, p, k) for s, o, e, n, p, k in edges]
    assert sorted(found, key=str) == sorted(EXPECTED_EDGES, key=str)  # each edge once

    # Each edge's two ends agree: the consumer read what the producer wrote.
    mismatched = con.execute(
        """
        SELECT i.execution_id, i.name, i.position, o.kind
        FROM events i JOIN events o
          ON o.execution_id = i.producer_execution_id AND o.name = i.producer_output
         AND o.direction = 'output'
        WHERE i.direction = 'input' AND NOT (
              (o.kind = 'parameter' AND o.digest = i.digest AND o.value = i.value)
           OR (o.kind = 'artifact' AND o.uri = i.uri AND o.digest = i.digest AND o.size = i.size)
           OR (o.kind = 'object' AND coalesce(i.object_type, o.object_type) = o.object_type))
        """
    ).fetchall()
    assert mismatched == []
    (dangling,) = con.execute(
        "SELECT count(*) FROM events i WHERE i.direction = 'input' "
        "AND i.producer_execution_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events o "
        "WHERE o.execution_id = i.producer_execution_id AND o.name = i.producer_output "
        "AND o.direction = 'output')"
    ).fetchone()
    assert dangling == 0

    # Inputs made by no step: the pipeline argument and the loop items, with their values.
    sourceless = con.execute(
        "SELECT execution_id, name, value, kind FROM events "
        "WHERE direction = 'input' AND producer_execution_id IS NULL"
    ).fetchall()
    assert sorted((_task(e), n, v, k) for e, n, v, k in sourceless) == [
        ("for-loop-1[0]/scale", "factor", "1", "parameter"),
        ("for-loop-1[1]/scale", "factor", "2", "parameter"),
        ("for-loop-1[2]/scale", "factor", "3", "parameter"),
        ("make-data", "rows", "4", "parameter"),
    ]

    # Every artifact written, with its digest and size, matches the run's result.
    artifacts = {
        (_task(e), o): (uri, digest, size)
        for e, o, uri, digest, size in con.execute(
            "SELECT execution_id, output, uri, digest, size FROM artifacts"
        ).fetchall()
    }
    expected = {
        (name, out): (rec.uri, rec.digest, rec.size)
        for name, task in result.tasks.items()
        for out, rec in task.outputs.items()
        if isinstance(rec, ArtifactRecord)
    }
    assert artifacts == expected and len(expected) == 4
    assert all(d is not None and s is not None for _, d, s in artifacts.values())

    # The run itself: one row in `runs` (two in its history: started, ended).
    run = con.execute(
        "SELECT run_id, pipeline, status, arguments, outputs, spec_digest FROM runs"
    ).fetchall()
    assert run == [
        (
            result.run_id,
            "lineage-flow",
            "SUCCEEDED",
            json.dumps({"rows": 4, "threshold": 10.0}, sort_keys=True),
            json.dumps({"Output": 144.0}),
            run[0][5],
        )
    ]
    assert con.execute("SELECT count(*) FROM runs_history").fetchone() == (2,)
    # Output events carry where and when: node, attempt, time.
    assert con.execute(
        "SELECT count(*) FROM events WHERE node_id IS NULL OR attempt IS NULL OR time IS NULL"
    ).fetchone() == (0,)


def test_upstream_of_an_artifact_reaches_data_parameters_and_code(
    flow_run: tuple[Path, RunResult],
) -> None:
    root, result = flow_run
    uri = result.tasks["for-loop-1[2]/scale"].outputs["out"].uri
    rows = upstream(uri, root=str(root))

    seen = [(r.depth, r.task, r.name, r.kind, r.uri or r.value, _task(r.source)) for r in rows]
    made = result.tasks["make-data"].outputs["data"].uri
    assert seen == [
        (0, "for-loop-1[2]/scale", "data", "artifact", made, "make-data/data"),
        (0, "for-loop-1[2]/scale", "factor", "parameter", "3", None),
        (1, "make-data", "rows", "parameter", "4", None),
    ]
    digests = dict(
        connect(str(root)).execute("SELECT task, component_digest FROM executions").fetchall()
    )
    assert {r.task: r.component_digest for r in rows} == {
        "for-loop-1[2]/scale": digests["for-loop-1[2]/scale"],
        "make-data": digests["make-data"],
    }
    assert all(r.component_digest for r in rows)
    assert upstream("/no/such/artifact", root=str(root)) == []


def test_downstream_of_a_dataset_reaches_every_consumer(flow_run: tuple[Path, RunResult]) -> None:
    root, result = flow_run
    made = result.tasks["make-data"].outputs["data"].uri
    rows = downstream(made, root=str(root))
    reached = {(r.depth, r.task) for r in rows}
    assert reached == {
        *((0, f"for-loop-1[{i}]/scale") for i in range(3)),
        *((1, f"for-loop-1[{i}]/to-array") for i in range(3)),
        (1, "for-loop-1[1]/condition-2/keep"),
        (1, "for-loop-1[2]/condition-2/keep"),
        (1, "pick-best"),
        (1, "count-files"),
        (2, "stack"),
        (2, "pick-best-2"),
    }
    scale_outputs = {(r.name, r.kind) for r in rows if r.task == "for-loop-1[0]/scale"}
    assert scale_outputs == {("out", "artifact"), ("Output", "parameter")}
    assert all(r.direction == "output" for r in rows)


def test_executions_and_runs_using(flow_run: tuple[Path, RunResult]) -> None:
    root, result = flow_run
    rows = executions(result.run_id, root=str(root))
    assert {r.task: r.state for r in rows} == EXPECTED_STATES
    assert all(r.node_id for r in rows if r.state == "SUCCEEDED")
    assert executions("no-such-run", root=str(root)) == []

    made = result.tasks["make-data"].outputs["data"]
    for given in (made.uri, made.digest, 3):  # a URI, a content digest, a parameter value
        assert [r.run_id for r in runs_using(given, root=str(root))] == [result.run_id]
    assert runs_using("/nothing/here", root=str(root)) == []


# Failures, skips, cancellations, attempts -----------------------------------------------


def test_failed_upstream_failed_and_canceled_steps_are_recorded_with_each_attempt(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lineage"
    result = _run(failing, root)
    assert result.status == "FAILED"
    con = connect(str(root))
    states = dict(con.execute("SELECT task, state FROM executions").fetchall())
    assert states == {t: str(r.state) for t, r in result.tasks.items()}
    assert states["explode"] == "FAILED" and states["plus-one"] == "UPSTREAM_FAILED"
    # fail-fast: nap finishes if it had started, else it is canceled; what needs it is
    assert states["nap"] in ("SUCCEEDED", "CANCELED") and states["plus-one-2"] == "CANCELED"

    attempts = con.execute(
        "SELECT attempt, succeeded, error_type, error_message FROM attempts "
        "WHERE execution_id = ? ORDER BY attempt",
        [f"{result.run_id}/explode"],
    ).fetchall()
    assert attempts == [
        (1, False, "builtins.ValueError", "cannot handle 7"),
        (2, False, "builtins.ValueError", "cannot handle 7"),
    ]
    assert con.execute(
        "SELECT attempts, error_type, error_message FROM executions WHERE task = 'explode'"
    ).fetchone() == (2, "builtins.ValueError", "cannot handle 7")
    (run,) = con.execute("SELECT status, error FROM runs").fetchall()
    assert run[0] == "FAILED" and "cannot handle 7" in run[1]


def test_a_running_run_is_readable_within_about_a_second(tmp_path: Path) -> None:
    """Rows are flushed while the run goes on, so a killed driver loses at most ~1 s."""
    root = tmp_path / "lineage"
    handle = raypipe.submit(
        slow_pipeline, {"seconds": 4.0}, tracking=False, observers=[LineageWriter(str(root))]
    )
    try:
        deadline = time.monotonic() + 3.0
        states: dict[str, str] = {}
        while time.monotonic() < deadline and "plus-one" not in states:
            time.sleep(0.2)
            with connect(str(root)) as con:
                states = dict(con.execute("SELECT task, state FROM executions").fetchall())
                status = con.execute("SELECT status FROM runs").fetchall()
        assert states == {"plus-one": "SUCCEEDED"}, "the first step was not flushed in time"
        assert status == [("RUNNING",)]
        assert handle.status() == "RUNNING"
    finally:
        result = handle.wait()
    assert result.ok
    assert _table(root, "runs", "run_id")[0][4] == "SUCCEEDED"


def test_two_concurrent_runs_are_both_recorded(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    handles = [
        raypipe.submit(flow, {"rows": n}, tracking=False, observers=[LineageWriter(str(root))])
        for n in (4, 5)
    ]
    results = [h.wait() for h in handles]
    assert all(r.ok for r in results)
    con = connect(str(root))
    assert sorted(con.execute("SELECT run_id, status FROM runs").fetchall()) == sorted(
        (r.run_id, "SUCCEEDED") for r in results
    )
    counts = dict(con.execute("SELECT run_id, count(*) FROM executions GROUP BY run_id").fetchall())
    assert counts == {r.run_id: len(EXPECTED_STATES) for r in results}
    # each run wrote only into its own directories
    for table in TABLES:
        assert sorted(p.name for p in (root / table).iterdir()) == sorted(
            f"run_id={r.run_id}" for r in results
        )


# Compaction -------------------------------------------------------------------------------

_VIEWS = ("runs_history", "executions", "attempts", "artifacts", "events")


def _snapshot(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in one order."""
    return {view: _table(root, view, "ALL") for view in _VIEWS}


def test_compact_merges_files_and_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    # Many small parts: flush every few ms, never merge at close.
    runs = [
        raypipe.run(
            pipeline,
            tracking=False,
            observers=[LineageWriter(str(root), flush_seconds=0.005, merge_parts=1000)],
        )
        for pipeline in (flow, failing)
    ]
    before = _snapshot(root)
    parts_before = sum(len(list((root / t).glob("run_id=*/*.parquet"))) for t in TABLES)
    uri = runs[0].tasks["for-loop-1[1]/scale"].outputs["out"].uri
    walk_before = upstream(uri, root=str(root))
    assert parts_before > 2 * len(TABLES)

    report = compact(str(root))

    assert _snapshot(root) == before
    assert upstream(uri, root=str(root)) == walk_before
    for table in TABLES:
        assert list((root / table).glob("run_id=*/*")) == []
        assert len(list((root / table / "compacted").glob("*.parquet"))) == 1
        assert not list((root / table).rglob("*.manifest.json"))
    assert sum(t.merged_files for t in report.tables) == parts_before
    events = next(t for t in report.tables if t.table == "events")
    assert events.rows_merged == len(before["events"]) and events.files_after == 1

    # Again, with a new run: the small compacted files and the new run merge into one.
    raypipe.run(flow, tracking=False, observers=[LineageWriter(str(root))])
    after_third = _snapshot(root)
    compact(str(root))
    assert _snapshot(root) == after_third
    assert len(after_third["executions"]) == 2 * len(EXPECTED_STATES) + len(runs[1].tasks)
    for table in TABLES:
        assert len(list((root / table / "compacted").glob("*.parquet"))) == 1


def test_compact_leaves_running_runs_and_finishes_an_interrupted_merge(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    writer = LineageWriter(str(root), flush_seconds=3600)
    run_id = "0123456789abcdef0123456789abcdef"
    writer.run_started(_started(run_id))
    writer.step_ended(_step(run_id, "prepare", outputs={"data": _artifact(run_id, "prepare")}))
    writer.flush()  # what the flusher thread does within a second
    report = compact(str(root))
    assert {t.table: t.runs_left for t in report.tables if t.runs_left} == {
        "runs": 1,
        "executions": 1,
        "attempts": 1,
        "artifacts": 1,
        "events": 1,
    }
    assert list((root / "executions").glob("run_id=*/*.parquet"))
    writer.run_ended(_ended(run_id))
    writer.close()
    before = _snapshot(root)

    # A merge that died after publishing its output and before deleting its inputs: the
    # manifest hides the inputs from readers, and the next compaction finishes the job.
    store = LineageStore(str(root))
    parts = store.files("executions")
    saved = [(p.path, Path(p.path).read_bytes()) for p in parts]
    merge(
        store,
        "executions",
        parts,
        store.compacted_dir("executions"),
        functools.partial(merge_tables, store, "executions"),
    )
    for path, data in saved:  # as if the deletes had not happened
        Path(path).write_bytes(data)
    manifest = store.compacted_dir("executions") + "/interrupted.manifest.json"
    outputs = [f.relative for f in store.listing("executions").files if f.run_id is None]
    Path(manifest).write_text(
        json.dumps(
            {
                "table": "executions",
                "inputs": [p[len(store.table_dir("executions")) + 1 :] for p, _ in saved],
                "outputs": outputs,
                "rows": 1,
                "created": "2000-01-01T00:00:00Z",
            }
        )
    )
    assert _snapshot(root) == before  # no row twice
    report = compact(str(root))
    assert next(t.recovered for t in report.tables if t.table == "executions") == 1
    assert _snapshot(root) == before
    assert not list((root / "executions").glob("run_id=*/*.parquet"))


def test_a_step_served_from_the_cache_is_recorded_and_leads_to_the_run_that_made_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lineage"
    first, second = _run(flow, root), _run(flow, root)
    con = connect(str(root))
    cached = con.execute(
        "SELECT task, cached, cache_key IS NOT NULL FROM executions WHERE run_id = ? "
        "AND state = 'CACHED'",
        [second.run_id],
    ).fetchall()
    assert {t for t, _, _ in cached} == {t for t, s in EXPECTED_STATES.items() if s != "SKIPPED"}
    assert all(c and k for _, c, k in cached)
    # It wrote nothing: the artifacts are the first run's, read by both runs' steps.
    assert con.execute("SELECT DISTINCT run_id FROM artifacts").fetchall() == [(first.run_id,)]
    made = first.tasks["make-data"].outputs["data"].uri
    readers = {(r.run_id, r.task) for r in downstream(made, connection=con) if r.depth == 0}
    assert readers == {
        (run.run_id, f"for-loop-1[{i}]/scale") for run in (first, second) for i in range(3)
    }
    assert {(r.run_id, r.task) for r in upstream(made, connection=con)} == {
        (first.run_id, "make-data")
    }


def test_a_merge_backs_off_when_another_merge_claims_the_same_files(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    run_id = "e" * 32
    writer = LineageWriter(str(root), flush_seconds=3600)
    writer.run_started(_started(run_id))
    writer.step_ended(_step(run_id, "prepare"))
    writer.flush()
    store = LineageStore(str(root))
    parts = store.files("executions")
    other = Path(store.run_dir("executions", run_id)) / "other.manifest.json"
    other.write_text(
        json.dumps(
            {
                "table": "executions",
                "inputs": [p.relative for p in parts],
                "outputs": [f"run_id={run_id}/merged-v1-other-000000.parquet"],
                "rows": 1,
                "created": datetime.now(timezone.utc).isoformat(),
            }
        )
    )
    before = _snapshot(root)
    with pytest.raises(LineageError, match="another merge of the same executions files"):
        merge(
            store,
            "executions",
            parts,
            store.compacted_dir("executions"),
            functools.partial(merge_tables, store, "executions"),
        )
    assert _snapshot(root) == before
    assert [p.path for p in store.files("executions")] == [p.path for p in parts]
    assert not list((root / "executions" / "compacted").glob("*"))
    writer.run_ended(_ended(run_id))
    writer.close()


def test_a_run_with_many_parts_merges_them_when_it_closes(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    result = raypipe.run(
        flow,
        tracking=False,
        observers=[LineageWriter(str(root), flush_seconds=0.001, merge_parts=2)],
    )
    for table in ("executions", "events"):
        names = [p.name for p in (root / table / f"run_id={result.run_id}").iterdir()]
        assert len(names) == 1 and names[0].startswith("merged-"), names
    assert len(_table(root, "executions", "task")) == len(EXPECTED_STATES)


def test_a_run_merges_its_parts_one_at_a_time_into_sorted_row_groups(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    run_id = "f" * 32
    writer = LineageWriter(str(root), flush_seconds=3600, merge_parts=2)
    writer.run_started(_started(run_id))
    for part in range(3):  # one part per flush; names out of order within each
        for task in ("c", "a", "b"):
            writer.step_ended(_step(run_id, f"{task}{part}", outputs={"n": part}))
        writer.flush()
    writer.run_ended(_ended(run_id))
    writer.close()
    files = list((root / "executions" / f"run_id={run_id}").iterdir())
    assert [f.name[:7] for f in files] == ["merged-"]
    merged = pq.ParquetFile(files[0])
    groups = [merged.read_row_group(i).column("task").to_pylist() for i in range(3)]
    assert merged.num_row_groups == 3
    assert groups == [[f"a{p}", f"b{p}", f"c{p}"] for p in range(3)]
    assert len(_table(root, "events", "execution_id")) == 9  # one output event per step


def test_compact_removes_what_a_writer_that_died_merging_left(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    run_id = "e" * 32
    writer = LineageWriter(str(root), flush_seconds=3600)
    writer.run_started(_started(run_id))
    writer.step_ended(_step(run_id, "prepare"))
    writer.run_ended(_ended(run_id))
    writer.close()
    # a driver killed while merging its parts leaves the merge's hidden scratch behind
    run_dir = root / "executions" / f"run_id={run_id}"
    left = run_dir / ".merge-0123456789ab"
    left.mkdir()
    (left / "merged-0.parquet").write_bytes(b"half a file")
    assert [r[2] for r in _table(root, "executions", "task")] == ["prepare"]  # unseen

    compact(str(root))
    assert not run_dir.exists()
    assert [r[2] for r in _table(root, "executions", "task")] == ["prepare"]


# Writing: failures, remote roots, bad roots ----------------------------------------------


def _started(run_id: str) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        run_name="hand-made",
        pipeline="hand",
        experiment="hand",
        arguments={"n": 1},
        spec_digest="0" * 64,
        start_time=datetime.now(timezone.utc),
        artifact_root="/artifacts",
    )


def _artifact(run_id: str, task: str, name: str = "data") -> ArtifactRecord:
    return ArtifactRecord(
        name=name,
        type="Dataset",
        uri=f"/artifacts/hand/{run_id}/{task}/{name}",
        digest="d" * 64,
        size=3,
    )


def _step(
    run_id: str,
    task: str,
    *,
    inputs: list[InputRecord] | None = None,
    outputs: dict[str, Any] | None = None,
) -> StepEnded:
    now = datetime.now(timezone.utc)
    return StepEnded(
        run_id=run_id,
        pipeline="hand",
        task=TaskResult(
            name=task,
            component=task,
            state=TaskState.SUCCEEDED,
            attempts=[AttemptRecord(number=1, start_time=now, end_time=now)],
            start_time=now,
            end_time=now,
            node_id="node",
            outputs=outputs or {},
        ),
        component_digest="c" * 64,
        inputs=inputs or [],
    )


def _ended(run_id: str) -> RunEnded:
    return RunEnded(
        run_id=run_id,
        pipeline="hand",
        status=RunStatus.SUCCEEDED,
        end_time=datetime.now(timezone.utc),
    )


def test_lineage_crosses_runs_through_an_artifact_one_run_wrote_and_another_read(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "lineage")
    first, second = "a" * 32, "b" * 32
    made = _artifact(first, "prepare")
    writer = LineageWriter(root)
    writer.run_started(_started(first))
    writer.step_ended(_step(first, "prepare", outputs={"data": made}))
    writer.run_ended(_ended(first))
    writer.run_started(_started(second))
    writer.step_ended(
        _step(
            second,
            "train",
            inputs=[InputRecord(name="data", kind="artifact", artifact=made)],
            outputs={"model": _artifact(second, "train", "model")},
        )
    )
    writer.run_ended(_ended(second))
    writer.close()

    model = _artifact(second, "train", "model").uri
    up = upstream(model, root=root)
    assert [(r.depth, r.run_id, r.task, r.name, r.source) for r in up] == [
        (0, second, "train", "data", f"{first}/prepare/data"),
        (1, first, "prepare", None, None),
    ]
    down = downstream(made.uri, root=root)
    assert [(r.depth, r.run_id, r.task, r.name) for r in down] == [(0, second, "train", "model")]
    assert [r.run_id for r in runs_using(made.uri, root=root)] == [second]


def test_artifact_uris_name_their_run(tmp_path: Path) -> None:
    """upstream() finds the writer of a URI among the runs the URI names (see _writers)."""
    run_id = "f" * 32
    uri = ArtifactStore(str(tmp_path)).output_uri("p", run_id, "for-loop-1[0]/train", "model")
    assert f"/{run_id}/" in uri


def test_a_resumed_run_counts_each_step_once(tmp_path: Path) -> None:
    """A resumed run (same id) records again, as CACHED, the steps its first session
    finished; the helpers use each step's latest record."""
    root = str(tmp_path / "lineage")
    run_id = "d" * 32
    made = _artifact(run_id, "prepare")
    first = LineageWriter(root)  # the first session: its driver dies after one step
    first.run_started(_started(run_id))
    first.step_ended(_step(run_id, "prepare", outputs={"data": made}))
    first.close()
    second = LineageWriter(root)
    second.run_started(_started(run_id).model_copy(update={"resumed": True}))
    cached = _step(run_id, "prepare", outputs={"data": made})
    second.step_ended(
        cached.model_copy(
            update={"task": cached.task.model_copy(update={"state": TaskState.CACHED})}
        )
    )
    second.step_ended(
        _step(
            run_id,
            "train",
            inputs=[
                InputRecord(name="data", kind="artifact", artifact=made, producers=["prepare/data"])
            ],
            outputs={"model": _artifact(run_id, "train", "model")},
        )
    )
    second.run_ended(_ended(run_id))
    second.close()

    assert [(e.task, e.state) for e in executions(run_id, root=root)] == [
        ("prepare", "CACHED"),
        ("train", "SUCCEEDED"),
    ]
    up = upstream(_artifact(run_id, "train", "model").uri, root=root)
    assert [(r.depth, r.task, r.state, r.name) for r in up] == [
        (0, "train", "SUCCEEDED", "data"),
        (1, "prepare", "CACHED", None),
    ]
    assert _table(tmp_path / "lineage", "runs", "run_id")[0][4] == "SUCCEEDED"


def test_a_failed_write_warns_and_is_retried_at_the_next_flush(tmp_path: Path) -> None:
    root = tmp_path / "lineage"
    root.mkdir()
    (root / "executions").write_text("in the way")  # a file where a directory must go
    run_id = "c" * 32
    writer = LineageWriter(str(root), flush_seconds=3600)
    writer.run_started(_started(run_id))
    writer.step_ended(_step(run_id, "prepare"))
    with pytest.warns(RuntimeWarning, match=rf"run {run_id}: could not write 1 executions rows"):
        assert writer.flush() is False
    (root / "executions").unlink()
    writer.run_ended(_ended(run_id))
    writer.close()
    assert [r.task for r in executions(run_id, root=str(root))] == ["prepare"]


def test_many_waiting_rows_of_two_runs_are_written_whole_after_a_failed_write(
    tmp_path: Path,
) -> None:
    # More rows than the writer keeps as tuples (they wait as Arrow columns, by run),
    # then a write that fails: every row of both runs is written at the next flush.
    root = tmp_path / "lineage"
    root.mkdir()
    (root / "executions").write_text("in the way")
    runs = ["e" * 32, "f" * 32]
    writer = LineageWriter(str(root), flush_seconds=3600, flush_rows=10**9)
    for run_id in runs:
        writer.run_started(_started(run_id))
    for i in range(700):
        for run_id in runs:
            writer.step_ended(_step(run_id, f"t{i}"))
    with pytest.warns(RuntimeWarning, match=r"could not write 700 executions rows"):
        assert writer.flush() is False
    (root / "executions").unlink()
    for run_id in runs:
        writer.run_ended(_ended(run_id))
    writer.close()
    for run_id in runs:
        assert sorted(r.task for r in executions(run_id, root=str(root))) == sorted(
            f"t{i}" for i in range(700)
        )
        attempts = pq.read_table(root / "attempts" / f"run_id={run_id}").num_rows
        assert attempts == 700


def test_a_bad_root_names_what_failed(tmp_path: Path) -> None:
    with pytest.raises(
        LineageError, match=r"lineage root 'nosuchscheme://bucket/x': cannot be opened"
    ):
        LineageWriter("nosuchscheme://bucket/x")
    with pytest.raises(LineageError, match="lineage root is empty"):
        connect("  ")


def test_an_empty_store_has_empty_views_with_every_column(tmp_path: Path) -> None:
    con = connect(str(tmp_path / "nothing-yet"))
    for table, schema in TABLES.items():
        view = "runs_history" if table == "runs" else table
        names = [d[0] for d in con.execute(f"SELECT * FROM {view}").description]
        assert names == schema.names
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM edges").fetchone() == (0,)
    assert upstream("/x", connection=con) == []


def test_lineage_on_an_s3_root_is_written_and_read_back(s3: S3Server) -> None:  # noqa: F811
    root = s3.root("lineage")
    result = raypipe.run(flow, tracking=False, observers=[LineageWriter(root)])
    assert result.ok, result.error
    keys = s3.keys("lineage/executions/")
    assert keys and all(k.startswith(f"lineage/executions/run_id={result.run_id}/") for k in keys)
    data = pq.read_table(io.BytesIO(s3.read(sorted(keys)[0])))
    assert set(data.column("run_id").to_pylist()) == {result.run_id}
    rows = executions(result.run_id, root=root)
    assert {r.task: r.state for r in rows} == EXPECTED_STATES
    made = result.tasks["make-data"].outputs["data"].uri
    assert {r.task for r in downstream(made, root=root) if r.depth == 0} == {
        f"for-loop-1[{i}]/scale" for i in range(3)
    }
    scaled = result.tasks["for-loop-1[2]/scale"].outputs["out"].uri
    before = upstream(scaled, root=root)
    assert {r.task for r in before} == {"for-loop-1[2]/scale", "make-data"}
    report = compact(root)
    assert all(t.files_after == 1 for t in report.tables)
    assert s3.keys("lineage/executions/") == {
        k for k in s3.keys("lineage/executions/compacted/") if k.endswith(".parquet")
    }
    assert {r.task: r.state for r in executions(result.run_id, root=root)} == EXPECTED_STATES
    assert upstream(scaled, root=root) == before


# The command line ---------------------------------------------------------------------------


def test_cli_sql_upstream_executions_and_compact(
    flow_run: tuple[Path, RunResult], capsys: pytest.CaptureFixture[str]
) -> None:
    root, result = flow_run
    query = "SELECT task, state FROM executions WHERE task LIKE 'for-loop-1[0]/%' ORDER BY task"
    assert main(["lineage", "sql", query, "--root", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"task": "for-loop-1[0]/condition-2/keep", "state": "SKIPPED"},
        {"task": "for-loop-1[0]/scale", "state": "SUCCEEDED"},
        {"task": "for-loop-1[0]/to-array", "state": "SUCCEEDED"},
    ]
    assert main(["lineage", "sql", "SELECT count(*) AS n FROM runs", "--root", str(root)]) == 0
    assert capsys.readouterr().out.split() == ["n", "1"]

    uri = result.tasks["for-loop-1[2]/scale"].outputs["out"].uri
    assert main(["lineage", "upstream", uri, "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "for-loop-1[2]/scale" in out and "make-data" in out and "factor" in out
    assert main(["lineage", "upstream", uri, "--root", str(root), "--json"]) == 0
    assert [r["task"] for r in json.loads(capsys.readouterr().out)] == [
        "for-loop-1[2]/scale",
        "for-loop-1[2]/scale",
        "make-data",
    ]
    assert main(["lineage", "upstream", "/no/such", "--root", str(root)]) == 1
    assert "no recorded step wrote /no/such" in capsys.readouterr().err

    assert main(["lineage", "executions", result.run_id, "--root", str(root)]) == 0
    assert "condition-3/keep-2" in capsys.readouterr().out

    assert main(["lineage", "sql", "SELECT nonsense FROM runs", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "error: lineage query failed" in err and "nonsense" in err


def test_cli_compact_and_default_root(
    raypipe_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYPIPE_LINEAGE_ROOT", raising=False)
    result = _run(flow, raypipe_home / "lineage")  # the default root, under RAYPIPE_HOME
    assert main(["lineage", "compact"]) == 0
    assert "executions:" in capsys.readouterr().out
    assert main(["lineage", "sql", "SELECT run_id FROM runs"]) == 0
    assert result.run_id in capsys.readouterr().out
