"""Lineage at scale: the upstream query for one artifact with 1,000,000 executions stored.

Writes a synthetic lineage store with the lineage writer's own schema and file layout
(``LineageStore.write``: one directory per table and run, as runs write it), then times
``raypipe.lineage.upstream(uri)`` for artifacts of many different runs, before and after
``raypipe.lineage.compact()``, and reports the bytes stored per execution.

The synthetic pipeline (one run): ``--layers`` layers of ``--width`` steps. A step of
layer 0 reads a dataset from outside (one of ten shared by all runs) and a constant; a
step ``i`` of layer ``l > 0`` reads the artifact of step ``i`` of layer ``l - 1``, the
score (a parameter) of step ``i + 1`` of layer ``l - 1``, and a constant. Each step writes
an artifact and a score. The upstream of a last-layer artifact is then 55 executions over
10 layers (with the defaults), about 150 rows, ending at the outside dataset, which is
looked up among all artifacts of all runs.

Not run by CI. With the defaults (2,000 runs of 500 steps) it takes a few minutes and
about 1 GB of disk in a temporary directory (deleted at exit; ``--keep DIR`` keeps it).

Usage: ``python benchmarks/lineage_query.py [--runs 2000] [--width 50] [--layers 10]``
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from raypipe.tracking.lineage import TABLES, compact, connect, upstream
from raypipe.tracking.lineage.store import LineageStore, file_name, new_token

_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
_NODE = "7f3c9a0e" * 7  # a Ray node id (56 hex characters)


def _write_run(store: LineageStore, number: int, width: int, layers: int, token: str) -> str:
    """One run's rows in every table, one part each, as the writer lays them out."""
    run = uuid.UUID(int=random.getrandbits(128)).hex
    pipeline = f"pipeline-{number % 5}"
    start = _EPOCH + timedelta(minutes=number)
    n = width * layers
    layer_of = [k // width for k in range(n)]
    index_of = [k % width for k in range(n)]
    tasks = [f"for-loop-1[{i}]/step-{layer}" for layer, i in zip(layer_of, index_of, strict=True)]
    eids = [f"{run}/{t}" for t in tasks]
    uris = [f"/data/artifacts/{pipeline}/{run}/{t}/data" for t in tasks]
    times = [start + timedelta(seconds=k) for k in range(n)]
    ends = [t + timedelta(milliseconds=500) for t in times]
    digests = [uuid.UUID(int=random.getrandbits(128)).hex * 2 for _ in range(n)]
    code = [f"{layer:02d}" * 32 for layer in layer_of]

    def table(name: str, columns: dict[str, Any]) -> None:
        data = pa.table(columns, schema=TABLES[name])
        store.write(name, store.run_dir(name, run), data, file_name("part", token, 0))

    table(
        "runs",
        {
            "run_id": [run, run],
            "run_name": [f"{pipeline}-{number}"] * 2,
            "pipeline": [pipeline] * 2,
            "experiment": [pipeline] * 2,
            "status": ["RUNNING", "SUCCEEDED"],
            "start_time": [start, start],
            "end_time": [None, ends[-1]],
            "spec_digest": ["ab" * 32] * 2,
            "git_commit": ["cd" * 20] * 2,
            "arguments": ['{"lr": 0.01}'] * 2,
            "outputs": [None, "{}"],
            "error": [None, None],
            "artifact_root": ["/data/artifacts"] * 2,
            "resumed": [False, False],
            "recorded_at": [start, ends[-1]],
        },
    )
    table(
        "executions",
        {
            "run_id": [run] * n,
            "execution_id": eids,
            "task": tasks,
            "scope": [t.rpartition("/")[0] for t in tasks],
            "component": [f"step-{layer}" for layer in layer_of],
            "display_name": [None] * n,
            "component_digest": code,
            "state": ["SUCCEEDED"] * n,
            "attempts": [1] * n,
            "start_time": times,
            "end_time": ends,
            "duration_s": [0.5] * n,
            "node_id": [_NODE] * n,
            "node_ip": ["10.0.0.7"] * n,
            "error_type": [None] * n,
            "error_message": [None] * n,
            "cache_key": digests,
            "cached": [False] * n,
            "tracked": [False] * n,
            "recorded_at": ends,
        },
    )
    table(
        "attempts",
        {
            "run_id": [run] * n,
            "execution_id": eids,
            "attempt": [1] * n,
            "start_time": times,
            "end_time": ends,
            "duration_s": [0.5] * n,
            "succeeded": [True] * n,
            "error_type": [None] * n,
            "error_message": [None] * n,
            "traceback": [None] * n,
            "log_tail": [None] * n,
            "recorded_at": ends,
        },
    )
    table(
        "artifacts",
        {
            "run_id": [run] * n,
            "execution_id": eids,
            "output": ["data"] * n,
            "position": [None] * n,
            "uri": uris,
            "type": ["Dataset"] * n,
            "digest": digests,
            "size": [4096 + k for k in range(n)],
            "metadata": ['{"rows": 1000}'] * n,
            "recorded_at": ends,
        },
    )
    events: dict[str, list[Any]] = {f.name: [] for f in TABLES["events"]}

    def event(k: int, direction: str, name: str, kind: str, **values: Any) -> None:
        row = {
            "run_id": run,
            "execution_id": eids[k],
            "direction": direction,
            "name": name,
            "kind": kind,
            "attempt": 1,
            "node_id": _NODE,
            "time": times[k] if direction == "input" else ends[k],
            "recorded_at": ends[k],
            **values,
        }
        for column, cells in events.items():
            cells.append(row.get(column))

    score = "0.75"
    score_digest = "5c" * 32
    for k in range(n):
        layer, i = layer_of[k], index_of[k]
        if layer == 0:
            source = f"/data/raw/dataset-{number % 10}.csv"
            event(
                k,
                "input",
                "data",
                "artifact",
                uri=source,
                artifact_type="Dataset",
                digest=f"{number % 10:064x}",
                size=10**8,
            )
        else:
            up, side = k - width, (k - width - i) + (i + 1) % width
            event(
                k,
                "input",
                "data",
                "artifact",
                uri=uris[up],
                artifact_type="Dataset",
                digest=digests[up],
                size=4096 + up,
                producer_execution_id=eids[up],
                producer_output="data",
            )
            event(
                k,
                "input",
                "score",
                "parameter",
                value=score,
                digest=score_digest,
                size=4,
                producer_execution_id=eids[side],
                producer_output="score",
            )
        event(k, "input", "lr", "parameter", value="0.01", digest="1e" * 32, size=4)
        event(
            k,
            "output",
            "data",
            "artifact",
            uri=uris[k],
            artifact_type="Dataset",
            digest=digests[k],
            size=4096 + k,
        )
        event(k, "output", "score", "parameter", value=score, digest=score_digest, size=4)
    table("events", events)
    return run


def _store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def _file_count(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.parquet"))


def _time(call: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    return samples, result


def _measure(root: Path, targets: list[str], reps: int) -> dict[str, Any]:
    """upstream() per target, warm (one connection) and cold (connect each time)."""
    start = time.perf_counter()
    con = connect(str(root))
    connect_s = time.perf_counter() - start
    warm: list[float] = []
    rows = 0
    for uri in targets:
        samples, found = _time(lambda u=uri: upstream(u, connection=con), reps)
        warm.append(statistics.median(samples))
        rows = len(found)
    cold, _ = _time(lambda: upstream(targets[0], root=str(root)), 3)
    con.close()
    return {
        "connect_ms": connect_s * 1000,
        "warm_median_ms": statistics.median(warm) * 1000,
        "warm_max_ms": max(warm) * 1000,
        "cold_median_ms": statistics.median(cold) * 1000,
        "rows": rows,
        "files": _file_count(root),
        "bytes": _store_bytes(root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--targets", type=int, default=10, help="artifacts queried")
    parser.add_argument("--reps", type=int, default=7, help="timed queries per artifact")
    parser.add_argument("--keep", help="build the store in DIR and keep it")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    random.seed(args.seed)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="raypipe-lineage-"))
    try:
        store = LineageStore(str(root))
        token = new_token()
        started = time.perf_counter()
        runs = [
            _write_run(store, number, args.width, args.layers, token) for number in range(args.runs)
        ]
        written_s = time.perf_counter() - started
        executions = args.runs * args.width * args.layers
        last = args.layers - 1
        picked = random.sample(runs, min(args.targets, len(runs)))
        targets = [
            f"/data/artifacts/pipeline-{runs.index(r) % 5}/{r}/"
            f"for-loop-1[{random.randrange(args.width)}]/step-{last}/data"
            for r in picked
        ]

        before = _measure(root, targets, args.reps)
        started = time.perf_counter()
        report = compact(str(root))
        compact_s = time.perf_counter() - started
        after = _measure(root, targets, args.reps)
        assert before["rows"] == after["rows"], (before["rows"], after["rows"])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    figures = {
        "executions": executions,
        "runs": args.runs,
        "write_s": written_s,
        "compact_s": compact_s,
        "before": before,
        "after": after,
        "rows_merged": sum(t.rows_merged for t in report.tables),
    }
    print(
        f"{executions:,} executions in {args.runs:,} runs "
        f"({args.width} x {args.layers} steps each); upstream of one last-layer artifact = "
        f"{before['rows']} rows; written in {written_s:.0f} s, compacted in {compact_s:.1f} s\n"
    )
    print(
        "| store | files | bytes / execution | connect | upstream, warm (median of "
        f"{len(targets)} artifacts) | slowest artifact | upstream, cold (connect + query) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, f in (("as written (one directory per run)", before), ("after compact", after)):
        print(
            f"| {name} | {f['files']:,} | {f['bytes'] / executions:.0f} | "
            f"{f['connect_ms']:.0f} ms | {f['warm_median_ms']:.0f} ms | "
            f"{f['warm_max_ms']:.0f} ms | {f['cold_median_ms']:.0f} ms |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
