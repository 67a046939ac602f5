"""A run's lineage as OpenLineage run events, for the tools that already speak it.

:func:`openlineage_events` reads one run from the lineage store (the views of
:func:`~raypipe.tracking.lineage.connect`) and returns the `OpenLineage
<https://openlineage.io>`_ ``RunEvent`` s (spec 2-0-2) a live emitter would have sent:

================================ ======================================================
raypipe                          OpenLineage
================================ ======================================================
the pipeline run                 a run of job ``{pipeline}`` (``runId``: raypipe's run
                                 id as a UUID); START, then COMPLETE / FAIL / ABORT
each step (execution)            a run of job ``{pipeline}.{task}`` with loop indices
                                 removed (every iteration is a run of the same job);
                                 ``runId`` a UUID5 of the execution; a ``parent`` facet
                                 naming the pipeline run; START, then its end event
step state                       SUCCEEDED, CACHED -> COMPLETE; FAILED, UPSTREAM_FAILED
                                 -> FAIL; CANCELED, SKIPPED -> ABORT
a file artifact read / written   an input / output dataset: namespace from the URI's
                                 scheme and authority (``file``, ``s3://bucket``), name
                                 its path; facets ``version`` (content sha256),
                                 ``inputStatistics`` / ``outputStatistics`` (bytes)
parameters, in-memory objects    not datasets: custom run facets ``raypipe_parameters``
                                 (values) and ``raypipe_objects`` (type and size)
================================ ======================================================

Times are the rows' start and end times (a step that never started has its START and
end at the time it was recorded). Events come in order: the pipeline's START, the
steps' events by time, the pipeline's end. A run still going has no end event yet.

Example:
    >>> events = openlineage_events(result.run_id)                      # doctest: +SKIP
    >>> [(e["eventType"], e["job"]["name"]) for e in events][:3]         # doctest: +SKIP
    [('START', 'train-eval'), ('START', 'train-eval.prepare'), ('COMPLETE', 'train-eval.prepare')]
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.query import _connection, _run
from raypipe.tracking.lineage.sources import scoped_source

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "EVENT_TYPES",
    "OPENLINEAGE_SCHEMA_URL",
    "OPENLINEAGE_SPEC_VERSION",
    "RUN_EVENT_TYPES",
    "dataset_name",
    "openlineage_events",
    "openlineage_run_id",
]


OPENLINEAGE_SPEC_VERSION = "2-0-2"
"""The OpenLineage spec version the events follow."""

OPENLINEAGE_SCHEMA_URL = (
    f"https://openlineage.io/spec/{OPENLINEAGE_SPEC_VERSION}/OpenLineage.json#/$defs/RunEvent"
)
"""Every event's ``schemaURL``."""

EVENT_TYPES: dict[str, str] = {
    "SUCCEEDED": "COMPLETE",
    "CACHED": "COMPLETE",  # its outputs exist: an earlier execution made them
    "FAILED": "FAIL",
    "UPSTREAM_FAILED": "FAIL",  # never ran because a step it needed failed
    "CANCELED": "ABORT",
    "SKIPPED": "ABORT",  # a branch not taken: it did not run, and nothing went wrong
}
"""The ``eventType`` that ends a step's run, by the step's state."""

RUN_EVENT_TYPES: dict[str, str] = {
    "SUCCEEDED": "COMPLETE",
    "FAILED": "FAIL",
    "CANCELED": "ABORT",
}
"""The ``eventType`` that ends the pipeline's run, by the run's status."""

# The standard facets used, at the versions of the openlineage-python client 1.54.
_STANDARD = "https://openlineage.io/spec/facets"
_FACET_SCHEMAS = {
    "parent": f"{_STANDARD}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "errorMessage": f"{_STANDARD}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "processing_engine": (
        f"{_STANDARD}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
    ),
    "jobType": f"{_STANDARD}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "version": (
        f"{_STANDARD}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
    ),
    "inputStatistics": (
        f"{_STANDARD}/1-0-0/InputStatisticsInputDatasetFacet.json"
        "#/$defs/InputStatisticsInputDatasetFacet"
    ),
    "outputStatistics": (
        f"{_STANDARD}/1-0-2/OutputStatisticsOutputDatasetFacet.json"
        "#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
}

# Object stores name a dataset by its key (no leading slash), as OpenLineage's naming does.
_OBJECT_STORES = {"s3", "s3a", "s3n", "gs", "gcs"}
_AZURE = {"abfs", "abfss", "wasb", "wasbs"}  # their authority is container@account
_REPOSITORY = "https://github.com/raypipe/raypipe"
_LOOP_INDEX = re.compile(r"\[\d+\]")
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, _REPOSITORY)

