"""Run a pipeline on a remote Ray cluster through its Job Submission API (``raypipe submit``).

The compiled pipeline travels as the job's ``working_dir`` (one small JSON file, uploaded
by Ray's ``JobSubmissionClient`` to the cluster's head, what a KubeRay head service
exposes on port 8265); the job's entrypoint is ``raypipe run pipeline.json --arg ...``, so
the driver runs on the cluster, next to its steps. The job's logs stream back while it
runs, and the run's result comes back as one marked line of the driver's stdout.

Ray's token authentication works as for every Ray client: with ``RAY_AUTH_MODE=token``
the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) goes with
every request; an ``Authorization`` header in ``headers`` takes its place.

Example:
    >>> job = submit_job(addition, {"a": 1, "b": 2}, address="http://head:8265")  # doctest: +SKIP
    >>> job.status, job.result.output                                               # doctest: +SKIP
    ('SUCCEEDED', 13)
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from raypipe.dsl.interface import IOKind
from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import ClusterConnectionError, PipelineArgumentError, Problem
from raypipe.runtime.cluster import probe
from raypipe.runtime.result import RunResult
from raypipe.spec.arguments import bind_arguments
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.io import dumps
from raypipe.spec.models import PipelineSpec

__all__ = ["RESULT_MARK", "JobOutcome", "job_entrypoint", "submit_job"]

RESULT_MARK = "RAYPIPE-RESULT "
"""Starts the line of a job's stdout that carries its run's result as JSON."""

SPEC_FILE = "pipeline.json"
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_POLL_S = 1.0  # how often the job's status is asked once its log stream ended early


class JobOutcome(BaseModel):
    """How a submitted job ended, and its run's result when the driver got to print it."""

    model_config = ConfigDict(frozen=True)

    submission_id: str
    address: str
    status: str  # the job's: SUCCEEDED, FAILED or STOPPED
    message: str | None = None  # Ray's word on the job (why it failed to start, ...)
    driver_exit_code: int | None = None  # raypipe run's: 0 ok, 1 run failed, 2 nothing ran
    result: RunResult | None = None  # None when the run never started (or was stopped)

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


def job_entrypoint(
    spec: PipelineSpec,
    arguments: Mapping[str, Any],
    *,
    spec_file: str = SPEC_FILE,
    run_name: str | None = None,
    artifact_root: str | None = None,
    experiment: str | None = None,
    tracking: bool | None = None,
    cache: bool = True,
    fail_fast: bool = True,
    check_resources: bool = True,
) -> str:
    """The shell command a job runs: ``raypipe run`` on the compiled file, with arguments.

    Example:
        >>> job_entrypoint(spec, {"a": 1, "b": 2})   # doctest: +SKIP
        'raypipe run pipeline.json --quiet --result-line --arg a=1 --arg b=2'

    Raises:
        PipelineArgumentError: an argument is not a parameter (objects stay in-process).
    """
    words = ["raypipe", "run", spec_file, "--quiet", "--result-line"]
    for flag, value in (
        ("--run-name", run_name),
        ("--artifact-root", artifact_root),
        ("--experiment", experiment),
    ):
        if value is not None:
            words += [flag, value]
    words += [
        flag
        for flag, on in (
            ("--no-tracking", tracking is False),
            ("--no-cache", not cache),
            ("--no-fail-fast", not fail_fast),
            ("--skip-resource-check", not check_resources),
        )
        if on
    ]
    for name, value in arguments.items():
        words += ["--arg", f"{name}={_cli_text(spec, name, value)}"]
    return shlex.join(words)


def _cli_text(spec: PipelineSpec, name: str, value: Any) -> str:
    """A value as ``raypipe run --arg`` parses it back (see ``parse_cli_value``)."""
    given = spec.inputs[name]
    if given.kind is not IOKind.PARAMETER:
        raise PipelineArgumentError(
            [
                Problem(
                    f"a {given.kind.value} argument cannot travel to a job on another "
                    "cluster; make it a parameter (a JSON value) or a URI the job reads",
                    spec.name,
                    field=name,
                )
            ]
        )
    if given.type == "str" and isinstance(value, str):
        return value
    return json.dumps(value)


