"""``raypipe cache explain``: why a step of a run was, or was not, served from the cache.

It compares the step's execution with the closest earlier execution of the same task of
the same pipeline in the lineage store: the code digest, then each input's identity (what
the cache key saw of it, see docs/caching.md), then what is left (options, the switches).

Example:
    >>> print(explain(run_id, "train"))                     # doctest: +SKIP
    train in run 3f2a... ran (a miss): input 'lr' changed: 0.1 -> 0.2 (compared with the
    execution of run 91bc... at 2026-11-29 10:02:11)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.manifest import RunManifest
from raypipe.spec.graph import task_at, without_iterations
from raypipe.spec.io import loads
from raypipe.tracking.lineage.errors import LineageError
from raypipe.tracking.lineage.query import connect

__all__ = ["CacheExplanation", "explain"]


@dataclass
class CacheExplanation:
    """Why a step hit or missed; ``reasons`` are the differences found, most telling first."""

    run_id: str
    task: str
    hit: bool
    reasons: list[str] = field(default_factory=list)
    compared_with: str | None = None  # "run RUN at TIME"

    def __str__(self) -> str:
        verdict = "was served from the cache" if self.hit else "ran (a miss)"
        text = f"{self.task} in run {self.run_id} {verdict}"
        if self.reasons:
            text += ": " + "; ".join(self.reasons)
        if self.compared_with:
            text += f" (compared with the execution of {self.compared_with})"
        return text


def explain(run_id: str, task: str, *, root: str | None = None) -> CacheExplanation:
    """Why ``task`` of ``run_id`` hit or missed the cache.

    Raises:
        LineageError: the step is not in the lineage store.
    """
    con = connect(root)
    try:
        found = con.execute(
            """
            SELECT x.execution_id, x.state, x.cache_key, x.component_digest, x.start_time,
                   r.pipeline
            FROM executions x JOIN runs r USING (run_id)
            WHERE x.run_id = ? AND x.task = ?
            ORDER BY x.recorded_at DESC LIMIT 1
            """,
            [run_id, task],
        ).fetchone()
        if found is None:
            raise LineageError(
                f"run {run_id} has no step {task!r} in the lineage store (was it tracked?)"
            )
        eid, state, key, code, started, pipeline = found
        inputs = _inputs(con, eid)
        if state == "CACHED":
            source = con.execute(
                """
                SELECT x.run_id, x.start_time FROM executions x
                WHERE x.cache_key = ? AND x.state = 'SUCCEEDED' AND x.execution_id <> ?
                ORDER BY x.start_time DESC LIMIT 1
                """,
                [key, eid],
            ).fetchone()
            origin = f"run {source[0]} at {source[1]:%Y-%m-%d %H:%M:%S}" if source else None
            return CacheExplanation(
                run_id, task, True, ["same code, options and inputs"], compared_with=origin
            )
        reasons = _switches(run_id, task)
        earlier = con.execute(
            """
            SELECT x.execution_id, x.run_id, x.cache_key, x.component_digest, x.start_time
            FROM executions x JOIN runs r USING (run_id)
            WHERE r.pipeline = ? AND regexp_replace(x.task, '\\[\\d+\\]', '', 'g') = ?
              AND x.run_id <> ? AND x.start_time < ? AND x.state IN ('SUCCEEDED', 'CACHED')
            ORDER BY (x.task = ?) DESC, x.start_time DESC LIMIT 1
            """,
            [pipeline, without_iterations(task), run_id, started, task],
        ).fetchone()
        if earlier is None:
            reasons.append(f"no earlier execution of {pipeline}.{task} to reuse")
            return CacheExplanation(run_id, task, False, reasons)
        other_eid, other_run, other_key, other_code, other_started = earlier
        compared = f"run {other_run} at {other_started:%Y-%m-%d %H:%M:%S}"
        if other_key == key:
            reasons.append(
                "an earlier execution had the same key, but its stored outputs were missing "
                "(deleted, persist='none', or still being written)"
            )
            return CacheExplanation(run_id, task, False, reasons, compared)
        if code != other_code:
            reasons.append(f"the code changed: {_short(other_code)} -> {_short(code)}")
        reasons.extend(_input_changes(inputs, _inputs(con, other_eid)))
        if len(reasons) == 0:
            reasons.append("its options (env, image or packages) changed")
        return CacheExplanation(run_id, task, False, reasons, compared)
    finally:
        con.close()


def _inputs(con: Any, eid: str) -> dict[str, tuple[str | None, list[Any], str | None]]:
    """Input name -> (identity, recorded values, producer task)."""
    rows = con.execute(
        """
        SELECT name, identity, value, uri, producer_execution_id FROM events
        WHERE execution_id = ? AND direction = 'input' ORDER BY name, position
        """,
        [eid],
    ).fetchall()
    found: dict[str, tuple[str | None, list[Any], str | None]] = {}
    for name, identity, value, uri, producer in rows:
        _, values, first = found.get(name, (identity, [], producer))
        values.append(json.loads(value) if value is not None else uri)
        found[name] = (identity, values, first)
    return found


def _input_changes(
    now: dict[str, tuple[str | None, list[Any], str | None]],
    before: dict[str, tuple[str | None, list[Any], str | None]],
) -> list[str]:
    reasons = []
    for name in sorted(set(now) | set(before)):
        if name not in before:
            reasons.append(f"input {name!r} is new")
            continue
        if name not in now:
            reasons.append(f"input {name!r} is gone")
            continue
        (identity, values, producer), (old_identity, old_values, _) = now[name], before[name]
        if identity == old_identity:
            continue
        if producer is not None:
            task = producer.partition("/")[2]
            reasons.append(f"input {name!r} changed: its producer {task!r} ran again")
        elif values != old_values:
            reasons.append(f"input {name!r} changed: {_show(old_values)} -> {_show(values)}")
        else:
            reasons.append(f"input {name!r} changed")
    return reasons


def _switches(run_id: str, task: str) -> list[str]:
    """The switches that make a step miss whatever its inputs: run and step cache=False."""
    try:
        manifest = RunManifest.load(RuntimeConfig.from_env().home, run_id)
    except Exception:  # another machine's run: the lineage alone has to do
        return []
    reasons = []
    if not manifest.cache:
        reasons.append("the run was started with cache=False")
    spec = loads(manifest.spec, source=f"run {run_id}")
    found = task_at(spec, task)
    if found is not None and not found.options.cache:
        reasons.append("the step has cache=False, so it never reuses an earlier execution")
    return reasons


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12]


def _show(values: list[Any]) -> str:
    text = json.dumps(values[0] if len(values) == 1 else values)
    return text if len(text) <= 60 else text[:57] + "..."