_RUN_COLUMNS = (
    "run_id, run_name, pipeline, experiment, status, start_time, end_time, spec_digest, "
    "git_commit, arguments, outputs, error, artifact_root, resumed"
)
_EXECUTION_COLUMNS = (
    "execution_id, task, scope, component, display_name, component_digest, state, "
    "attempts, start_time, end_time, duration_s, node_id, node_ip, error_type, "
    "error_message, cache_key, cached, recorded_at"
)
_EVENT_COLUMNS = (
    "e.execution_id, e.direction, e.name, e.position, e.kind, e.uri, e.artifact_type, "
    "e.value, e.digest, e.size, e.object_type, e.producer_execution_id, e.producer_output"
)


def openlineage_events(
    run_id: str,
    *,
    root: str | None = None,
    namespace: str = "raypipe",
    connection: duckdb.DuckDBPyConnection | None = None,
) -> list[dict[str, Any]]:
    """The OpenLineage ``RunEvent`` s of one run, as JSON-ready dicts, in order.

    One START and one COMPLETE / FAIL / ABORT for the pipeline run (job ``{pipeline}``),
    and the same pair for each step (job ``{pipeline}.{task}``, loop indices removed),
    whose ``parent`` facet names the pipeline run. File artifacts are the datasets;
    parameters and in-memory objects travel in the custom facets ``raypipe_parameters``
    and ``raypipe_objects``. See the module's docstring and docs/lineage.md for the
    whole mapping.

    Example:
        >>> events = openlineage_events(result.run_id, namespace="ml-team")  # doctest: +SKIP
        >>> with open("run.ndjson", "w") as f:                                # doctest: +SKIP
        ...     f.writelines(json.dumps(e) + "\\n" for e in events)

    Args:
        run_id: raypipe's run id (``RunResult.run_id``).
        root: the lineage root (default ``RAYPIPE_LINEAGE_ROOT``, else
            ``$RAYPIPE_HOME/lineage``); ignored with ``connection``.
        namespace: the OpenLineage namespace of the jobs (the pipeline and its steps).
        connection: an open connection from :func:`~raypipe.tracking.lineage.connect`.

    Raises:
        LineageError: no run ``run_id`` is recorded under the root, or it cannot be read.
        ValueError: ``namespace`` is empty.
    """
    if not isinstance(namespace, str) or not namespace.strip():
        raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
    with _connection(root, connection) as con:
        run = _run_row(con, run_id)
        steps = _rows(
            con,
            f"SELECT {_EXECUTION_COLUMNS} FROM ({scoped_source(con, 'executions', {run_id})}) "
            "WHERE run_id = $run QUALIFY row_number() OVER "
            "(PARTITION BY execution_id ORDER BY recorded_at DESC) = 1",
            {"run": run_id},
            what="OpenLineage export: executions",
        )
        values = _rows(
            con,
            f"SELECT {_EVENT_COLUMNS} FROM ({scoped_source(con, 'events', {run_id})}) e "
            f"SEMI JOIN ({scoped_source(con, 'executions', {run_id})}) x "
            "ON x.execution_id = e.execution_id AND x.recorded_at = e.recorded_at "
            "WHERE e.run_id = $run ORDER BY e.execution_id, e.direction, e.name, e.position",
            {"run": run_id},
            what="OpenLineage export: events",
        )
        metadata = {
            str(r["uri"]): r["metadata"]
            for r in _rows(
                con,
                f"SELECT uri, metadata FROM ({scoped_source(con, 'artifacts', {run_id})}) "
                "WHERE run_id = $run",
                {"run": run_id},
                what="OpenLineage export: artifacts",
            )
        }
        tracebacks = {
            str(r["execution_id"]): r["traceback"]
            for r in _rows(
                con,
                f"SELECT execution_id, traceback FROM "
                f"({scoped_source(con, 'attempts', {run_id})}) "
                "WHERE run_id = $run AND NOT succeeded AND traceback IS NOT NULL "
                "QUALIFY row_number() OVER "
                "(PARTITION BY execution_id ORDER BY recorded_at DESC, attempt DESC) = 1",
                {"run": run_id},
                what="OpenLineage export: attempts",
            )
        }
    return _Exporter(run, namespace, metadata).events(steps, values, tracebacks)


