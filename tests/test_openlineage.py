"""OpenLineage export: a real run's lineage as run events, checked against the spec.

One real Ray run of a pipeline with artifacts, a loop, a condition that skips an
iteration, in-memory objects, a failing step and a step that needed it, exported once.
Every event is validated against OpenLineage's JSON Schema (spec 2-0-2, vendored under
tests/data/openlineage with its source), and every standard facet is rebuilt with the
official ``openlineage-python`` client's classes (generated from the spec) and must come
out the same.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attr
import jsonschema
import pytest
from openlineage.client.facet_v2 import (
    dataset_version_dataset,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
)
from openlineage.client.generated import base as ol
from openlineage.client.naming import dataset as naming
from openlineage.client.serde import Serde

import raypipe
from raypipe import dsl
from raypipe.cli import main
from raypipe.runtime.result import RunResult, RunStatus, TaskState
from raypipe.tracking.lineage import LineageError, LineageWriter, openlineage_events
from raypipe.tracking.lineage.openlineage import (
    EVENT_TYPES,
    OPENLINEAGE_SCHEMA_URL,
    RUN_EVENT_TYPES,
    dataset_name,
    openlineage_run_id,
)
from tests.pipelines import count_files, keep, make_data, scale, to_array

SCHEMA_PATH = Path(__file__).parent / "data" / "openlineage" / "OpenLineage-2-0-2.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
PIPELINE = "ol-export"

# Components (module level, as users write them) ---------------------------------------


@dsl.component
def stack(arrays: Any) -> float:
    return float(sum(a.sum() for a in arrays))


@dsl.component
def explode(x: float) -> float:
    raise ValueError(f"cannot handle {x}")


@dsl.component
def plus_one(x: float) -> float:
    return x + 1


@dsl.pipeline(name=PIPELINE)
def export_flow(rows: int = 4, threshold: float = 10.0) -> int:
    made = make_data(rows=rows)
    with dsl.ParallelFor([1, 2]) as factor:
        s = scale(data=made.outputs["data"], factor=factor)
        arr = to_array(x=s.outputs["Output"])
        with dsl.If(s.outputs["Output"] > threshold):  # 6 (factor 1) is not: SKIPPED
            keep(data=s.outputs["out"], total=s.outputs["Output"])
    files = count_files(files=dsl.Collected(s.outputs["out"]))
    stack(arrays=dsl.Collected(arr.output))
    boom = explode(x=threshold)  # FAILED
    plus_one(x=boom.output)  # UPSTREAM_FAILED
    return files.output


EXPECTED_END = {  # task -> the eventType that ends its run
    "make-data": "COMPLETE",
    "for-loop-1[0]/scale": "COMPLETE",
    "for-loop-1[1]/scale": "COMPLETE",
    "for-loop-1[0]/to-array": "COMPLETE",
    "for-loop-1[1]/to-array": "COMPLETE",
    "for-loop-1[0]/condition-2/keep": "ABORT",  # SKIPPED
    "for-loop-1[1]/condition-2/keep": "COMPLETE",
    "count-files": "COMPLETE",
    "stack": "COMPLETE",
    "explode": "FAIL",
    "plus-one": "FAIL",  # UPSTREAM_FAILED
}


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, RunResult, list[dict[str, Any]]]:
    """One run (fail_fast off: every branch the failure does not feed runs), exported."""
    home = tmp_path_factory.mktemp("openlineage")
    previous = os.environ.get("RAYPIPE_HOME")
    os.environ["RAYPIPE_HOME"] = str(home)  # this fixture outlives the per-test home
    try:
        result = raypipe.run(
            export_flow,
            tracking=False,
            fail_fast=False,
            observers=[LineageWriter(str(home / "lineage"))],
        )
    finally:
        if previous is not None:
            os.environ["RAYPIPE_HOME"] = previous
    assert result.status == "FAILED"
    assert {t: r.state.value for t, r in result.tasks.items()}["explode"] == "FAILED"
    events = openlineage_events(result.run_id, root=str(home / "lineage"))
    return home / "lineage", result, events


def _step(events: list[dict[str, Any]], task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The START and end event of one step, found by its raypipe task name."""
    found = [
        e for e in events if e["run"]["facets"].get("raypipe_execution", {}).get("task") == task
    ]
    assert [e["eventType"] for e in found][0] == "START" and len(found) == 2, task
    return found[0], found[1]


