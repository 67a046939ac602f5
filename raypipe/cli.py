"""The ``raypipe`` command: run, compile, and describe pipelines.

Example:
    $ raypipe run examples/quickstart.py:addition --arg a=1 --arg b=2
    $ raypipe compile examples/quickstart.py:addition -o addition.yaml
    $ raypipe run addition.yaml --arg a=1 --arg b=2
    $ raypipe submit addition.yaml --address http://head:8265 --arg a=1 --arg b=2
    $ raypipe schema > raypipe-v1.schema.json
    $ raypipe logs 3f2a9c1e add-2
    $ raypipe resume 3f2a9c1e...
    $ raypipe replay 3f2a9c1e... train --pdb
    $ raypipe cache explain 3f2a9c1e... train
    $ raypipe lineage sql "SELECT task, state FROM executions"
    $ raypipe lineage upstream /home/me/.raypipe/artifacts/p/3f2a9c1e/train/model
    $ raypipe lineage export 3f2a9c1e... --format openlineage -o run.ndjson
    $ raypipe lineage compact
    $ raypipe runs list --state FAILED --host http://pipelines:8888 --token s3cret
    $ raypipe pipelines upload addition.yaml --name addition

Exit codes: 0 the run succeeded; 1 the run failed or was canceled (``submit``: or the job
failed before the run started); 2 the command, the pipeline or its arguments are wrong, or
the cluster cannot be reached or cannot hold a step (nothing ran), or ``logs``,
``resume``, ``replay`` or ``cache explain`` name an unknown run or task, or inputs that
were not stored.
``lineage``: 0 done; 1 ``upstream``/``downstream`` found no step that wrote (read) the
URI; 2 the root cannot be read, the SQL is wrong, or ``export`` names a run the root does
not hold.
``runs``, ``experiments``, ``pipelines`` (a raypipe server, through raypipe.Client): 0
done; 2 the server refused the request (its message names why) or could not be reached.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raypipe.client import DEFAULT_HOST, Client
from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import PipelineArgumentError, Problem, RaypipeError
from raypipe.remote import RESULT_MARK, submit_job
from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.logs import print_logs
from raypipe.runtime.result import RunResult
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


def add_pipeline_arguments(parser: argparse.ArgumentParser, *, with_args: bool = True) -> None:
    """The pipeline to act on (``FILE.py[:pipeline]`` or a compiled file) and its ``--arg``s."""
    parser.add_argument("pipeline", help="FILE.py[:pipeline] or a compiled p.yaml / p.json")
    if with_args:
        parser.add_argument(
            "--arg",
            "-a",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a pipeline argument; repeat for each (lists and dicts as JSON)",
        )


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
    add_pipeline_arguments(run_cmd)
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
    run_cmd.add_argument("--experiment", help="the MLflow experiment (default: the pipeline)")
    run_cmd.add_argument(
        "--no-tracking",
        dest="tracking",
        action="store_const",
        const=False,
        help="record nothing in MLflow or lineage (or RAYPIPE_TRACKING=0)",
    )
    run_cmd.add_argument(
        "--no-cache", dest="cache", action="store_false", help="run every step, reuse nothing"
    )
    # For `raypipe submit`: the result as one marked JSON line, read back from the job's logs.
    run_cmd.add_argument("--result-line", action="store_true", help=argparse.SUPPRESS)
    run_cmd.set_defaults(handler=_run)
    _submit_parser(commands)

    resume_cmd = commands.add_parser(
        "resume",
        help="finish a run whose driver died",
        description="Finish run RUN_ID, started on this machine with this RAYPIPE_HOME, "
        "whose driver died: steps it finished are reused, the others run.",
    )
    resume_cmd.add_argument("run_id", metavar="RUN_ID")
    resume_cmd.add_argument("--address", help="Ray cluster address (default: local Ray)")
    resume_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    resume_cmd.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    resume_cmd.set_defaults(handler=_resume)

    server_cmd = commands.add_parser(
        "server",
        help="serve the REST API (experiments, pipelines, runs) and run the runs",
        description="Serve raypipe's REST API (KFP v2beta1 resources) on HOST:PORT and run "
        "the runs it creates on Ray. Records live in RAYPIPE_DATABASE_URL (default: SQLite "
        "under RAYPIPE_HOME); RAYPIPE_API_TOKENS turns on bearer tokens.",
    )
    server_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server_cmd.add_argument("--port", type=int, default=8888, help="port (default 8888)")
    server_cmd.add_argument("--address", help="Ray cluster address (default: local Ray)")
    server_cmd.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        help="how long a run's driving instance may be silent before another takes it over",
    )
    server_cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the API, about one per core (on Linux the runs are "
        "executed by one more process)",
    )
    server_cmd.add_argument(
        "--threads",
        type=int,
        default=8,
        help="requests each process serves at once (default 8; more only adds GIL switching)",
    )
    server_cmd.set_defaults(handler=_server)

    replay_cmd = commands.add_parser(
        "replay",
        help="run one step of a past run again, here",
        description="Run TASK of run RUN_ID again in this process with the inputs it had "
        "(from the run's lineage and stored outputs), to debug it.",
    )
    replay_cmd.add_argument("run_id", metavar="RUN_ID")
    replay_cmd.add_argument("task", metavar="TASK", help="e.g. train or for-loop-1[2]/train")
    replay_cmd.add_argument("--pdb", action="store_true", help="stop in pdb at the step's start")
    replay_cmd.set_defaults(handler=_replay)

    cache_cmd = commands.add_parser("cache", help="the step cache")
    cache_actions = cache_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    explain_cmd = cache_actions.add_parser(
        "explain",
        help="why a step was or was not served from the cache",
        description="Compare TASK of RUN_ID with the closest earlier execution of the same "
        "task: code, each input, options and switches.",
    )
    explain_cmd.add_argument("run_id", metavar="RUN_ID")
    explain_cmd.add_argument("task", metavar="TASK")
    explain_cmd.add_argument("--root", help="the lineage root (default: the configured one)")
    explain_cmd.set_defaults(handler=_cache_explain)

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
    _lineage_parser(commands)
    _service_parsers(commands)
    from raypipe.kuberay.cli import add_kuberay_parser  # imported here: it uses this module

    add_kuberay_parser(commands)
    return parser


def _submit_parser(commands: Any) -> None:
    submit_cmd = commands.add_parser(
        "submit",
        help="run a pipeline as a job on a remote Ray cluster and wait for it",
        description="Submit a pipeline (FILE.py[:pipeline] or a compiled YAML/JSON file) "
        "through the Ray Job Submission API of the cluster at --address (its dashboard, "
        "e.g. a KubeRay head service on port 8265), stream the job's logs, and print the "
        "run's status and outputs. With RAY_AUTH_MODE=token, RAY_AUTH_TOKEN (or "
        "RAY_AUTH_TOKEN_PATH) authenticates.",
    )
    add_pipeline_arguments(submit_cmd)
    submit_cmd.add_argument(
        "--address",
        help="the cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS)",
    )
    submit_cmd.add_argument("--run-name", help="a human name for the run")
    submit_cmd.add_argument("--artifact-root", help="where artifacts go, seen from the cluster")
    submit_cmd.add_argument("--experiment", help="the MLflow experiment (default: the pipeline)")
    submit_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    submit_cmd.add_argument(
        "--no-fail-fast", dest="fail_fast", action="store_false", help="as for run"
    )
    submit_cmd.add_argument(
        "--skip-resource-check",
        dest="check_resources",
        action="store_false",
        help="do not fail when no node has what a step asks for (an autoscaling cluster)",
    )
    submit_cmd.add_argument(
        "--no-tracking", dest="tracking", action="store_const", const=False, help="as for run"
    )
    submit_cmd.add_argument("--no-cache", dest="cache", action="store_false", help="as for run")
    submit_cmd.set_defaults(handler=_submit)


def _lineage_parser(commands: Any) -> None:
    lineage_cmd = commands.add_parser(
        "lineage",
        help="query what runs read and wrote (Parquet + DuckDB)",
        description="Query the lineage store: which execution read or wrote which artifact "
        "or parameter. The root is --root, else RAYPIPE_LINEAGE_ROOT, else "
        "$RAYPIPE_HOME/lineage. See docs/lineage.md.",
    )
    actions = lineage_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        action: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=description
        )
        action.add_argument("--root", help="the lineage root (a path or pyarrow.fs URI)")
        return action

    sql_cmd = add(
        "sql",
        "run a SQL query over the lineage views",
        "Run one DuckDB query over the views runs, runs_history, executions, attempts, "
        "artifacts, events and edges; print the rows as a table (or JSON).",
    )
    sql_cmd.add_argument("query", metavar="SQL", help='e.g. "SELECT * FROM runs"')
    sql_cmd.add_argument("--json", action="store_true", help="print rows as JSON objects")
    sql_cmd.set_defaults(handler=_lineage_sql)

    walks = {
        "upstream": (
            "everything that led to an artifact",
            "Print every execution that led to the artifact at URI (depth 0 wrote it), "
            "with every input each read (artifacts, parameters, objects), its producer and "
            "the execution's code digest.",
        ),
        "downstream": (
            "everything made from an artifact or dataset",
            "Print every execution that read the artifact (or dataset) at URI (depth 0), "
            "or read what was made of it, with every output each wrote.",
        ),
    }
    for name, (summary, description) in walks.items():
        walk_cmd = add(name, summary, description)
        walk_cmd.add_argument("uri", metavar="URI", help="an artifact's URI")
        walk_cmd.add_argument("--json", action="store_true", help="print rows as JSON objects")
        walk_cmd.set_defaults(handler=_lineage_walk, walk=name)

    executions_cmd = add(
        "executions",
        "list the executions of a run",
        "Print every step of a run (any state) with its attempts, times and node.",
    )
    executions_cmd.add_argument("run_id", metavar="RUN_ID")
    executions_cmd.add_argument("--json", action="store_true", help="print rows as JSON")
    executions_cmd.set_defaults(handler=_lineage_executions)

    export_cmd = add(
        "export",
        "write a run's lineage for other tools (OpenLineage)",
        "Write the lineage of one run as OpenLineage run events, one JSON object per line "
        "(what OpenLineage's file transport writes): a START and a COMPLETE, FAIL or ABORT "
        "for the pipeline run and for each step, with the artifacts each step read and "
        "wrote as datasets. To stdout, or to FILE with -o.",
    )
    export_cmd.add_argument("run_id", metavar="RUN_ID", help="the run's id (RunResult.run_id)")
    export_cmd.add_argument(
        "--format", required=True, choices=["openlineage"], help="the format (openlineage)"
    )
    export_cmd.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    export_cmd.add_argument(
        "--namespace",
        default="raypipe",
        type=_namespace,
        help="the OpenLineage namespace of the jobs (default: raypipe)",
    )
    export_cmd.set_defaults(handler=_lineage_export)

    compact_cmd = add(
        "compact",
        "merge small lineage files, losing nothing",
        "Merge the files of ended runs (and small merged files) into large sorted files "
        "under each table's compacted/ directory. Runs still going are left alone.",
    )
    compact_cmd.add_argument(
        "--idle-seconds",
        type=float,
        default=3600.0,
        help="merge a run that never ended once it has written nothing for this long "
        "(default 3600)",
    )
    compact_cmd.add_argument(
        "--rows-per-file", type=int, default=4_000_000, help="rows per merged file"
    )
    compact_cmd.set_defaults(handler=_lineage_compact)


def _service_parsers(commands: Any) -> None:
    """``runs``, ``experiments`` and ``pipelines``: a raypipe server's resources."""
    run_states = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELING", "CANCELED"]

    def group(name: str, help: str) -> Any:
        parser = commands.add_parser(
            name,
            help=help,
            description=f"{help[0].upper()}{help[1:]}, through the REST API of a raypipe "
            "server (--host, else RAYPIPE_HOST, else http://127.0.0.1:8888).",
        )
        return parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(actions: Any, name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        action: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)
        action.add_argument("--host", help="the server's URL (default: RAYPIPE_HOST)")
        action.add_argument("--token", help="a bearer token (default: RAYPIPE_TOKEN)")
        action.set_defaults(handler=handler)
        return action

    def listing(action: argparse.ArgumentParser) -> None:
        action.add_argument("--page-size", type=int, default=50, help="rows (default 50)")
        action.add_argument("--page-token", default="", help="the next page, as printed")
        action.add_argument("--json", action="store_true", help="print rows as JSON")

    runs = group("runs", "list, show, terminate and retry runs")
    runs_list = add(runs, "list", "list runs, newest first", _runs_list)
    runs_list.add_argument("--experiment", metavar="ID", help="only this experiment's runs")
    runs_list.add_argument(
        "--state",
        action="append",
        type=str.upper,
        choices=run_states,
        help="only runs in this state; repeat for several",
    )
    listing(runs_list)
    runs_get = add(runs, "get", "show a run", _runs_get)
    runs_get.add_argument("run_id", metavar="RUN_ID")
    runs_get.add_argument("--json", action="store_true", help="print the run as JSON")
    for name, help in (
        ("terminate", "cancel a run that has not ended"),
        ("retry", "run a failed or canceled run again (finished steps from the cache)"),
    ):
        add(runs, name, help, _runs_change).add_argument("run_id", metavar="RUN_ID")

    experiments = group("experiments", "list and create experiments")
    listing(add(experiments, "list", "list experiments, newest first", _experiments_list))
    create = add(experiments, "create", "create an experiment (or show it)", _experiments_create)
    create.add_argument("name", metavar="NAME")
    create.add_argument("--description", default="", help="what the experiment is for")

    pipelines = group("pipelines", "list and upload pipelines")
    listing(add(pipelines, "list", "list pipelines, newest first", _pipelines_list))
    upload = add(
        pipelines,
        "upload",
        "store a compiled pipeline (raypipe or KFP YAML/JSON) with its first version, v1",
        _pipelines_upload,
    )
    upload.add_argument("file", metavar="FILE", help="a compiled p.yaml or p.json")
    upload.add_argument("--name", help="the pipeline's name (default: the file's stem)")
    upload.add_argument("--description", help="what the pipeline does")


