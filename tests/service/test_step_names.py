"""Which step names a run has: the API's test before it serves (or follows) a step's log."""

from __future__ import annotations

import raypipe
from raypipe import dsl
from raypipe.api.step_names import has_step
from tests.pipelines import add, addition, echo


@dsl.pipeline(name="inner")
def inner(a: int) -> int:
    return add(a=a, b=1).output


@dsl.pipeline(name="loopy")
def loopy(xs: list = [1, 2]) -> None:  # noqa: B006 - a pipeline default is data
    with dsl.ParallelFor(xs) as x:
        add(a=x, b=1)
    inner(a=3)
    echo(text="done")


def test_steps_at_the_top_in_loops_and_in_nested_pipelines_are_known() -> None:
    spec = raypipe.compile(loopy)
    assert has_step(spec, "echo")
    assert has_step(spec, "for-loop-1[0]/add") and has_step(spec, "for-loop-1[12]/add")
    assert has_step(spec, "inner/add")
    assert has_step(raypipe.compile(addition), "add-2")


def test_names_a_run_cannot_have_are_not_steps() -> None:
    spec = raypipe.compile(loopy)
    for name in (
        "nope",
        "add",  # only inside the loop or the nested pipeline
        "for-loop-1",  # the loop itself writes no log
        "for-loop-1/add",  # an iteration has an index
        "for-loop-1[x]/add",
        "for-loop-1[0]/add/extra",
        "inner",
        "ech.",  # names are matched literally, not as patterns
    ):
        assert not has_step(spec, name), name