def _datasets(event: dict[str, Any], side: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event[side]}


# The events against the spec ----------------------------------------------------------


def test_every_event_is_valid_against_the_openlineage_json_schema(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    _, _, events = exported
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for event in events:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(event)]
        assert errors == [], (event["job"]["name"], event["eventType"], errors)

    # What the schema names as formats, checked here whatever jsonschema can check.
    for event in events:
        assert event["schemaURL"] == OPENLINEAGE_SCHEMA_URL == ol.RunEvent._get_schema()
        assert datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")).tzinfo
        assert str(uuid.UUID(event["run"]["runId"])) == event["run"]["runId"]
        urls = [event["producer"], event["schemaURL"]]
        for facets in _all_facets(event):
            urls += [f["_producer"] for f in facets.values()]
            urls += [f["_schemaURL"] for f in facets.values()]
        for url in urls:
            parts = urlsplit(url)
            assert parts.scheme == "https" and parts.netloc, url

    # Rebuilt with the official client's RunEvent, each comes out the same (facets aside).
    for event in events:
        rebuilt = ol.RunEvent(
            eventType=ol.EventType(event["eventType"]),
            eventTime=event["eventTime"],
            run=ol.Run(runId=event["run"]["runId"]),
            job=ol.Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[ol.InputDataset(d["namespace"], d["name"]) for d in event["inputs"]],
            outputs=[ol.OutputDataset(d["namespace"], d["name"]) for d in event["outputs"]],
            producer=event["producer"],
        )
        assert _without_facets(Serde.to_dict(rebuilt)) == _without_facets(event)


def test_the_schema_check_rejects_what_the_spec_forbids(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    """The validation above is not vacuous: broken copies of a real event fail it."""
    _, _, events = exported
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    event = events[-2]
    broken: list[dict[str, Any]] = [
        {**event, "eventType": "SKIPPED"},
        {**event, "run": {**event["run"], "runId": "not-a-uuid"}},
        {**event, "eventTime": "yesterday"},
        {k: v for k, v in event.items() if k != "producer"},
        {**event, "job": {"name": event["job"]["name"]}},
        {**event, "inputs": [{"name": "no namespace"}]},
        {**event, "run": {**event["run"], "facets": {"raypipe_execution": {"task": "x"}}}},
    ]
    for bad in broken:
        assert not validator.is_valid(bad), bad
    assert validator.is_valid(event)


def _all_facets(event: dict[str, Any]) -> list[dict[str, dict[str, Any]]]:
    found = [event["run"]["facets"], event["job"]["facets"]]
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for dataset in event[side]:
            found += [dataset.get("facets", {}), dataset.get(extra, {})]
    return found


def _without_facets(value: Any) -> Any:
    """``value`` without facets and empty containers (the client writes ``{}`` and ``[]``)."""
    if isinstance(value, dict):
        kept = {
            k: _without_facets(v)
            for k, v in value.items()
            if k not in ("facets", "inputFacets", "outputFacets")
        }
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_without_facets(v) for v in value]
    return value


STANDARD_FACETS: dict[str, type[Any]] = {
    "errorMessage": error_message_run.ErrorMessageRunFacet,
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
    "jobType": job_type_job.JobTypeJobFacet,
    "version": dataset_version_dataset.DatasetVersionDatasetFacet,
    "inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet,
    "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
}


def _client_facet(key: str, facet: dict[str, Any]) -> Any:
    """The official client's object for a standard facet; raises if a field is unknown,
    missing or of the wrong shape (a runId not a UUID...)."""
    fields = {k: v for k, v in facet.items() if not k.startswith("_")}
    if key == "parent":
        root = fields["root"]
        return parent_run.ParentRunFacet(
            run=parent_run.Run(**fields["run"]),
            job=parent_run.Job(**fields["job"]),
            root=parent_run.Root(
                run=parent_run.RootRun(**root["run"]), job=parent_run.RootJob(**root["job"])
            ),
            producer=facet["_producer"],
        )
    return STANDARD_FACETS[key](**fields, producer=facet["_producer"])