def _client(args: argparse.Namespace) -> Client:
    host = args.host or os.environ.get("RAYPIPE_HOST") or DEFAULT_HOST
    return Client(host, args.token or os.environ.get("RAYPIPE_TOKEN") or None)


def _print_page(
    names: list[str], items: Sequence[Any], next_page_token: str | None, *, as_json: bool
) -> int:
    """A page of service records as a table (or JSON), and where the next page starts."""
    rows = [[getattr(item, n) for n in names] for item in items]
    if as_json:
        print(json.dumps([item.model_dump(mode="json") for item in items], indent=2))
    else:
        _print_rows(names, rows, as_json=False)
    if next_page_token:
        print(f"more: --page-token {next_page_token}", file=sys.stderr)
    return 0


def _runs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_runs(
            page_token=args.page_token,
            page_size=args.page_size,
            experiment_id=args.experiment,
            state=args.state,
        )
    names = ["run_id", "display_name", "state", "created_at", "finished_at"]
    return _print_page(names, page.runs, page.next_page_token, as_json=args.json)


def _runs_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        run = client.get_run(args.run_id)
    if args.json:
        print(json.dumps(run.model_dump(mode="json"), indent=2))
        return 0
    fields = ["run_id", "display_name", "state", "experiment_id", "pipeline_version_id"]
    fields += ["recurring_run_id", "storage_state", "created_at", "finished_at"]
    for name in fields:
        print(f"{name}: {_cell(getattr(run, name))}")
    print(f"parameters: {json.dumps(run.runtime_config.parameters)}")
    if run.error is not None:
        print(f"error: {run.error.error}")
    return 0


