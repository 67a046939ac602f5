"""``raypipe cache explain`` on real runs: the lineage says why a step hit or missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import raypipe
from raypipe import dsl
from raypipe.tracking.explain import explain
from raypipe.tracking.lineage import LineageWriter


def build(factor: int) -> Any:
    @dsl.component(persist="sync")
    def scale(x: int) -> int:
        return x * factor

    @dsl.component(persist="sync")
    def shift(y: int, by: int) -> int:
        return y + by

    @dsl.pipeline(name="explained")
    def explained(x: int = 1, by: int = 0) -> int:
        return shift(y=scale(x=x).output, by=by).output

    return explained


def test_explain_names_the_input_or_the_code_that_changed(tmp_path: Path) -> None:
    root = str(tmp_path / "lineage")

    def run(pipeline: Any, **args: int) -> raypipe.RunResult:
        return raypipe.run(pipeline, args, tracking=False, observers=[LineageWriter(root)])

    first = run(build(2), x=1)
    assert not explain(first.run_id, "scale", root=root).hit
    assert "no earlier execution" in str(explain(first.run_id, "scale", root=root))

    same = run(build(2), x=1)
    hit = explain(same.run_id, "shift", root=root)
    assert hit.hit and f"run {first.run_id}" in str(hit)

    new_input = run(build(2), x=5)
    why = explain(new_input.run_id, "scale", root=root)
    assert not why.hit and why.reasons == ["input 'x' changed: 1 -> 5"]
    downstream = explain(new_input.run_id, "shift", root=root)
    assert downstream.reasons == ["input 'y' changed: its producer 'scale' ran again"]

    new_code = run(build(3), x=5)
    assert explain(new_code.run_id, "scale", root=root).reasons[0].startswith("the code changed")

    uncached = raypipe.run(
        build(3), {"x": 5}, tracking=False, cache=False, observers=[LineageWriter(root)]
    )
    assert (
        "the run was started with cache=False"
        in explain(uncached.run_id, "scale", root=root).reasons
    )


def test_the_command_line_explains_and_says_what_is_unknown(tmp_path: Path, capsys: Any) -> None:
    from raypipe.cli import main

    root = str(tmp_path / "lineage")
    first = raypipe.run(build(2), {"x": 1}, tracking=False, observers=[LineageWriter(root)])
    assert main(["cache", "explain", first.run_id, "scale", "--root", root]) == 0
    assert "no earlier execution of explained.scale" in capsys.readouterr().out
    assert main(["cache", "explain", first.run_id, "nope", "--root", root]) == 2
    assert "has no step 'nope'" in capsys.readouterr().err