def submit_job(
    pipeline: Pipeline | PipelineSpec,
    arguments: Mapping[str, Any] | None = None,
    *,
    address: str,
    run_name: str | None = None,
    artifact_root: str | None = None,
    experiment: str | None = None,
    tracking: bool | None = None,
    cache: bool = True,
    fail_fast: bool = True,
    check_resources: bool = True,
    headers: Mapping[str, str] | None = None,
    write: Callable[[str], object] | None = None,
) -> JobOutcome:
    """Run a pipeline as a Ray job on the cluster at ``address``; stream its logs; wait.

    Example:
        >>> job = submit_job(addition, {"a": 1}, address="http://head:8265")  # doctest: +SKIP
        >>> job.result.output                                                  # doctest: +SKIP
        11

    Args:
        pipeline: a ``@dsl.pipeline`` or a spec from ``raypipe.load``.
        arguments: parameter values (JSON values); the pipeline's defaults fill the rest
            on the cluster. Checked here, before anything is sent.
        address: the cluster's dashboard, ``http://HEAD:8265`` (a KubeRay head service).
        run_name, artifact_root, experiment, tracking, cache, fail_fast, check_resources:
            as for :func:`raypipe.run`, on the cluster.
        headers: HTTP headers for every request (a proxy's authentication, ...).
        write: where the job's log lines go as they arrive (default: this process's
            stdout); the result line is kept out of them.

    Raises:
        PipelineDefinitionError, PipelineArgumentError: before anything is sent.
        ClusterConnectionError: the address does not answer, or refuses the request
            (authentication, an old Ray).
        KeyboardInterrupt: after stopping the job.
    """
    spec = pipeline if isinstance(pipeline, PipelineSpec) else compile_pipeline(pipeline)
    given = dict(arguments or {})
    bind_arguments(spec, given)  # every argument problem, here rather than on the cluster
    entrypoint = job_entrypoint(
        spec,
        given,
        run_name=run_name,
        artifact_root=artifact_root,
        experiment=experiment,
        tracking=tracking,
        cache=cache,
        fail_fast=fail_fast,
        check_resources=check_resources,
    )
    client = _client(address, headers)
    with tempfile.TemporaryDirectory(prefix="raypipe-job-") as directory:
        (Path(directory) / SPEC_FILE).write_text(dumps(spec, format="json"))
        submission_id = _call(
            address,
            "submit the job",
            lambda: client.submit_job(
                entrypoint=entrypoint,
                runtime_env={"working_dir": directory},
                metadata={"raypipe.pipeline": spec.name},
            ),
        )
    out = write or _stdout
    try:
        asyncio.run(_follow(client, submission_id, out))
        info = _wait_for_end(client, address, submission_id)
    except BaseException:  # Ctrl-C (or a broken connection): do not leave the run behind
        client.stop_job(submission_id)
        raise
    logs = _call(address, "read the job's logs", lambda: client.get_job_logs(submission_id))
    return JobOutcome(
        submission_id=submission_id,
        address=address,
        status=str(info.status.value),
        message=info.message,
        driver_exit_code=info.driver_exit_code,
        result=_result(logs),
    )


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _client(address: str, headers: Mapping[str, str] | None) -> Any:
    """A ``JobSubmissionClient`` for ``address``, which must answer within seconds."""
    from ray.job_submission import JobSubmissionClient

    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        raise ClusterConnectionError(
            address,
            "expected the dashboard's http://HOST:8265 (for ray://HOST:10001, run the "
            "pipeline with raypipe run --address instead)",
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    probe(f"{parts.hostname}:{port}", named=address)
    return _call(
        address,
        "reach the Job Submission API",
        lambda: JobSubmissionClient(
            f"{parts.scheme}://{parts.netloc}", headers=dict(headers or {})
        ),
    )


def _call(address: str, what: str, call: Callable[[], Any]) -> Any:
    """``call()``, with the client's errors (HTTP, authentication) as ClusterConnectionError."""
    from ray.exceptions import RayError  # AuthenticationError: Ray's message names the fix

    try:
        return call()
    except (ConnectionError, RuntimeError, ValueError, RayError) as exc:  # what the SDK raises
        raise ClusterConnectionError(
            address, f"could not {what}: {type(exc).__name__}: {exc}"
        ) from exc


async def _follow(client: Any, submission_id: str, write: Callable[[str], object]) -> None:
    """Copy the job's log to ``write`` as it comes, line by line, without the result line."""
    pending = ""
    chunks: AsyncIterator[str] = client.tail_job_logs(submission_id)
    try:
        async for chunk in chunks:
            *lines, pending = (pending + chunk).split("\n")
            for line in lines:
                if not line.startswith(RESULT_MARK):
                    write(line + "\n")
    except RuntimeError as exc:  # the stream broke off: say so; the status poll takes over
        write(f"raypipe: the job's log stream broke off ({exc}); waiting for the job to end\n")
    if pending and not pending.startswith(RESULT_MARK):
        write(pending + "\n")


def _wait_for_end(client: Any, address: str, submission_id: str) -> Any:
    """The job's details once it ended (its log stream may end a moment before)."""
    while True:
        info = _call(address, "read the job's status", lambda: client.get_job_info(submission_id))
        if str(info.status.value) in _TERMINAL:
            return info
        time.sleep(_POLL_S)


def _result(logs: str) -> RunResult | None:
    """The run's result from the last result line of the job's logs, if the run ended."""
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_MARK):
            return RunResult.model_validate_json(line.removeprefix(RESULT_MARK))
    return None