def _runs_change(args: argparse.Namespace) -> int:
    with _client(args) as client:
        change = client.terminate_run if args.action == "terminate" else client.retry_run
        run = change(args.run_id)
    print(f"run {run.run_id}: {run.state}")
    return 0


def _experiments_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_experiments(page_token=args.page_token, page_size=args.page_size)
    names = ["experiment_id", "display_name", "storage_state", "created_at"]
    return _print_page(names, page.experiments, page.next_page_token, as_json=args.json)


def _experiments_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        experiment = client.create_experiment(args.name, args.description)
    print(f"experiment {experiment.display_name!r}: {experiment.experiment_id}")
    return 0


def _pipelines_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_pipelines(page_token=args.page_token, page_size=args.page_size)
    names = ["pipeline_id", "display_name", "description", "created_at"]
    return _print_page(names, page.pipelines, page.next_page_token, as_json=args.json)


def _pipelines_upload(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file")
    with _client(args) as client:
        pipeline = client.upload_pipeline(args.file, args.name, args.description)
    print(f"pipeline {pipeline.display_name!r}: {pipeline.pipeline_id} (version v1)")
    return 0


def _server(args: argparse.Namespace) -> int:
    from raypipe.api.server import ServerConfig, serve
    from raypipe.api.store import Store

    config = ServerConfig(
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        lease_seconds=args.lease_seconds,
    )
    with Store() as store:  # migrated once here, before the workers open it
        shown = repr(store)
    workers = f", {config.workers} workers" if config.workers > 1 else ""
    print(f"raypipe server on http://{args.host}:{args.port} ({shown}{workers})", flush=True)
    serve(config)
    return 0


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
        experiment=args.experiment,
        tracking=args.tracking,
        cache=args.cache,
    )
    code = _report(result, as_json=args.json)
    if args.result_line:
        line = json.dumps(result.model_dump(mode="json", fallback=_describe))
        print(f"{RESULT_MARK}{line}", flush=True)
    return code


