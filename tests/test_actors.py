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
    second = {v.split(":")[0] for v in raypipe.run(tagged, {"items": [1, 2]}, cache=False).output}
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


@dsl.component(actor=True, retries=1)
class CrashOnce:
    """Kills its own process the first time it sees ``crash_on``; built again after."""

    def __init__(self) -> None:
        import os
        import uuid

        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __call__(self, x: int, crash_on: int, marker: str) -> str:
        import os
        import signal
        from pathlib import Path

        if x == crash_on and not Path(marker).exists():
            Path(marker).write_text("crashed")
            os.kill(os.getpid(), signal.SIGKILL)
        return f"{self.token}:{x}"


def test_an_actor_killed_mid_step_is_restarted_and_the_step_retried(tmp_path) -> None:  # type: ignore[no-untyped-def]
    @dsl.pipeline(name="crashing-actor")
    def crashing(items: list, marker: str) -> list:
        with dsl.ParallelFor(items, parallelism=1) as x:
            t = CrashOnce(x=x, crash_on=2, marker=marker)
        return dsl.Collected(t.output)

    marker = tmp_path / "crashed"
    result = raypipe.run(crashing, {"items": [1, 2, 3], "marker": str(marker)})
    assert result.ok, result.error
    assert marker.exists()
    tokens = [v.split(":")[0] for v in result.output]
    assert [int(v.split(":")[1]) for v in result.output] == [1, 2, 3]
    assert tokens[0] != tokens[1] == tokens[2]  # built again after the crash, then reused
    attempts = result.tasks["for-loop-1[1]/CrashOnce"].attempts
    assert [a.error is not None for a in attempts] == [True, False]
    assert attempts[0].error is not None and "died" in attempts[0].error.message


@dsl.component(actor=True, actor_pool_size=2)
class Timed:
    def __init__(self) -> None:
        import uuid

        self.token = uuid.uuid4().hex[:8]

    def __call__(self, seconds: float) -> str:
        import time

        time.sleep(seconds)
        return self.token


def test_a_new_step_goes_to_the_idle_actor_not_the_busy_one() -> None:
    # With parallelism 2 each new item is submitted when an earlier one ends: the slow
    # first item keeps its actor busy, so the other actor serves every later item.
    @dsl.pipeline(name="least-busy")
    def least_busy(durations: list) -> list:
        with dsl.ParallelFor(durations, parallelism=2) as seconds:
            t = Timed(seconds=seconds)
        return dsl.Collected(t.output)

    result = raypipe.run(least_busy, {"durations": [3.0, 0.0, 0.0, 0.0, 0.0, 0.0]})
    assert result.ok, result.error
    slow, *quick = result.output
    assert all(token != slow for token in quick), result.output
