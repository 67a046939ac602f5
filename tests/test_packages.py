"""A step's packages (KFP's ``packages_to_install``): already installed ones cost nothing,
missing ones are pip-installed into a Ray runtime environment for the step."""

# No ``from __future__ import annotations``: the KFP SDK reads real annotations.
from pathlib import Path

import pytest
import yaml

import raypipe
from raypipe import dsl
from raypipe.runtime.packages import missing_requirements, runtime_env


def test_installed_requirements_need_no_environment() -> None:
    assert runtime_env(["pyyaml>=5", "pydantic"], []) is None
    assert runtime_env(["windows-only-thing; sys_platform == 'win32'"], []) is None
    assert missing_requirements(("pyyaml>=999",)) == ["pyyaml>=999"]


def test_missing_requirements_get_a_pip_environment_with_the_indexes() -> None:
    env = runtime_env(["pyyaml", "surely-absent==1.0"], ["https://a.example/simple", "b"])
    assert env is not None
    assert env["pip"]["packages"] == ["pyyaml", "surely-absent==1.0"]
    assert env["pip"]["pip_install_options"] == [
        "--index-url",
        "https://a.example/simple",
        "--extra-index-url",
        "b",
    ]


def test_kfp_keywords_of_component_become_options() -> None:
    @dsl.component(base_image="python:3.12", packages_to_install=["numpy"], use_venv=True)
    def f(x: int) -> int:
        return x

    assert f.options.image == "python:3.12" and f.options.packages == ["numpy"]
    with pytest.raises(raypipe.ComponentDefinitionError, match="output_component_file"):

        @dsl.component(output_component_file="f.yaml")
        def g(x: int) -> int:
            return x


@pytest.mark.filterwarnings("ignore::FutureWarning")  # kfp's base_image notice
def test_a_missing_package_is_installed_for_the_step(tmp_path: Path) -> None:
    """Really pip-installs a small package (from the configured package index)."""
    kfp_dsl = pytest.importorskip("kfp.dsl")
    compiler = pytest.importorskip("kfp.compiler")

    @kfp_dsl.component(packages_to_install=["pyjokes==0.8.3"])
    def joke_version() -> str:
        import importlib.metadata

        import pyjokes

        assert pyjokes.get_joke()
        return importlib.metadata.version("pyjokes")

    @kfp_dsl.pipeline(name="jokes")
    def jokes() -> str:
        return joke_version().output

    path = tmp_path / "jokes.yaml"
    compiler.Compiler().compile(jokes, str(path))
    assert (
        "pyjokes"
        in yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]["exec-joke-version"][
            "container"
        ]["command"][2]
    )
    spec = raypipe.load(path)
    assert spec.root.dag.tasks["joke-version"].options.packages == ["pyjokes==0.8.3"]
    assert missing_requirements(("pyjokes==0.8.3",))  # not in the test environment

    result = raypipe.run(spec, tracking=False)

    assert result.ok, result.error
    assert result.output == "0.8.3"