def _submit(args: argparse.Namespace) -> int:
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        raise UsageError("submit needs --address http://HEAD:8265 (or RAY_API_SERVER_ADDRESS)")
    target = _load_target(args.pipeline)
    spec = target if isinstance(target, PipelineSpec) else compile_pipeline(target)
    job = submit_job(
        spec,
        _parse_arguments(spec, args.arg),
        address=address,
        run_name=args.run_name,
        artifact_root=args.artifact_root,
        experiment=args.experiment,
        tracking=args.tracking,
        cache=args.cache,
        fail_fast=args.fail_fast,
        check_resources=args.check_resources,
    )
    print(f"job {job.submission_id} at {job.address}: {job.status}", file=sys.stderr)
    if job.result is not None:
        return _report(job.result, as_json=args.json)
    # The run never started: its driver said why in the logs above (exit 2: the pipeline,
    # its arguments or the cluster's resources), or Ray did (the job failed to start).
    if job.message:
        print(f"error: {job.message}", file=sys.stderr)
    return 2 if job.driver_exit_code == 2 else 1


def _resume(args: argparse.Namespace) -> int:
    from raypipe.runtime.runner import resume

    result = resume(args.run_id, address=args.address, quiet=args.quiet)
    return _report(result, as_json=args.json)


def _replay(args: argparse.Namespace) -> int:
    from raypipe.replaying import replay

    replayed = replay(args.run_id, args.task, debug=args.pdb)
    print(f"{args.task} of run {args.run_id} returned: {replayed.value!r}")
    for name, artifact in replayed.outputs.items():
        print(f"  output {name}: {artifact.path}")
    return 0


