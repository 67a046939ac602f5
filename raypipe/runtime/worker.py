"""The code that runs inside each step's Ray task: inputs in, user function, outputs out.

``execute_step`` resolves artifact inputs, creates output artifacts, calls the component's
function (retrying on exceptions as the task options say), checks what it returned and
hands back one value per output plus a :class:`TaskResult` report. A step whose upstream
failed does not call the function; it passes :class:`FailedOutput` markers downstream.

Example (what the runner submits; not called directly):
    >>> remote = ray.remote(execute_step).options(num_returns=2)   # doctest: +SKIP
    >>> output_ref, report_ref = remote.remote(run, comp, "add", opts, a=1, b=2)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import linecache
import os
import tempfile
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cloudpickle
from pydantic import BaseModel, ConfigDict

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec, check_value
from raypipe.dsl.options import TaskOptions
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.result import (
    ArtifactRecord,
    AttemptRecord,
    ErrorInfo,
    ObjectSummary,
    TaskResult,
    TaskState,
)

__all__ = ["ComponentRuntime", "FailedOutput", "RunContext", "execute_step"]


class RunContext(BaseModel):
    """What every step of one run shares (put in the object store once per run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    pipeline: str
    artifact_root: str


class ComponentRuntime(BaseModel):
    """A component as a worker needs it (put in the object store once per run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    function_key: str  # sha256 of the payload: identifies the decoded function in a worker
    payload: bytes
    filename: str | None = None
    line: int | None = None
    source: str | None = None
    inputs: dict[str, InputSpec]
    outputs: dict[str, OutputSpec]


@dataclass(frozen=True)
class FailedOutput:
    """Stands in for an output that was never produced because ``task`` failed."""

    task: str


class StepOutputError(TypeError):
    """The function returned something that does not match its declared outputs."""


_FUNCTIONS: OrderedDict[str, Callable[..., Any]] = OrderedDict()  # per worker process
_FUNCTION_CACHE_SIZE = 256


def _function(component: ComponentRuntime) -> Callable[..., Any]:
    func = _FUNCTIONS.get(component.function_key)
    if func is None:
        func = cloudpickle.loads(component.payload)
        _restore_location(func, component)
        _FUNCTIONS[component.function_key] = func
        if len(_FUNCTIONS) > _FUNCTION_CACHE_SIZE:
            _FUNCTIONS.popitem(last=False)
    else:
        _FUNCTIONS.move_to_end(component.function_key)
    return func


def _restore_location(func: Callable[..., Any], component: ComponentRuntime) -> None:
    """Point tracebacks at the user's file and line (cloudpickle blanks the filename), and
    let them show source lines even where that file does not exist."""
    filename = component.filename
    if not filename or not isinstance(func, types.FunctionType):
        return
    func.__code__ = _renamed(func.__code__, filename)
    # Helpers defined in the same module travelled by value with the same blank filename.
    for value in func.__globals__.values():
        if (
            isinstance(value, types.FunctionType)
            and value.__module__ == func.__module__
            and value.__code__.co_filename == "<dynamic-code>"
        ):
            value.__code__ = _renamed(value.__code__, filename)
    if component.source and component.line and not os.path.exists(filename):
        lines = ["\n"] * (component.line - 1) + component.source.splitlines(keepends=True)
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's code down, without raypipe's own frames above it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_RUNTIME_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def execute_step(
    run: RunContext,
    component: ComponentRuntime,
    task: str,
    options: TaskOptions,
    /,
    *after: TaskResult,
    **inputs: Any,
) -> Any:
    """Run one step; return its outputs in declaration order, then its report."""
    output_names = list(component.outputs)
    failed_upstream = _failed_upstream(after, inputs)
    if failed_upstream is not None:
        report = TaskResult(name=task, component=component.key, state=TaskState.UPSTREAM_FAILED)
        return _returns([FailedOutput(failed_upstream)] * len(output_names), report)

    import ray  # the worker runs inside Ray; keep the module importable without it

    node_id = ray.get_runtime_context().get_node_id()
    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    store = ArtifactStore(run.artifact_root)
    func = _function(component)
    attempts: list[AttemptRecord] = []

    def ran(state: TaskState, **fields: Any) -> TaskResult:
        return TaskResult(
            name=task,
            component=component.key,
            state=state,
            attempts=attempts,
            start_time=attempts[0].start_time,
            end_time=attempts[-1].end_time,
            node_id=node_id,
            node_ip=node_ip,
            **fields,
        )

    delay = options.backoff_seconds
    for number in range(1, options.retries + 2):
        start = _now()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="raypipe-step-") as staging,
                _environment(options.env),
            ):
                values, summary = _call(func, run, component, task, inputs, store, Path(staging))
        except Exception as exc:
            error = ErrorInfo(
                task=task,
                attempt=number,
                type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=str(exc),
                traceback=_user_traceback(exc),
            )
            attempts.append(
                AttemptRecord(number=number, start_time=start, end_time=_now(), error=error)
            )
            if number <= options.retries:
                time.sleep(min(delay, options.backoff_max))
                delay *= options.backoff_factor
                continue
            report = ran(TaskState.FAILED, error=error)
            return _returns([FailedOutput(task)] * len(output_names), report)
        attempts.append(AttemptRecord(number=number, start_time=start, end_time=_now()))
        report = ran(TaskState.SUCCEEDED, outputs=summary)
        return _returns([values[name] for name in output_names], report)
    raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover


def _returns(values: list[Any], report: TaskResult) -> Any:
    # Ray with num_returns=1 stores the returned value itself, so no tuple then.
    return (*values, report) if values else report


def _failed_upstream(after: tuple[TaskResult, ...], inputs: Mapping[str, Any]) -> str | None:
    for report in after:
        if report.state not in (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.SKIPPED):
            return report.name
    for value in inputs.values():
        if isinstance(value, FailedOutput):
            return value.task
    return None


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set the step's environment variables for the call; a Ray worker runs one task at a time."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _call(
    func: Callable[..., Any],
    run: RunContext,
    component: ComponentRuntime,
    task: str,
    inputs: Mapping[str, Any],
    store: ArtifactStore,
    staging: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = component.inputs[name]
        if spec.kind is IOKind.ARTIFACT and isinstance(value, ArtifactRecord):
            kwargs[name] = store.open_input(value, spec.type, staging)
        elif spec.kind is IOKind.ARTIFACT and isinstance(value, Artifact):
            kwargs[name] = value  # a run argument given as an artifact object
        else:
            kwargs[name] = value
    output_artifacts: dict[str, Artifact] = {}
    for name, out_spec in component.outputs.items():
        if out_spec.source == "parameter":
            uri = store.output_uri(run.pipeline, run.run_id, task, name)
            output_artifacts[name] = store.new_output(
                ARTIFACT_TYPES.get(out_spec.type, Artifact), name, uri, staging
            )
    returned = func(**kwargs, **output_artifacts)
    values = _returned_values(returned, component)
    summary: dict[str, Any] = {}
    for name, out_spec in component.outputs.items():
        if out_spec.source == "parameter":
            values[name] = store.commit_output(output_artifacts[name])
        elif isinstance(values[name], Artifact):  # an artifact object the function returned
            values[name] = store.commit_output(values[name])
        summary[name] = _summarise(values[name], out_spec)
    return values, summary


def _returned_values(returned: Any, component: ComponentRuntime) -> dict[str, Any]:
    names = [n for n, s in component.outputs.items() if s.source == "return"]
    if not names:
        if returned is not None:
            raise StepOutputError(
                f"returned a {type(returned).__name__} but declares no return type; "
                "annotate the return type or return None"
            )
        return {}
    if names == ["Output"]:
        raw = {"Output": returned}
    else:
        if not isinstance(returned, tuple) or len(returned) != len(names):
            raise StepOutputError(
                f"must return a tuple of {len(names)} values ({', '.join(names)}), "
                f"got {type(returned).__name__}"
            )
        fields = getattr(returned, "_fields", None)
        if fields:
            raw = {n: getattr(returned, n) for n in names}
        else:
            raw = dict(zip(names, returned, strict=True))
    values: dict[str, Any] = {}
    for name, value in raw.items():
        spec = component.outputs[name]
        problem = check_value(value, spec)
        if problem is not None:
            raise StepOutputError(f"output {name!r}: {problem}")
        if spec.kind is IOKind.PARAMETER and isinstance(value, tuple):
            value = list(value)
        elif spec.type == "float" and isinstance(value, int):
            value = float(value)
        values[name] = value
    return values


def _summarise(value: Any, spec: OutputSpec) -> Any:
    if spec.kind is IOKind.OBJECT:
        nbytes = getattr(value, "nbytes", None)
        return ObjectSummary(
            type=f"{type(value).__module__}.{type(value).__qualname__}",
            nbytes=nbytes if isinstance(nbytes, int) else None,
        )
    return value
