"""Actor components: a class set up once per actor, its instances reused across steps."""

from __future__ import annotations

import pytest

import raypipe
from raypipe import dsl


@dsl.component(actor=True, actor_pool_size=2)
class Tagger:
    """Tags numbers with the identity of the instance that served them."""

    def __init__(self) -> None:
        import os
        import uuid

        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # "loading a model", once

    def __call__(self, x: int) -> str:
        return f"{self.token}:{x * 10}"


@dsl.pipeline(name="tagged")
def tagged(items: list) -> list:
    with dsl.ParallelFor(items) as x:
        t = Tagger(x=x)
    return dsl.Collected(t.output)


def test_actor_pool_sets_up_once_per_actor_and_serves_every_item() -> None:
    result = raypipe.run(tagged, {"items": list(range(8))})
    assert result.ok, result.error
    tokens = [value.split(":")[0] for value in result.output]
    assert [int(value.split(":")[1]) for value in result.output] == [x * 10 for x in range(8)]
    assert len(set(tokens)) == 2  # two actors, each built once, reused for 4 items


def test_each_run_gets_fresh_actors() -> None:
    first = {v.split(":")[0] for v in raypipe.run(tagged, {"items": [1, 2]}).output}
    second = {v.split(":")[0] for v in raypipe.run(tagged, {"items": [1, 2]}).output}
    assert first.isdisjoint(second)


def test_actor_component_reads_its_interface_from_call() -> None:
    assert list(Tagger.inputs) == ["x"]
    assert Tagger.outputs["Output"].type == "str"
    assert Tagger.options.actor and Tagger.options.actor_pool_size == 2
    assert Tagger.python_func().__call__(3).endswith(":30")


def test_a_class_without_actor_true_is_refused_with_a_hint() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match=r"dsl.component\(actor=True\)"):

        @dsl.component
        class Plain:
            def __call__(self, x: int) -> int:
                return x


def test_compiled_actor_component_runs_from_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tagged.yaml"
    raypipe.compile(tagged, path)
    assert "class Tagger" in path.read_text()
    result = raypipe.run(raypipe.load(path), {"items": [5]})
    assert result.output[0].endswith(":50")