def _cache_explain(args: argparse.Namespace) -> int:
    from raypipe.tracking.explain import explain

    print(explain(args.run_id, args.task, root=args.root))
    return 0


def _report(result: RunResult, *, as_json: bool) -> int:
    if as_json:
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


def _lineage_sql(args: argparse.Namespace) -> int:
    from raypipe.tracking.lineage import sql

    names, rows = sql(args.query, root=args.root)
    _print_rows(names, [list(r) for r in rows], as_json=args.json)
    return 0


def _lineage_walk(args: argparse.Namespace) -> int:
    from raypipe.tracking.lineage import downstream, upstream

    walk = upstream if args.walk == "upstream" else downstream
    rows = walk(args.uri, root=args.root)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
    elif rows:
        names = ["depth", "task", "code", "name", "kind", "digest", "from", "uri / value"]
        table = [
            [
                r.depth,
                r.task,
                (r.component_digest or "")[:12],
                r.name if r.position is None else f"{r.name}[{r.position}]",
                r.kind,
                (r.digest or "")[:12],
                _source(r.source, r.run_id),
                r.uri or r.value or r.object_type,
            ]
            for r in rows
        ]
        _print_rows(names, table, as_json=False, wide_last=True)
    if not rows:
        verb = "wrote" if args.walk == "upstream" else "read"
        print(f"no recorded step {verb} {args.uri}", file=sys.stderr)
        return 1
    return 0


