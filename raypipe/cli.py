"""The ``raypipe`` command: run, compile, and describe pipelines.

Example:
    $ raypipe run examples/quickstart.py:addition --arg a=1 --arg b=2
    $ raypipe compile examples/quickstart.py:addition -o addition.yaml
    $ raypipe run addition.yaml --arg a=1 --arg b=2
    $ raypipe schema > raypipe-v1.schema.json
    $ raypipe logs 3f2a9c1e add-2

Exit codes: 0 the run succeeded; 1 the run failed or was canceled; 2 the command, the
pipeline or its arguments are wrong (nothing ran), or ``logs`` names an unknown run or task.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import PipelineArgumentError, Problem, RaypipeError
from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.logs import print_logs
from raypipe.runtime.runner import run
from raypipe.spec.arguments import parse_cli_value
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.io import compile, dumps, json_schema, load
from raypipe.spec.models import PipelineSpec

__all__ = ["main"]


class UsageError(RaypipeError):
    """The command line names something that does not exist or cannot be used."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raypipe`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except RaypipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raypipe", description="Kubeflow-style ML pipelines on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_cmd = commands.add_parser(
        "run",
        help="run a pipeline and wait for it",
        description="Run a pipeline from a Python file (FILE.py[:pipeline]) or a compiled "
        "YAML/JSON file, print its status, outputs and where its artifacts are.",
    )
    run_cmd.add_argument("pipeline", help="FILE.py[:pipeline] or a compiled p.yaml / p.json")
    run_cmd.add_argument(
        "--arg",
        "-a",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline argument; repeat for each (lists and dicts as JSON)",
    )
    run_cmd.add_argument("--address", help="Ray cluster address (default: local Ray)")
    run_cmd.add_argument("--run-name", help="a human name for the run")
    run_cmd.add_argument("--artifact-root", help="where artifacts go (any pyarrow.fs URI)")
    run_cmd.add_argument(
        "--json", action="store_true", help="print the whole result as JSON instead"
    )
    run_cmd.add_argument(
        "--quiet", "-q", action="store_true", help="no progress display (or RAYPIPE_QUIET=1)"
    )
    run_cmd.add_argument(
        "--no-fail-fast",
        dest="fail_fast",
        action="store_false",
        help="keep running every branch a failed step does not feed",
    )
    run_cmd.add_argument(
        "--skip-resource-check",
        dest="check_resources",
        action="store_false",
        help="do not fail when no node has the resources a step asks for (autoscaling)",
    )
    run_cmd.set_defaults(handler=_run)

    compile_cmd = commands.add_parser(
        "compile",
        help="compile a pipeline to YAML or JSON",
        description="Compile FILE.py[:pipeline] into raypipe's IR: YAML by default, JSON "
        "when the output ends in .json. Without -o the YAML is printed.",
    )
    compile_cmd.add_argument("pipeline", help="FILE.py[:pipeline]")
    compile_cmd.add_argument("-o", "--output", help="file to write (.yaml or .json)")
    compile_cmd.set_defaults(handler=_compile)

    schema_cmd = commands.add_parser(
        "schema",
        help="print the JSON Schema of compiled pipelines",
        description="Print the JSON Schema of raypipe's compiled pipeline format.",
    )
    schema_cmd.set_defaults(handler=_schema)

    logs_cmd = commands.add_parser(
        "logs",
        help="print what a run's steps printed",
        description="Print the stdout and stderr each step of a run wrote, one section per "
        "task and attempt; with TASK, only that task's (and, for a loop or a nested "
        "pipeline, its children's).",
    )
    logs_cmd.add_argument("run_id", metavar="RUN_ID", help="the run's id (RunResult.run_id)")
    logs_cmd.add_argument("task", metavar="TASK", nargs="?", help="a task name, e.g. add-2")
    logs_cmd.add_argument(
        "--artifact-root",
        help="where the run's artifacts are (default: RAYPIPE_ARTIFACT_ROOT, else "
        "$RAYPIPE_HOME/artifacts)",
    )
    logs_cmd.set_defaults(handler=_logs)
    return parser


def _run(args: argparse.Namespace) -> int:
    target = _load_target(args.pipeline)
    spec = target if isinstance(target, PipelineSpec) else compile_pipeline(target)
    arguments = _parse_arguments(spec, args.arg)
    result = run(
        spec,
        arguments,
        address=args.address,
        run_name=args.run_name,
        artifact_root=args.artifact_root,
        fail_fast=args.fail_fast,
        check_resources=args.check_resources,
        quiet=args.quiet,
    )
    if args.json:
        print(json.dumps(result.model_dump(mode="json", fallback=_describe), indent=2))
    else:
        print(result.summary())
    return 0 if result.ok else 1


def _compile(args: argparse.Namespace) -> int:
    target = _load_target(args.pipeline)
    if isinstance(target, PipelineSpec):
        raise UsageError(f"{args.pipeline} is already compiled")
    if args.output:
        spec = compile(target, args.output)
        print(f"wrote pipeline {spec.name!r} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(dumps(compile_pipeline(target)))
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _logs(args: argparse.Namespace) -> int:
    root = RuntimeConfig.from_env(artifact_root=args.artifact_root).artifact_root
    return print_logs(root, args.run_id, args.task)


def _load_target(reference: str) -> Pipeline | PipelineSpec:
    """A Pipeline from ``FILE.py[:name]`` or a spec from a compiled file."""
    path_text, _, name = reference.partition(":")
    if Path(reference).suffix in (".yaml", ".yml", ".json"):
        return load(reference)
    path = Path(path_text)
    if path.suffix != ".py":
        raise UsageError(f"{reference!r}: expected FILE.py[:pipeline], or a .yaml/.json file")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    module = _import_file(path)
    pipelines = {k: v for k, v in vars(module).items() if isinstance(v, Pipeline)}
    if name:
        found = pipelines.get(name) or next((p for p in pipelines.values() if p.name == name), None)
        if found is None:
            raise UsageError(f"{path}: no pipeline named {name!r} (found: {_names(pipelines)})")
        return found
    if len(pipelines) == 1:
        return next(iter(pipelines.values()))
    if not pipelines:
        raise UsageError(f"{path}: no @dsl.pipeline found")
    raise UsageError(
        f"{path}: several pipelines, choose one with {path}:NAME ({_names(pipelines)})"
    )


def _names(pipelines: dict[str, Pipeline]) -> str:
    return ", ".join(sorted(pipelines)) or "none"


def _import_file(path: Path) -> Any:
    """Import a user's file as a module named after it, as ``python FILE.py`` would see it."""
    module_name = path.stem
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _parse_arguments(spec: PipelineSpec, items: Sequence[str]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    problems: list[Problem] = []
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            problems.append(Problem(f"expected NAME=VALUE, got {item!r}", spec.name, None, item))
            continue
        input_spec = spec.inputs.get(name)
        if input_spec is None:
            arguments[name] = text  # bind_arguments reports it as unknown, with the others
            continue
        try:
            arguments[name] = parse_cli_value(text, input_spec)
        except ValueError as exc:
            problems.append(Problem(str(exc), spec.name, None, name))
    if problems:
        raise PipelineArgumentError(problems)
    return arguments


def _describe(value: Any) -> Any:
    """JSON stand-in for outputs that are not JSON (arrays, artifacts, ...)."""
    if hasattr(value, "uri") and hasattr(value, "metadata"):
        return {"type": type(value).__name__, "uri": value.uri, "metadata": value.metadata}
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
