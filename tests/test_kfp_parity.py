"""One KFP-style pipeline module, two paths: raypipe's DSL runs it directly, and the real
KFP SDK compiles it (with only the import changed) to IR YAML that ``raypipe.load`` runs.
Both must end the same way: status, outputs, and every step's state."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import raypipe
from raypipe.runtime.result import RunResult
from tests.kfp_pipelines import features

kfp_compiler = pytest.importorskip("kfp.compiler", reason="kfp is a dev dependency")

SOURCE = Path(features.__file__)


def _as_kfp_module(tmp_path: Path) -> ModuleType:
    """The same module with ``raypipe`` imports turned into ``kfp`` imports."""
    text = SOURCE.read_text().replace("from raypipe import dsl", "from kfp import dsl")
    text = text.replace("from raypipe.dsl import", "from kfp.dsl import")
    assert "raypipe" not in text.split('"""', 2)[2]  # nothing else of raypipe is used
    path = tmp_path / "features_kfp.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("features_kfp", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["features_kfp"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["features_kfp"]
    return module


def _ending(result: RunResult) -> dict[str, Any]:
    outputs = {name: value for name, value in result.outputs.items() if not hasattr(value, "uri")}
    return {
        "status": result.status.value,
        "outputs": outputs,
        "steps": {_step_key(name): task.state.value for name, task in result.tasks.items()},
    }


def _step_key(path: str) -> str:
    """A step's name and loop iterations, without the blocks around it: KFP wraps an
    If/Else in a ``condition-branches-N`` block that raypipe's compiler does not make, so
    block numbers differ while steps do not."""
    return "/".join([*(re.findall(r"\[\d+\]", path)), path.rpartition("/")[2]])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # kfp's base_image notice
@pytest.mark.parametrize("name", sorted(features.PIPELINES))
def test_the_dsl_and_the_kfp_compiled_yaml_agree(name: str, tmp_path: Path) -> None:
    pipeline, arguments = features.PIPELINES[name]
    kfp_module = _as_kfp_module(tmp_path)
    compiled = tmp_path / f"{name}.yaml"
    kfp_compiler.Compiler().compile(getattr(kfp_module, name), str(compiled))

    native = raypipe.run(pipeline, arguments=arguments, tracking=False, cache=False)
    from_yaml = raypipe.run(
        raypipe.load(compiled), arguments=arguments, tracking=False, cache=False
    )

    assert _ending(from_yaml) == _ending(native)
    if name == "placeholders_and_failures":  # fails by design; the finishers still ran
        assert native.status == "FAILED"
        for result in (native, from_yaml):
            steps = result.tasks
            facts = steps["exit-handler-1/job-facts"].outputs["Output"]
            assert facts["job"] == result.run_id and facts["task"] == "job-facts"
            assert facts["resource"].startswith("placeholders-and-failures-")
            assert steps["exit-handler-1/settle"].outputs["Output"] == "no note"
            assert steps["final-words"].outputs["Output"] == "FAILED:exit-handler-1"
    else:
        assert native.ok, native.error