def openlineage_run_id(run_id: str, task: str | None = None) -> str:
    """The OpenLineage ``runId`` of a raypipe run (``task`` None) or of one of its steps.

    A run's is its raypipe id written as a UUID (raypipe's run ids are UUID4s; any other
    id gets a UUID5 of it); a step's is the UUID5 of its task name in the run's UUID. The
    same run and task always give the same id, so exporting twice sends the same runs.

    Example:
        >>> openlineage_run_id("3f2a9c1e8b7d4e6fa0b1c2d3e4f50617")
        '3f2a9c1e-8b7d-4e6f-a0b1-c2d3e4f50617'
        >>> len(openlineage_run_id("3f2a9c1e8b7d4e6fa0b1c2d3e4f50617", "for-loop-1[0]/train"))
        36
    """
    try:
        run_uuid = uuid.UUID(run_id)
    except ValueError:
        run_uuid = uuid.uuid5(_RUN_NAMESPACE, run_id)
    return str(run_uuid if task is None else uuid.uuid5(run_uuid, task))


def dataset_name(uri: str) -> tuple[str, str]:
    """An artifact URI as an OpenLineage dataset ``(namespace, name)``.

    Follows OpenLineage's naming: a local path is namespace ``file`` and its path; an
    object store's (``s3``, ``gs``, ``abfss``...) is ``scheme://bucket`` (Azure:
    ``scheme://container@account...``) and the key; anything else ``scheme://authority``
    and the path. Credentials and the query (``?endpoint_override=...``) are dropped.

    Example:
        >>> dataset_name("/home/me/.raypipe/artifacts/p/3f2a/train/model")
        ('file', '/home/me/.raypipe/artifacts/p/3f2a/train/model')
        >>> dataset_name("s3://KEY:SECRET@bucket/artifacts/p/3f2a/train/model?region=eu-west-1")
        ('s3://bucket', 'artifacts/p/3f2a/train/model')
        >>> dataset_name("hdfs://namenode:8020/data/raw.csv")
        ('hdfs://namenode:8020', '/data/raw.csv')
    """
    if "://" not in uri:
        return "file", uri
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    user, at, host = parts.netloc.rpartition("@")
    if scheme in _AZURE and at and ":" not in user:
        host = parts.netloc  # container@account...: no credentials in it
    if scheme == "file":
        return ("file" if host in ("", "localhost") else f"file://{host}"), parts.path
    if scheme in _OBJECT_STORES or scheme in _AZURE:
        return f"{scheme}://{host}", parts.path.lstrip("/")
    return f"{scheme}://{host}", parts.path or "/"


# -- building the events ------------------------------------------------------------------


