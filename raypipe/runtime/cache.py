"""Step caching: keys, the index of cached results, and persisted in-memory outputs.

**Keys.** The driver computes each step's key when it submits the step, from what it
knows without fetching anything: the component's code digest, the options that change
results (``env``, ``image``, ``packages``) and an *identity* per input. A constant, a
pipeline argument or a loop item is identified by its content (sha256 of its JSON; of its
pickled bytes for an in-memory argument); an upstream output by its producer's key and
the output's name, so keys chain through the DAG like a Merkle tree and no large value is
ever hashed on the hot path. A step with ``cache=False`` is never reused, and its outputs
get identities unique to the run, so whatever reads them misses too.

**Index.** A hit needs an entry ``{artifact_root}/.raypipe-cache/{key[:2]}/{key}.json``
written by an earlier successful execution after every output was persisted: parameters
inside the entry, artifacts by their records (their files are already in the store),
in-memory objects as files next to the step's artifacts (Arrow IPC for Arrow tables,
pandas frames and numeric numpy arrays, pickle otherwise). The worker looks the entry up
before calling the function; an entry whose files have gone is a miss.

Example:
    >>> key = step_key("sha-of-code", {"env": []}, {"x": value_identity(3)})
    >>> len(key)
    64
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from collections.abc import Mapping
from typing import Any, Literal

import cloudpickle
from pydantic import BaseModel, ConfigDict, Field

from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.result import ArtifactRecord

__all__ = [
    "CACHE_DIR",
    "CacheEntry",
    "CachedOutput",
    "Persistence",
    "load_object",
    "lookup",
    "object_uri",
    "output_identity",
    "persist_object",
    "step_key",
    "unique_identity",
    "value_identity",
    "write_entry",
]

CACHE_DIR = ".raypipe-cache"
Persistence = Literal["none", "background", "sync"]


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def value_identity(value: Any) -> str:
    """The identity of a value the driver holds (a constant, an argument, a loop item).

    JSON values by their canonical JSON; anything else by its pickled bytes.
    """
    try:
        return _sha("json:" + json.dumps(value, sort_keys=True, separators=(",", ":")))
    except (TypeError, ValueError):
        pass
    # Out-of-band buffers (numpy, Arrow) are hashed where they lie, not copied first.
    buffers: list[pickle.PickleBuffer] = []
    digest = hashlib.sha256(b"pickle:")
    digest.update(cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append))
    for buffer in buffers:
        digest.update(buffer.raw())
    return digest.hexdigest()


def output_identity(step_key: str, output: str) -> str:
    """The identity of a step's output: its producer's key and the output's name."""
    return _sha(f"output:{step_key}/{output}")


def unique_identity(run_id: str, step: str) -> str:
    """A key no other execution shares: for steps that must not be reused."""
    return _sha(f"unique:{run_id}/{step}")


