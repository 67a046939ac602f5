"""The public surface: every exported name imports, and the examples run."""

from __future__ import annotations

import importlib

import pytest

import raypipe


@pytest.mark.parametrize("module", ["raypipe", "raypipe.dsl", "raypipe.spec", "raypipe.runtime"])
def test_every_name_in_all_is_importable(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name}"


def test_errors_share_one_root() -> None:
    for name in (
        "ComponentDefinitionError",
        "PipelineDefinitionError",
        "SpecLoadError",
        "PipelineArgumentError",
        "ClusterConnectionError",
        "StepFailedError",
    ):
        assert issubclass(getattr(raypipe, name), raypipe.RaypipeError)


def test_quickstart_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from examples import quickstart

    quickstart.main()
    out = capsys.readouterr().out
    assert "addition(1, 2) + 10 = 13" in out
    assert "of quickstart: SUCCEEDED" in out
    assert "output description: '1000 rows, sum 1000000.0" in out
