"""The KFP conformance corpus: every compiled KFP pipeline in ``tests/data/kfp`` runs from its
YAML with the case's arguments and ends with the expected status and outputs.

The cases (``cases.json``) and their comparison rules are described in
``tests/data/kfp/README.md``. Pipelines that fail by design must still run their exit tasks
(and ``ignore_upstream_failure`` tasks).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

import raypipe
from raypipe.dsl import Artifact
from raypipe.runtime.result import ArtifactRecord, RunResult
from raypipe.spec.models import PipelineSpec

CORPUS = Path(__file__).parent / "data" / "kfp"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text())


def _case_id(case: dict[str, Any]) -> str:
    return Path(case["file"]).stem


def _with_tmpdir(value: Any, tmpdir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{tmpdir}", tmpdir)
    if isinstance(value, list):
        return [_with_tmpdir(v, tmpdir) for v in value]
    if isinstance(value, dict):
        return {k: _with_tmpdir(v, tmpdir) for k, v in value.items()}
    return value


def _artifact_path(value: Any) -> str:
    if isinstance(value, Artifact):
        return value.path
    if isinstance(value, ArtifactRecord):
        return value.uri.removeprefix("file://")
    raise AssertionError(f"expected an artifact, got {type(value).__name__}: {value!r}")


def _metadata(value: Any) -> dict[str, Any]:
    return dict(value.metadata) if isinstance(value, (Artifact, ArtifactRecord)) else {}


def _matches(actual: Any, expected: Any, where: str) -> None:
    """The README's rules: numbers with a tolerance (an int equals the same float), booleans
    only booleans, lists in order, dicts key by key, ``$artifact`` by content."""
    if isinstance(expected, dict) and set(expected) == {"$artifact"}:
        want = expected["$artifact"]
        path = _artifact_path(actual)
        if "text" in want:
            assert Path(path).read_text() == want["text"], where
        if "files" in want:
            found = sorted(
                os.path.relpath(os.path.join(d, f), path)
                for d, _, names in os.walk(path)
                for f in names
            )
            assert found == want["files"], where
        for key, value in (want.get("metadata") or {}).items():
            _matches(_metadata(actual).get(key), value, f"{where}.metadata.{key}")
        return
    if isinstance(expected, bool) or expected is None:
        assert actual is expected, f"{where}: {actual!r} is not {expected!r}"
    elif isinstance(expected, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), where
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), (
            f"{where}: {actual!r} != {expected!r}"
        )
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _matches(a, e, f"{where}[{index}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for key, value in expected.items():
            _matches(actual[key], value, f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def _all_done_tasks(spec: PipelineSpec) -> list[str]:
    """Names of the tasks that run however their upstream ended (exit tasks and
    ``ignore_upstream_failure`` tasks), in any DAG of the pipeline."""
    dags = [spec.root.dag, *(c.dag for c in spec.components.values())]
    return [
        name
        for dag in dags
        if dag is not None
        for name, task in dag.tasks.items()
        if task.trigger == "all_done"
    ]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_kfp_case(case: dict[str, Any], tmp_path: Path) -> None:
    spec = raypipe.load(CORPUS / case["file"])
    tmpdir = str(tmp_path / "case")
    os.makedirs(tmpdir)
    arguments = _with_tmpdir(case["arguments"], tmpdir)

    result: RunResult = raypipe.run(spec, arguments=arguments, tracking=False, cache=False)

    failures = {n: t.error.message for n, t in result.tasks.items() if t.error is not None}
    assert result.status.value == case["expect_status"], failures
    if case["expect_status"] == "FAILED":
        finishers = _all_done_tasks(spec)
        assert finishers, "a case that fails by design has exit or ignore-failure tasks"
        for name in finishers:  # a step, or a pipeline whose steps ran
            ran = [
                t.state
                for path, t in result.tasks.items()
                if name in path.split("/") and t.state == "SUCCEEDED"
            ]
            assert ran, f"{name} did not run: {failures}"
    if case["expect_outputs"] is not None:
        for name, expected in case["expect_outputs"].items():
            assert name in result.outputs, f"no output {name!r}: {sorted(result.outputs)}"
            _matches(result.outputs[name], expected, f"outputs.{name}")
    for pattern, content in (case.get("expect_files") or {}).items():
        path = _with_tmpdir(pattern, tmpdir)
        if content is None:
            assert not os.path.exists(path), path
        else:
            assert Path(path).read_text() == content, path