def step_key(component_digest: str, options: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """A step's cache key from its code, result-changing options and input identities."""
    material = json.dumps(
        {"code": component_digest, "options": options, "inputs": dict(sorted(inputs.items()))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return _sha(material)


class CachedOutput(BaseModel):
    """One output of a cached execution, as the index keeps it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["parameter", "artifact", "object"]
    value: Any = None  # a parameter's value
    artifact: ArtifactRecord | None = None
    uri: str | None = None  # a persisted object's file
    format: Literal["arrow-table", "arrow-tensor", "pandas", "pickle"] | None = None


class CacheEntry(BaseModel):
    """What a hit restores: every output of the execution that wrote the entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    pipeline: str
    run_id: str
    task: str
    created: float = Field(description="seconds since the epoch")
    outputs: dict[str, CachedOutput]


def _entry_uri(store: ArtifactStore, key: str) -> str:
    return store.uri(CACHE_DIR, key[:2], f"{key}.json")


def lookup(store: ArtifactStore, key: str) -> CacheEntry | None:
    """The entry for ``key``, or None if there is none or a file it names has gone."""
    if store.is_local:  # the common miss costs one failed open, not a pyarrow.fs call
        try:
            with open(os.path.join(store.local_path, CACHE_DIR, key[:2], f"{key}.json"), "rb") as f:
                text: bytes | None = f.read()
        except FileNotFoundError:
            return None
    else:
        text = store.read_bytes(_entry_uri(store, key))
    if text is None:
        return None
    try:
        entry = CacheEntry.model_validate_json(text)
    except ValueError:  # being written right now (or damaged): not a hit
        return None
    for output in entry.outputs.values():
        location = output.uri or (output.artifact.uri if output.artifact is not None else None)
        if location is not None and not store.exists(location):
            return None
    return entry


def write_entry(
    store: ArtifactStore,
    key: str,
    pipeline: str,
    run_id: str,
    task: str,
    outputs: dict[str, Any],
) -> None:
    """Publish the entry of ``key`` (after its files are written): readers see all of it or
    nothing. ``outputs`` holds :class:`CachedOutput` s as plain dicts: this runs once per
    step, so it skips building models (a lookup validates what it reads).
    """
    entry = {
        "key": key,
        "pipeline": pipeline,
        "run_id": run_id,
        "task": task,
        "created": time.time(),
        "outputs": outputs,
    }
    data = json.dumps(entry, separators=(",", ":")).encode()
    if not store.is_local:
        store.write_bytes_atomic(_entry_uri(store, key), data)
        return
    # Local roots: plain system calls, a few times cheaper than going through pyarrow.fs.
    folder = os.path.join(store.local_path, CACHE_DIR, key[:2])
    if folder not in _MADE:
        os.makedirs(folder, exist_ok=True)
        _MADE.add(folder)
    # One write of the whole entry, no temporary file and rename: a reader that catches
    # it half written sees invalid JSON, which lookup() takes for a miss.
    with open(os.path.join(folder, f"{key}.json"), "wb") as handle:
        handle.write(data)


_MADE: set[str] = set()  # entry folders this process created


def persist_object(store: ArtifactStore, uri: str, value: Any) -> CachedOutput:
    """Write an in-memory output to ``uri`` in the best format for it."""
    import pyarrow as pa

    fmt: Literal["arrow-table", "arrow-tensor", "pandas", "pickle"]
    buffer = pa.BufferOutputStream()
    if isinstance(value, (pa.Table, pa.RecordBatch)):
        fmt = "arrow-table"
        table = value if isinstance(value, pa.Table) else pa.Table.from_batches([value])
        with pa.ipc.new_file(buffer, table.schema) as writer:
            writer.write_table(table)
    elif _is_numeric_ndarray(value):
        fmt = "arrow-tensor"
        pa.ipc.write_tensor(pa.Tensor.from_numpy(value), buffer)
    elif type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas"):
        fmt = "pandas"
        table = pa.Table.from_pandas(value)
        with pa.ipc.new_file(buffer, table.schema) as writer:
            writer.write_table(table)
    else:
        fmt = "pickle"
        buffer.write(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    store.write_bytes_atomic(uri, buffer.getvalue().to_pybytes())
    return CachedOutput(kind="object", uri=uri, format=fmt)


def load_object(store: ArtifactStore, output: CachedOutput) -> Any:
    """Read back an object :func:`persist_object` wrote."""
    import pyarrow as pa

    assert output.uri is not None
    data = store.read_bytes(output.uri)
    if data is None:
        raise FileNotFoundError(f"the cached output {output.uri} has gone")
    if output.format == "pickle":
        return pickle.loads(data)
    reader = pa.BufferReader(data)
    if output.format == "arrow-tensor":
        return pa.ipc.read_tensor(reader).to_numpy()
    table = pa.ipc.open_file(reader).read_all()
    return table.to_pandas() if output.format == "pandas" else table


def _is_numeric_ndarray(value: Any) -> bool:
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    return (
        type(value).__name__ == "ndarray"
        and type(value).__module__ == "numpy"
        and kind in ("b", "i", "u", "f")
        and value.flags.c_contiguous
    )


def object_uri(store: ArtifactStore, pipeline: str, run_id: str, task: str, output: str) -> str:
    """Where a step's persisted in-memory output goes: beside its artifacts."""
    return store.uri(pipeline, run_id, task, ".objects", output)
