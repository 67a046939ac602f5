"""The lineage tables as Parquet stores them: one Arrow schema per table.

Five tables, each an append-only set of Parquet files (see :mod:`.store` for the layout):

========== ===================================================================================
runs       one row when a run starts (``status`` RUNNING) and one when it ends; the
           ``runs`` view of :func:`~raypipe.tracking.lineage.connect` keeps the latest
executions one row per step that ended, whatever its state (SKIPPED and UPSTREAM_FAILED too)
attempts   one row per try of a step, with the error of each failed one
artifacts  one row per file artifact a step wrote
events     one row per thing a step read (``direction = 'input'``) or wrote (``'output'``):
           a parameter, an artifact or an in-memory object, with digest and size; an
           input names the execution and output that produced it
========== ===================================================================================

Every row carries ``run_id`` (also the directory partition) and ``recorded_at``. Times are
UTC timestamps (microseconds). JSON values (arguments, parameter values, metadata) are
stored as JSON text.

Example:
    >>> TABLES["executions"].field("state").type
    DataType(string)
    >>> sorted(TABLES)
    ['artifacts', 'attempts', 'events', 'executions', 'runs']
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ARTIFACTS",
    "ATTEMPTS",
    "EVENTS",
    "EXECUTIONS",
    "RUNS",
    "SCHEMA_VERSION",
    "TABLES",
    "TIMESTAMP",
]

SCHEMA_VERSION = 1  # stored in each file's metadata; bump when a column changes meaning

TIMESTAMP = pa.timestamp("us", tz="UTC")

RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("run_name", pa.string()),
        pa.field("pipeline", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # RUNNING, SUCCEEDED, FAILED, CANCELED
        pa.field("start_time", TIMESTAMP),
        pa.field("end_time", TIMESTAMP),
        pa.field("spec_digest", pa.string()),  # sha256 of the pipeline's IR
        pa.field("git_commit", pa.string()),
        pa.field("arguments", pa.string()),  # JSON object: parameter values, artifact records
        pa.field("outputs", pa.string()),  # JSON object, once the run ended
        pa.field("error", pa.string()),
        pa.field("artifact_root", pa.string()),
        pa.field("resumed", pa.bool_()),
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

EXECUTIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),  # "{run_id}/{task}"
        pa.field("task", pa.string(), nullable=False),  # e.g. for-loop-1[3]/condition-2/train
        pa.field("scope", pa.string()),  # the task's enclosing path, e.g. for-loop-1[3]/condition-2
        pa.field("component", pa.string()),
        pa.field("display_name", pa.string()),
        pa.field("component_digest", pa.string()),  # sha256 of the component's code
        pa.field("state", pa.string(), nullable=False),
        pa.field("attempts", pa.int32()),
        pa.field("start_time", TIMESTAMP),
        pa.field("end_time", TIMESTAMP),
        pa.field("duration_s", pa.float64()),
        pa.field("node_id", pa.string()),
        pa.field("node_ip", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("cache_key", pa.string()),
        pa.field("cached", pa.bool_()),
        pa.field("tracked", pa.bool_()),
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

ATTEMPTS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),  # 1, 2, ...
        pa.field("start_time", TIMESTAMP),
        pa.field("end_time", TIMESTAMP),
        pa.field("duration_s", pa.float64()),
        pa.field("succeeded", pa.bool_(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("traceback", pa.string()),
        pa.field("log_tail", pa.string()),
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

ARTIFACTS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),  # the step that wrote it
        pa.field("output", pa.string(), nullable=False),  # the step's output name
        pa.field("position", pa.int32()),  # index within a list output, else null
        pa.field("uri", pa.string(), nullable=False),
        pa.field("type", pa.string()),  # Dataset, Model, ...
        pa.field("digest", pa.string()),  # sha256 of the content
        pa.field("size", pa.int64()),  # bytes
        pa.field("metadata", pa.string()),  # JSON object
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

EVENTS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("execution_id", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),  # input | output
        pa.field("name", pa.string(), nullable=False),  # the input's or output's name
        pa.field("position", pa.int32()),  # index within a collected input / list output
        pa.field("kind", pa.string(), nullable=False),  # parameter | artifact | object
        pa.field("uri", pa.string()),  # artifact
        pa.field("artifact_type", pa.string()),  # artifact
        pa.field("value", pa.string()),  # parameter: JSON, when at most 1024 characters
        pa.field("digest", pa.string()),  # artifact: content sha256; parameter: sha256 of JSON
        pa.field("size", pa.int64()),  # artifact: bytes; parameter: JSON chars; object: nbytes
        pa.field("object_type", pa.string()),  # object: qualified type name
        pa.field("producer_execution_id", pa.string()),  # input: who wrote it, if a step did
        pa.field("producer_output", pa.string()),  # input: which output of that step
        pa.field("identity", pa.string()),  # input: what the step's cache key saw of it
        pa.field("attempt", pa.int32()),  # the attempt that read or wrote it (the last)
        pa.field("node_id", pa.string()),
        pa.field("time", TIMESTAMP),  # input: when the step started; output: when it ended
        pa.field("recorded_at", TIMESTAMP, nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "runs": RUNS,
    "executions": EXECUTIONS,
    "attempts": ATTEMPTS,
    "artifacts": ARTIFACTS,
    "events": EVENTS,
}
"""Every lineage table by name, in the order a run fills them."""