def _lineage_executions(args: argparse.Namespace) -> int:
    from raypipe.tracking.lineage import executions

    rows = executions(args.run_id, root=args.root)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return 0
    names = ["task", "component", "state", "attempts", "start_time", "duration_s", "node_ip"]
    _print_rows(names, [[getattr(r, n) for n in names] for r in rows], as_json=False)
    return 0


def _lineage_export(args: argparse.Namespace) -> int:
    from raypipe.tracking.lineage import openlineage_events

    events = openlineage_events(args.run_id, root=args.root, namespace=args.namespace)
    lines = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events)
    if not args.output:
        sys.stdout.write(lines)
        return 0
    try:
        Path(args.output).write_text(lines, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(
        f"wrote {len(events)} OpenLineage events of run {args.run_id} to {args.output}",
        file=sys.stderr,
    )
    return 0


def _namespace(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _lineage_compact(args: argparse.Namespace) -> int:
    from raypipe.tracking.lineage import compact

    report = compact(args.root, rows_per_file=args.rows_per_file, idle_seconds=args.idle_seconds)
    print(report.summary())
    return 0


def _source(source: str | None, run_id: str) -> str | None:
    """``task/output`` of a producer in the same run, else ``run_id/task/output``."""
    if source is None or not source.startswith(run_id + "/"):
        return source
    return source[len(run_id) + 1 :]


def _print_rows(
    names: list[str], rows: list[list[Any]], *, as_json: bool, wide_last: bool = False
) -> None:
    """Rows as an aligned text table (long cells cut, but the last one with
    ``wide_last``), or as a JSON list of objects."""
    if as_json:
        print(json.dumps([dict(zip(names, r, strict=True)) for r in rows], default=str, indent=2))
        return
    cells = [
        [_cell(v, cut=not (wide_last and i == len(row) - 1)) for i, v in enumerate(row)]
        for row in rows
    ]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=sys.stderr)


def _cell(value: Any, *, cut: bool = True) -> str:
    if value is None:
        return ""
    text = str(value).replace("\n", " ")
    return text if len(text) <= 80 or not cut else text[:77] + "..."


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
