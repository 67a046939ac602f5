"""``raypipe.replay``: run one step of a past run again, here, with the inputs it had.

The step's function is taken from the run's manifest (the IR it ran, with the code by
value), its inputs from the run's lineage: parameters from their recorded values,
artifacts from their URIs, in-memory objects from what their producer stored for the
cache. The function runs in this process, so a breakpoint in it stops there. Output
artifacts go to a fresh temporary directory, never over the run's own.

Example:
    >>> replayed = raypipe.replay(result.run_id, "train")    # doctest: +SKIP
    >>> replayed.value                                        # what train returned
    0.93
    >>> raypipe.replay(run_id, "train", debug=True)           # doctest: +SKIP  (pdb at entry)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.control import FINAL_STATUS_TYPE, PipelineTaskFinalStatus
from raypipe.errors import RaypipeError
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.cache import load_object, lookup
from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.manifest import RunManifest
from raypipe.runtime.result import ArtifactRecord
from raypipe.spec.graph import task_at
from raypipe.spec.io import loads
from raypipe.spec.models import ComponentSpec, PipelineSpec
from raypipe.spec.packaging import decode_payload

__all__ = ["ReplayError", "Replayed", "replay"]


class ReplayError(RaypipeError):
    """A step cannot be replayed: unknown, not a Python step, or inputs not recorded."""

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        self.missing = missing or []
        super().__init__(message)


@dataclass
class Replayed:
    """What a replayed step returned, its inputs, and where its output artifacts went."""

    run_id: str
    task: str
    value: Any
    inputs: dict[str, Any]
    outputs: dict[str, Artifact] = field(default_factory=dict)


def replay(
    run_id: str,
    task: str,
    *,
    inputs: dict[str, Any] | None = None,
    debug: bool = False,
    lineage_root: str | None = None,
) -> Replayed:
    """Run ``task`` of run ``run_id`` again in this process with its recorded inputs.

    Args:
        run_id: the run (``result.run_id``).
        task: the step's name in the run's results, e.g. ``"for-loop-1[2]/train"``.
        inputs: values for inputs that were not recorded (or to override recorded ones).
        debug: stop in ``pdb`` at the start of the step's function.
        lineage_root: where the run's lineage is (default: the configured lineage root).

    Raises:
        ReplayError: naming the inputs whose values were not stored (in-memory objects
            whose producer did not persist them, parameters too long to record), or a
            task that is not a Python step of that run.
        RunNotResumableError: no manifest for ``run_id`` under this RAYPIPE_HOME.
    """
    from raypipe import lineage

    config = RuntimeConfig.from_env()
    manifest = RunManifest.load(config.home, run_id)
    spec = loads(manifest.spec, source=f"run {run_id}")
    component = _component_at(spec, task)
    store = ArtifactStore(manifest.artifact_root)
    con = lineage.connect(lineage_root)
    try:
        rows = con.execute(
            """
            SELECT i.name, i.position, i.kind, i.uri, i.artifact_type, i.value, i.digest,
                   x.cache_key, i.producer_output, any_value(a.metadata)
            FROM events i
            LEFT JOIN executions x ON x.execution_id = i.producer_execution_id
            LEFT JOIN artifacts a ON a.uri = i.uri
            WHERE i.execution_id = ? AND i.direction = 'input'
            GROUP BY ALL
            ORDER BY i.name, i.position
            """,
            [f"{run_id}/{task}"],
        ).fetchall()
    finally:
        con.close()
    if not rows and component.inputs and not inputs:
        raise ReplayError(
            f"{spec.name}.{task}: run {run_id} recorded no inputs for it in the lineage "
            "store (was the run tracked, and did the step start?)"
        )
    values: dict[str, Any] = {}
    missing: list[str] = []
    staging = Path(tempfile.mkdtemp(prefix="raypipe-replay-inputs-"))
    for name, position, kind, uri, artifact_type, value, digest, key, output, meta in rows:
        if kind == "artifact":
            got: Any = _MISSING
            if uri is not None:
                record = ArtifactRecord(
                    name=Path(uri.split("?")[0]).name,
                    type=artifact_type or "Artifact",
                    uri=uri,
                    metadata=json.loads(meta) if meta else {},
                )
                got = store.open_input(record, component.inputs[name].type, staging)
        elif kind == "parameter" and (value is not None or digest is None):
            got = None if value is None else json.loads(value)
        else:  # an object, or a parameter too long to record: what its producer stored
            got = _from_producer(store, key, output)
        if got is _MISSING:
            missing.append(name)
            continue
        if position is None:
            values[name] = got
        else:
            values.setdefault(name, []).append(got)
    values.update(inputs or {})
    missing = [name for name in dict.fromkeys(missing) if name not in (inputs or {})]
    if missing:
        raise ReplayError(
            f"{spec.name}.{task}: these inputs of run {run_id} were not stored, so they "
            f"cannot be replayed: {', '.join(missing)}; pass them with inputs={{...}}",
            missing=missing,
        )
    assert component.python is not None
    func = cloudpickle.loads(decode_payload(component.python))
    if isinstance(func, type):  # an actor component: build the instance once, call it
        func = func()
    outputs_dir = Path(tempfile.mkdtemp(prefix=f"raypipe-replay-{task.replace('/', '_')}-"))
    outputs: dict[str, Artifact] = {}
    for name, spec_out in component.outputs.items():
        if spec_out.source == "parameter":
            cls = ARTIFACT_TYPES.get(spec_out.type, Artifact)
            path = outputs_dir / name
            outputs[name] = cls(name=name, uri=str(path), path=str(path))
    for name, spec_in in component.inputs.items():
        if spec_in.type == FINAL_STATUS_TYPE and isinstance(values.get(name), dict):
            values[name] = PipelineTaskFinalStatus(**values[name])
    if debug:
        import pdb

        pdb.runcall(func, **values, **outputs)
        result = None
    else:
        result = func(**values, **outputs)
    return Replayed(run_id=run_id, task=task, value=result, inputs=values, outputs=outputs)


_MISSING = object()


def _from_producer(store: ArtifactStore, key: str | None, output: str | None) -> Any:
    """A value its producer stored for the cache, or _MISSING."""
    if key is None or output is None:
        return _MISSING
    entry = lookup(store, key)
    if entry is None or output not in entry.outputs:
        return _MISSING
    stored = entry.outputs[output]
    if stored.kind == "parameter":
        return stored.value
    if stored.kind == "artifact":
        return stored.artifact
    return load_object(store, stored)


def _component_at(spec: PipelineSpec, task: str) -> ComponentSpec:
    """The component a step of a run ran."""
    found = task_at(spec, task)
    if found is None:
        raise ReplayError(f"{spec.name}: no task {task!r} in the pipeline")
    component = spec.components[found.component]
    if component.python is None:
        raise ReplayError(f"{spec.name}.{task}: not a Python step (a loop, a branch or a DAG)")
    return component