def test_standard_facets_are_what_the_official_client_writes(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    _, _, events = exported
    seen: set[str] = set()
    for event in events:
        for facets in _all_facets(event):
            for key, facet in facets.items():
                if key.startswith("raypipe_"):  # ours: _producer and _schemaURL, as required
                    assert facet["_schemaURL"].endswith("docs/lineage.md#raypipe-facets")
                    continue
                rebuilt = _client_facet(key, facet)
                assert _without_facets(Serde.to_dict(rebuilt)) == facet, key
                assert facet["_schemaURL"] == type(rebuilt)._get_schema(), key
                seen.add(key)
    assert seen == {"parent", *STANDARD_FACETS}  # every kind was exercised


# What maps to what ----------------------------------------------------------------------


def test_one_start_and_one_end_per_run_with_the_parent_facet_naming_the_pipeline_run(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    root, result, events = exported
    pipeline_run = str(uuid.UUID(result.run_id))  # raypipe's run id, as a UUID
    first, last = events[0], events[-1]
    assert (first["eventType"], first["job"]["name"]) == ("START", PIPELINE)
    assert (last["eventType"], last["job"]["name"]) == ("FAIL", PIPELINE)
    assert first["run"]["runId"] == last["run"]["runId"] == pipeline_run
    assert "cannot handle 10.0" in last["run"]["facets"]["errorMessage"]["message"]
    assert last["run"]["facets"]["raypipe_parameters"]["inputs"] == {"rows": 4, "threshold": 10.0}
    assert last["run"]["facets"]["raypipe_run"]["run_id"] == result.run_id
    assert {e["job"]["namespace"] for e in events} == {"raypipe"}

    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in events[1:-1]:
        by_run.setdefault(event["run"]["runId"], []).append(event)
        parent = event["run"]["facets"]["parent"]
        assert parent["run"] == {"runId": pipeline_run}
        assert parent["job"] == {"namespace": "raypipe", "name": PIPELINE}
        assert parent["root"] == {"run": parent["run"], "job": parent["job"]}
    assert len(by_run) == len(result.tasks) == len(EXPECTED_END)
    for run_id, pair in by_run.items():
        task = pair[0]["run"]["facets"]["raypipe_execution"]["task"]
        assert [e["eventType"] for e in pair] == ["START", EXPECTED_END[task]], task
        assert pair[0]["eventTime"] <= pair[1]["eventTime"]
        assert run_id == openlineage_run_id(result.run_id, task)  # a UUID5 of the execution
        assert uuid.UUID(run_id).version == 5
    # Every iteration of a loop is a run of the same job.
    names = sorted(e["job"]["name"] for e in events if e["eventType"] == "START")
    assert names.count(f"{PIPELINE}.for-loop-1/scale") == 2
    assert f"{PIPELINE}.for-loop-1/condition-2/keep" in names
    # Exporting again gives the same events: tools that receive them twice see the same runs.
    assert openlineage_events(result.run_id, root=str(root)) == events


def test_event_types_follow_step_states(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    _, result, events = exported
    ended = {
        e["run"]["facets"]["raypipe_execution"]["task"]: e
        for e in events[1:-1]
        if e["eventType"] != "START"
    }
    assert {t: e["eventType"] for t, e in ended.items()} == EXPECTED_END
    assert {t: e["run"]["facets"]["raypipe_execution"]["state"] for t, e in ended.items()} == {
        t: r.state.value for t, r in result.tasks.items()
    }
    failed = ended["explode"]["run"]["facets"]["errorMessage"]
    assert failed["message"] == "builtins.ValueError: cannot handle 10.0"
    assert failed["programmingLanguage"] == "PYTHON"
    assert "Traceback" in failed["stackTrace"] and "cannot handle" in failed["stackTrace"]
    assert "errorMessage" in ended["plus-one"]["run"]["facets"]  # UPSTREAM_FAILED
    assert "errorMessage" not in ended["for-loop-1[0]/condition-2/keep"]["run"]["facets"]

    # Every state a step or a run can end in has its event type.
    assert set(EVENT_TYPES) == {s.value for s in TaskState} - {"PENDING", "RUNNING"}
    assert set(RUN_EVENT_TYPES) == {s.value for s in RunStatus} - {"RUNNING"}
    assert EVENT_TYPES["SKIPPED"] == EVENT_TYPES["CANCELED"] == "ABORT"
    assert EVENT_TYPES["CACHED"] == "COMPLETE"


def test_artifacts_are_datasets_linking_the_step_that_wrote_them_to_the_steps_that_read_them(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
) -> None:
    _, result, events = exported
    made = result.tasks["make-data"].outputs["data"]
    outs = [result.tasks[f"for-loop-1[{i}]/scale"].outputs["out"] for i in range(2)]
    data = ("file", made.uri)
    out0, out1 = ("file", outs[0].uri), ("file", outs[1].uri)

    start, end = _step(events, "make-data")
    assert _datasets(end, "outputs") == {data} and _datasets(end, "inputs") == set()
    (written,) = end["outputs"]
    assert written["facets"]["version"]["datasetVersion"] == made.digest
    assert written["outputFacets"]["outputStatistics"]["size"] == made.size
    assert written["facets"]["raypipe_artifact"]["metadata"] == {"rows": 4}
    assert written["facets"]["raypipe_artifact"]["type"] == "Dataset"
    for i, out in enumerate((out0, out1)):
        start, end = _step(events, f"for-loop-1[{i}]/scale")
        assert _datasets(start, "inputs") == _datasets(end, "inputs") == {data}
        assert _datasets(start, "outputs") == set() and _datasets(end, "outputs") == {out}
        assert end["inputs"][0]["inputFacets"]["inputStatistics"]["size"] == made.size
        # parameters are not datasets: they travel in raypipe_parameters
        params = end["run"]["facets"]["raypipe_parameters"]
        assert params["inputs"] == {"factor": i + 1} and params["outputs"] == {
            "Output": 6.0 * (i + 1)
        }
        started = start["run"]["facets"]["raypipe_parameters"]  # at START: what it read
        assert started["inputs"] == {"factor": i + 1} and "outputs" not in started
    _, kept = _step(events, "for-loop-1[1]/condition-2/keep")
    assert _datasets(kept, "inputs") == {out1}
    _, skipped = _step(events, "for-loop-1[0]/condition-2/keep")
    assert _datasets(skipped, "inputs") == _datasets(skipped, "outputs") == set()
    _, counted = _step(events, "count-files")
    assert _datasets(counted, "inputs") == {out0, out1} and counted["outputs"] == []
    counted_values = counted["run"]["facets"]["raypipe_parameters"]
    assert counted_values["outputs"] == {"Output": 2} and "inputs" not in counted_values
    # In-memory objects are not datasets either: raypipe_objects has their type and size.
    _, stacked = _step(events, "stack")
    assert stacked["inputs"] == [] and stacked["outputs"] == []
    arrays = stacked["run"]["facets"]["raypipe_objects"]["inputs"]["arrays"]
    assert [a["type"] for a in arrays] == ["numpy.ndarray", "numpy.ndarray"]

    # Across all events: each artifact is an output of exactly the job that wrote it.
    writers = {d: e["job"]["name"] for e in events for d in _datasets(e, "outputs") if e["outputs"]}
    assert writers == {
        data: f"{PIPELINE}.make-data",
        out0: f"{PIPELINE}.for-loop-1/scale",
        out1: f"{PIPELINE}.for-loop-1/scale",
    }


def test_dataset_names_follow_openlineage_naming() -> None:
    cases = {
        "/data/raw.csv": naming.LocalFileSystem(path="/data/raw.csv"),
        "s3://KEY:SECRET@bucket/a/b/model?endpoint_override=localhost:9000": naming.S3(
            bucket_name="bucket", object_key="a/b/model"
        ),
        "gs://bucket/a/model": naming.GCS(bucket_name="bucket", object_key="a/model"),
        "hdfs://namenode:8020/a/model": naming.HDFS(
            namenode_host="namenode", namenode_port="8020", path="/a/model"
        ),
    }
    for uri, expected in cases.items():
        assert dataset_name(uri) == (expected.get_namespace(), expected.get_name()), uri


# The command line -----------------------------------------------------------------------


def test_cli_writes_one_event_per_line_to_stdout_or_a_file(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, result, events = exported
    args = ["lineage", "export", result.run_id, "--format", "openlineage", "--root", str(root)]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == events

    target = tmp_path / "run.ndjson"
    assert main([*args, "-o", str(target), "--namespace", "ml-team"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"wrote {len(events)} OpenLineage events of run {result.run_id}" in captured.err
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(written) == len(events)
    assert {e["job"]["namespace"] for e in written} == {"ml-team"}
    assert {e["run"]["facets"]["parent"]["job"]["namespace"] for e in written[1:-1]} == {"ml-team"}


def test_cli_unknown_run_and_bad_arguments_exit_2(
    exported: tuple[Path, RunResult, list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, result, _ = exported
    args = ["lineage", "export", "0" * 32, "--format", "openlineage", "--root", str(root)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"no run '{'0' * 32}'" in err and str(root) in err and "raypipe lineage sql" in err
    with pytest.raises(LineageError, match="no run 'nope'"):
        openlineage_events("nope", root=str(root))
    with pytest.raises(ValueError, match="namespace"):
        openlineage_events(result.run_id, root=str(root), namespace=" ")

    unwritable = tmp_path / "missing" / "run.ndjson"
    args = ["lineage", "export", result.run_id, "--format", "openlineage", "--root", str(root)]
    assert main([*args, "-o", str(unwritable)]) == 2
    assert f"cannot write {unwritable}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # --format is required
        main(["lineage", "export", result.run_id, "--root", str(root)])
    assert exited.value.code == 2


# The vendored schema --------------------------------------------------------------------


def test_the_vendored_schema_is_the_one_the_official_client_is_generated_from() -> None:
    """tests/data/openlineage/OpenLineage-2-0-2.json has the definitions, fields and
    required fields of the spec openlineage-python's classes are generated from."""
    base_url = SCHEMA["$id"]
    assert base_url == "https://openlineage.io/spec/2-0-2/OpenLineage.json"
    generated = {
        name: cls
        for name, cls in vars(ol).items()
        if isinstance(cls, type)
        and hasattr(cls, "_get_schema")
        and cls._get_schema().startswith(base_url + "#/$defs/")
    }
    assert {c._get_schema().rpartition("/")[2] for c in generated.values()} == set(generated)
    assert set(SCHEMA["$defs"]) == set(generated)
    for name, cls in generated.items():
        properties, required, _ = _collect(SCHEMA["$defs"][name])
        fields = {f.name for f in attr.fields(cls)}
        assert properties == fields, name
        mandatory = {f.name for f in attr.fields(cls) if f.default is attr.NOTHING}
        assert mandatory <= required, name
    event_type = _collect(SCHEMA["$defs"]["RunEvent"])[2]["eventType"]
    assert event_type["enum"] == [t.value for t in ol.EventType]


def _collect(
    definition: dict[str, Any],
) -> tuple[set[str], set[str], dict[str, Any]]:
    """The property names, required names and properties of a definition, through its
    ``allOf`` parts and ``$ref`` s."""
    if "$ref" in definition:
        return _collect(SCHEMA["$defs"][definition["$ref"].rpartition("/")[2]])
    properties: dict[str, Any] = dict(definition.get("properties", {}))
    required = set(definition.get("required", []))
    for part in definition.get("allOf", []):
        names, needed, found = _collect(part)
        properties.update(found)
        required |= needed
    return set(properties), required, properties
