"""The raypipe command: run, compile, schema, help, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raypipe.cli import main

EXAMPLE = Path(__file__).parents[1] / "examples" / "quickstart.py"


def test_run_a_python_file_prints_status_outputs_and_artifact_root(
    capsys: pytest.CaptureFixture[str], raypipe_home: Path
) -> None:
    code = main(["run", f"{EXAMPLE}:addition", "--arg", "a=1", "--arg", "b=2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "of addition: SUCCEEDED" in out
    assert "output Output: 13" in out
    assert f"artifacts: {raypipe_home / 'artifacts'}" in out


def test_compile_then_run_the_yaml_with_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "q.yaml"
    assert main(["compile", f"{EXAMPLE}:quickstart", "-o", str(target)]) == 0
    capsys.readouterr()
    assert main(["run", str(target), "--arg", "n=4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "SUCCEEDED"
    assert result["outputs"]["sum"] == 13
    assert result["outputs"]["description"].startswith("4 rows, sum 16.0")
    assert result["tasks"]["total"]["outputs"]["out"]["type"] == "Dataset"


def test_failed_run_exits_1_and_prints_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "broken.py"
    script.write_text(
        "from raypipe import dsl\n\n"
        "@dsl.component\n"
        "def explode(x: int) -> int:\n"
        "    raise RuntimeError(f'cannot handle {x}')\n\n"
        "@dsl.pipeline\n"
        "def broken(x: int = 7) -> int:\n"
        "    return explode(x=x).output\n"
    )
    assert main(["run", str(script)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "error in explode (attempt 1): builtins.RuntimeError: cannot handle 7" in out
    assert f'File "{script}", line 5, in explode' in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", f"{EXAMPLE}:addition", "--arg", "a=one", "--arg", "b=2"],
            "addition.a: expected int",
        ),
        (["run", f"{EXAMPLE}:addition", "--arg", "b=2"], "addition.a: missing required argument"),
        (["run", f"{EXAMPLE}:addition", "--arg", "a"], "expected NAME=VALUE"),
        (["run", f"{EXAMPLE}:nope"], "no pipeline named 'nope' (found: addition, quickstart)"),
        (["run", str(EXAMPLE)], "several pipelines, choose one"),
        (["run", "missing.py"], "missing.py: no such file"),
        (["run", "pipeline.txt"], "expected FILE.py[:pipeline]"),
    ],
)
def test_usage_mistakes_exit_2_with_a_message_and_run_nothing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], raypipe_home: Path
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not raypipe_home.exists()


def test_compile_without_output_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", f"{EXAMPLE}:addition"]) == 0
    assert capsys.readouterr().out.startswith("schema_version: raypipe/v1\nname: addition\n")


@pytest.mark.parametrize("command", [[], ["run"], ["compile"], ["schema"]])
def test_every_command_has_help(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raypipe.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: raypipe")


def test_run_flags_turn_off_fail_fast_and_the_resource_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "branches.py"
    script.write_text(
        "from raypipe import dsl\n\n"
        "@dsl.component\n"
        "def boom() -> int:\n"
        "    raise RuntimeError('boom')\n\n"
        "@dsl.component(num_cpus=0.5)\n"
        "def fine() -> int:\n"
        "    return 1\n\n"
        "@dsl.pipeline\n"
        "def branches() -> None:\n"
        "    boom()\n"
        "    fine()\n"
    )
    assert main(["run", str(script), "--no-fail-fast", "--skip-resource-check", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["tasks"]["fine"]["state"] == "SUCCEEDED"
    assert result["tasks"]["boom"]["state"] == "FAILED"
