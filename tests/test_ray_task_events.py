"""``RAYPIPE_RAY_TASK_EVENTS=0``: a run's step tasks send Ray no task events (a real Ray).

Ray's driver buffers the events of every task it submits (its dashboard's task list, ``ray
list tasks``, ``ray timeline``); turned off, a long run's driver holds less. raypipe reads
none of them, so a run behaves the same either way.
"""

from __future__ import annotations

import pytest

import raypipe
from raypipe.runtime.config import ray_task_events
from raypipe.runtime.runner import _prepare
from raypipe.spec.compiler import compile_pipeline
from tests.pipelines import addition


def test_ray_task_events_are_on_unless_the_variable_turns_them_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAYPIPE_RAY_TASK_EVENTS", raising=False)
    assert ray_task_events()
    for off in ("0", "false", " No "):
        monkeypatch.setenv("RAYPIPE_RAY_TASK_EVENTS", off)
        assert not ray_task_events()
    monkeypatch.setenv("RAYPIPE_RAY_TASK_EVENTS", "1")
    assert ray_task_events()


def test_a_run_without_ray_task_events_gives_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on = raypipe.run(addition, {"a": 1, "b": 2}, tracking=False, cache=False, quiet=True)
    monkeypatch.setenv("RAYPIPE_RAY_TASK_EVENTS", "0")
    off = raypipe.run(addition, {"a": 1, "b": 2}, tracking=False, cache=False, quiet=True)
    assert (on.status, on.outputs) == (off.status, off.outputs) == ("SUCCEEDED", on.outputs)
    assert {n: t.state for n, t in on.tasks.items()} == {n: t.state for n, t in off.tasks.items()}
    assert all(t.start_time and t.end_time for t in off.tasks.values())
    # a spec is bound to Ray functions once per setting: the first run's does not stick
    spec = compile_pipeline(addition)
    with_events = _prepare(spec, grouped=False, task_events=True)
    assert _prepare(spec, grouped=False, task_events=True) is with_events
    assert _prepare(spec, grouped=False, task_events=False) is not with_events