class _Exporter:
    """Turns one run's rows into events; holds what every event of the run shares."""

    def __init__(self, run: dict[str, Any], namespace: str, metadata: dict[str, Any]) -> None:
        self.run = run
        self.namespace = namespace
        self.pipeline = str(run["pipeline"] or "raypipe-run")
        self.run_uuid = openlineage_run_id(str(run["run_id"]))
        self.metadata = metadata

    def events(
        self,
        steps: list[dict[str, Any]],
        values: list[dict[str, Any]],
        tracebacks: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """The pipeline's START, every step's START and end by time, the pipeline's end."""
        by_execution: dict[str, list[dict[str, Any]]] = {}
        written = {
            (v["execution_id"], v["name"]): v
            for v in values
            if v["direction"] == "output" and v["kind"] == "object"
        }
        for value in values:
            if value["kind"] == "object" and value["object_type"] is None:
                # a reader may not see an object's type: its writer recorded it
                made = written.get((value["producer_execution_id"], value["producer_output"]))
                if made is not None:
                    value = {**value, "object_type": made["object_type"], "size": made["size"]}
            by_execution.setdefault(str(value["execution_id"]), []).append(value)
        timed: list[tuple[datetime, int, str, dict[str, Any]]] = []
        for step in steps:
            eid = str(step["execution_id"])
            started = step["start_time"] or step["end_time"] or step["recorded_at"]
            ended = step["end_time"] or started
            start, end = self._step_events(
                step, started, ended, by_execution.get(eid, []), tracebacks.get(eid)
            )
            timed += [(started, 0, eid, start), (ended, 1, eid, end)]
        timed.sort(key=lambda item: item[:3])
        run = self.run
        started = run["start_time"] or run["end_time"] or (timed[0][0] if timed else None)
        if started is None:
            raise LineageError(f"run {run['run_id']}: no start time is recorded")
        events = [self._pipeline_event("START", started)]
        events += [event for *_, event in timed]
        end_type = RUN_EVENT_TYPES.get(str(run["status"]))  # None: still running
        if end_type is not None:
            events.append(self._pipeline_event(end_type, run["end_time"] or started))
        return events

    def _pipeline_event(self, event_type: str, when: datetime) -> dict[str, Any]:
        run = self.run
        ended = event_type != "START"
        facets: dict[str, Any] = {
            "processing_engine": self._engine(),
            "raypipe_run": _custom(
                run_id=run["run_id"],
                run_name=run["run_name"],
                experiment=run["experiment"],
                status=run["status"] if ended else "RUNNING",
                spec_digest=run["spec_digest"],
                git_commit=run["git_commit"],
                artifact_root=run["artifact_root"],
                resumed=run["resumed"],
            ),
        }
        arguments = _json(run["arguments"])
        outputs = _json(run["outputs"]) if ended else None
        if arguments or outputs:
            facets["raypipe_parameters"] = _custom(
                inputs=arguments or None, outputs=outputs or None
            )
        if event_type == "FAIL" and run["error"]:
            facets["errorMessage"] = _error(str(run["error"]), None)
        return self._event(event_type, when, self.run_uuid, facets, self.pipeline, "PIPELINE")

    def _step_events(
        self,
        step: dict[str, Any],
        started: datetime,
        ended: datetime,
        values: list[dict[str, Any]],
        traceback: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A step's START (what it read) and end event (what it read and wrote)."""
        state = str(step["state"])
        run_id = openlineage_run_id(str(self.run["run_id"]), str(step["task"]))
        job_name = f"{self.pipeline}.{_LOOP_INDEX.sub('', str(step['task']))}"
        inputs = [v for v in values if v["direction"] == "input"]
        outputs = [v for v in values if v["direction"] == "output"]
        described = {
            name: step[name]
            for name in (
                "execution_id",
                "task",
                "scope",
                "component",
                "display_name",
                "component_digest",
                "cache_key",
            )
        }
        start_facets: dict[str, Any] = {
            "parent": self._parent(),
            "processing_engine": self._engine(),
            "raypipe_execution": _custom(**described),
        }
        end_facets: dict[str, Any] = {
            "parent": self._parent(),
            "processing_engine": self._engine(),
            "raypipe_execution": _custom(
                **described,
                state=state,
                attempts=step["attempts"],
                cached=step["cached"],
                duration_s=step["duration_s"],
                node_id=step["node_id"],
                node_ip=step["node_ip"],
                error_type=step["error_type"],
            ),
        }
        read, written = _by_name(inputs, "parameter"), _by_name(outputs, "parameter")
        if read:
            start_facets["raypipe_parameters"] = _custom(inputs=read)
        if read or written:
            end_facets["raypipe_parameters"] = _custom(inputs=read or None, outputs=written or None)
        held, made = _by_name(inputs, "object"), _by_name(outputs, "object")
        if held or made:
            end_facets["raypipe_objects"] = _custom(inputs=held or None, outputs=made or None)
        if state == "FAILED":
            kind = f"{step['error_type']}: " if step["error_type"] else ""
            message = f"{kind}{step['error_message'] or 'the step failed'}"
            end_facets["errorMessage"] = _error(message, traceback)
        elif state == "UPSTREAM_FAILED":
            end_facets["errorMessage"] = _error("not run: a step it needs failed", None)
        start = self._event(
            "START", started, run_id, start_facets, job_name, "TASK", self._datasets(inputs)
        )
        end = self._event(
            EVENT_TYPES.get(state, "OTHER"),
            ended,
            run_id,
            end_facets,
            job_name,
            "TASK",
            self._datasets(inputs),
            self._datasets(outputs, output=True),
        )
        return start, end

    def _datasets(
        self, values: Iterable[dict[str, Any]], *, output: bool = False
    ) -> list[dict[str, Any]]:
        """One dataset per artifact URI among ``values`` (parameters and objects are not
        datasets; an artifact recorded without its URI cannot be one)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for value in values:
            if value["kind"] != "artifact" or not value["uri"]:
                continue
            uri = str(value["uri"])
            namespace, name = dataset_name(uri)
            if (namespace, name) in found:
                continue
            facets: dict[str, Any] = {
                "raypipe_artifact": _custom(
                    uri=_public(uri),
                    type=value["artifact_type"],
                    digest=value["digest"],
                    size=value["size"],
                    metadata=_json(self.metadata.get(uri)),
                )
            }
            if value["digest"]:
                facets["version"] = _facet("version", datasetVersion=value["digest"])
            dataset: dict[str, Any] = {"namespace": namespace, "name": name, "facets": facets}
            if value["size"] is not None:
                key = "outputStatistics" if output else "inputStatistics"
                statistics = {key: _facet(key, size=int(value["size"]), fileCount=1)}
                dataset["outputFacets" if output else "inputFacets"] = statistics
            found[(namespace, name)] = dataset
        return list(found.values())

    # -- facets and events

    def _event(
        self,
        event_type: str,
        when: datetime,
        run_id: str,
        run_facets: dict[str, Any],
        job_name: str,
        job_type: str,
        inputs: list[dict[str, Any]] | None = None,
        outputs: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return {
            "eventType": event_type,
            "eventTime": _iso(when),
            "producer": _producer(),
            "schemaURL": OPENLINEAGE_SCHEMA_URL,
            "run": {"runId": run_id, "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": job_name,
                "facets": {
                    "jobType": _facet(
                        "jobType", processingType="BATCH", integration="RAYPIPE", jobType=job_type
                    )
                },
            },
            "inputs": inputs or [],
            "outputs": outputs or [],
        }

    def _parent(self) -> dict[str, Any]:
        link = {
            "run": {"runId": self.run_uuid},
            "job": {"namespace": self.namespace, "name": self.pipeline},
        }
        return _facet("parent", **link, root=link)

    def _engine(self) -> dict[str, Any]:
        return _facet(
            "processing_engine",
            version=_version(),
            name="raypipe",
            openlineageAdapterVersion=_version(),
        )


def _error(message: str, traceback: str | None) -> dict[str, Any]:
    return _facet(
        "errorMessage", message=message, programmingLanguage="PYTHON", stackTrace=traceback
    )


def _facet(key: str, **fields: Any) -> dict[str, Any]:
    """A standard facet: ``_producer``, ``_schemaURL``, then its fields (None left out)."""
    return {"_producer": _producer(), "_schemaURL": _FACET_SCHEMAS[key], **_compact(fields)}


def _custom(**fields: Any) -> dict[str, Any]:
    """A raypipe facet: ``_producer``, ``_schemaURL``, then its fields (None left out)."""
    return {
        "_producer": _producer(),
        "_schemaURL": f"{_REPOSITORY}/blob/{_version()}/docs/lineage.md#raypipe-facets",
        **_compact(fields),
    }


def _by_name(values: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    """``{name: value}`` of the parameters (``kind`` "parameter") or ``{name: {"type",
    "size"}}`` of the in-memory objects (``kind`` "object") among ``values``; a collected
    input is the list of its items, in order. A parameter longer than 1,024 characters is
    not stored: ``{"sha256": ..., "length": ...}`` stands for it."""
    found: dict[str, Any] = {}
    for value in values:
        if value["kind"] != kind:
            continue
        if kind == "object":
            described = _compact({"type": value["object_type"], "size": value["size"]})
        elif value["value"] is None:
            described = _compact({"sha256": value["digest"], "length": value["size"]})
        else:
            described = json.loads(str(value["value"]))
        name = str(value["name"])
        if value["position"] is None:
            found[name] = described
        else:
            found.setdefault(name, []).append(described)  # rows come in position order
    return found


def _run_row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    rows = _rows(
        con,
        f"SELECT {_RUN_COLUMNS} FROM ({scoped_source(con, 'runs', {run_id})}) "
        "WHERE run_id = $run ORDER BY recorded_at DESC LIMIT 1",
        {"run": run_id},
        what="OpenLineage export: runs",
    )
    if rows:
        return rows[0]
    try:  # a connection from connect() knows its root (without credentials)
        _, found = _run(con, "SELECT root FROM lineage_root", None, what="lineage root")
    except LineageError:
        found = []
    where = f" under the lineage root {found[0][0]!r}" if found else ""
    raise LineageError(
        f"no run {run_id!r} is recorded{where}; list the runs recorded there with: "
        'raypipe lineage sql "SELECT run_id, pipeline, status, start_time FROM runs '
        'ORDER BY start_time DESC"'
    )


def _rows(
    con: duckdb.DuckDBPyConnection, query: str, parameters: dict[str, Any], *, what: str
) -> list[dict[str, Any]]:
    names, rows = _run(con, query, parameters, what=what)
    return [dict(zip(names, row, strict=True)) for row in rows]


def _json(text: Any) -> Any:
    """A JSON column's value (None for NULL or text that is not JSON)."""
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return str(text)


def _version() -> str:
    from raypipe import __version__  # not at import: raypipe imports this module

    return __version__


def _producer() -> str:
    """Every event's ``producer`` and every facet's ``_producer``: raypipe at its version."""
    return f"{_REPOSITORY}/tree/{_version()}"


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _public(uri: str) -> str:
    from raypipe.tracking.lineage.store import public_uri

    return public_uri(uri)


def _iso(when: datetime) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-01-02T03:04:05.123456Z``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
