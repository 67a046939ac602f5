"""The code that runs inside each step's Ray task: inputs in, user function, outputs out.

``execute_step`` resolves artifact inputs, creates output artifacts, calls the component's
function (retrying on exceptions as the task options say, each attempt within its
``timeout``), checks what it returned and hands back one value per output plus a
:class:`StepReport`. A step whose upstream failed, or whose run was stopped before it
started (cancel, fail-fast), does not call the function; it passes :class:`FailedOutput`
markers downstream. A step that may be retried or has a timeout records its attempts in
the run's ledger, so an attempt whose worker died shows up in the next one's report.

Example (what the runner submits; not called directly):
    >>> remote = ray.remote(step_function(component)).options(num_returns=2)  # doctest: +SKIP
    >>> output_ref, report_ref = remote.remote(run, "add", None, a=1, b=2)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import linecache
import os
import queue
import re
import sys
import tempfile
import threading
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cloudpickle
from pydantic import BaseModel, ConfigDict

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.calling import NamedOutputs
from raypipe.dsl.component import SINGLE_OUTPUT
from raypipe.dsl.control import FINAL_STATUS_TYPE, PipelineTaskFinalStatus
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec, check_value
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.step_context import step_files
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.cache import (
    CacheEntry,
    load_object,
    lookup,
    object_uri,
    persist_object,
    value_identity,
    write_entry,
)
from raypipe.runtime.deadline import Deadline
from raypipe.runtime.ledger import AttemptEntry, load_history, outcomes, save_history
from raypipe.runtime.logs import AttemptLog, CapturedOutput, redact, stored_tail
from raypipe.runtime.markers import AttemptMarker
from raypipe.runtime.metrics import collecting
from raypipe.runtime.result import ArtifactRecord, ObjectSummary, TaskState
from raypipe.runtime.runfiles import STOP_FLAG, close_here, dump_path

__all__ = [
    "Attempt",
    "ComponentRuntime",
    "FailedOutput",
    "RunContext",
    "StepError",
    "StepPolicy",
    "StepReport",
    "execute_step",
    "step_function",
]


class RunContext(NamedTuple):
    """What every step of one run shares; a plain tuple, cheap to send with each task."""

    run_id: str
    pipeline: str
    artifact_root: str
    scratch: str  # the run's scratch directory on each node (stop flag, timeout dumps)
    fail_fast: bool  # a failed step stops the run from starting new steps
    tracking: bool = False  # steps describe their inputs for lineage and MLflow
    # (variable, value) of the step's dsl.Secret environment: set for one step's task only.
    # A task receives them as [variable, value] lists (Ray pickles tuples; see
    # execution._run_wire): read them as pairs, never compare them to a tuple.
    secrets: tuple[tuple[str, str], ...] = ()


class StepPolicy(NamedTuple):
    """How a step retries, how long it may run and what environment it sees; ``None`` in a
    call means defaults."""

    retries: int
    backoff_seconds: float
    backoff_factor: float
    backoff_max: float
    env: tuple[tuple[str, str], ...]
    timeout: float | None = None
    runs_when_stopped: bool = False  # an exit task runs even after a cancel or a failure
    persist: tuple[tuple[str, str], ...] = ()  # output (or "*") -> persistence mode

    @classmethod
    def from_options(cls, options: TaskOptions, *, runs_when_stopped: bool = False) -> StepPolicy:
        return cls(
            options.retries,
            options.backoff_seconds,
            options.backoff_factor,
            options.backoff_max,
            tuple(sorted(options.env.items())),
            options.timeout or None,  # 0 means no limit, as an unset timeout does
            runs_when_stopped,
            tuple(sorted(options.persist.items())),
        )

    def persistence(self, output: str) -> str:
        """How ``output`` is persisted: none, background or sync."""
        modes = dict(self.persist)
        return modes.get(output) or modes.get("*") or "background"

    @property
    def records_attempts(self) -> bool:
        """Whether attempts go to the ledger: only when an attempt may die and be retried,
        or be killed by the timeout watchdog (0.3 ms per write, so not for every step)."""
        return self.retries > 0 or self.timeout is not None

    def backoff(self, failures: int) -> float:
        """Seconds to wait before the attempt that follows ``failures`` failed ones."""
        return float(
            min(self.backoff_seconds * self.backoff_factor ** (failures - 1), self.backoff_max)
        )

    def to_wire(self) -> list[Any] | None:
        """A plain list for the task call, or None for the defaults (the common case)."""
        if self == _DEFAULT_POLICY:
            return None
        return [
            *self[:4],
            [list(pair) for pair in self.env],
            self.timeout,
            self.runs_when_stopped,
            [list(pair) for pair in self.persist],
        ]

    @classmethod
    def from_wire(cls, wire: list[Any] | None) -> StepPolicy:
        if wire is None:
            return _DEFAULT_POLICY
        retries, backoff_seconds, backoff_factor, backoff_max, env, timeout, always, keep = wire
        pairs = tuple((k, v) for k, v in env)
        persist = tuple((k, v) for k, v in keep)
        return cls(
            retries, backoff_seconds, backoff_factor, backoff_max, pairs, timeout, always, persist
        )


_DEFAULT_POLICY = StepPolicy(0, 0.0, 2.0, 3600.0, (), None, False, ())


class StepError(NamedTuple):
    """Why an attempt failed: the exception's qualified type, message and user traceback,
    and the last lines the attempt printed (None if it printed nothing)."""

    type: str
    message: str
    traceback: str
    log_tail: str | None = None


class Attempt(NamedTuple):
    """One try of a step; times are seconds since the epoch."""

    number: int
    start: float
    end: float
    error: StepError | None


class StepReport(NamedTuple):
    """What a step returns besides its outputs.

    On the wire it is a plain list (:meth:`to_wire`): Ray serialises builtins with msgpack
    but pickles tuple subclasses, which doubled the per-step cost of a fan-out.
    """

    task: str
    state: str  # a TaskState value
    attempts: tuple[Attempt, ...] = ()
    node_id: str | None = None
    node_ip: str | None = None
    outputs: dict[str, Any] | None = None
    # With tracking on: input name -> what the step read (see _describe_inputs), and the
    # metric points it logged, as [name, value, step, timestamp].
    inputs: dict[str, Any] | None = None
    metrics: list[list[Any]] | None = None

    def to_wire(self) -> list[Any]:
        attempts = [
            [a.number, a.start, a.end, None if a.error is None else list(a.error)]
            for a in self.attempts
        ]
        return [
            self.task,
            self.state,
            attempts,
            self.node_id,
            self.node_ip,
            self.outputs,
            self.inputs,
            self.metrics,
        ]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> StepReport:
        task, state, attempts, node_id, node_ip, outputs, inputs, metrics = wire
        return cls(
            task,
            state,
            tuple(
                Attempt(n, s, e, None if err is None else StepError(*err))
                for n, s, e, err in attempts
            ),
            node_id,
            node_ip,
            outputs,
            inputs,
            metrics,
        )


class ComponentRuntime(BaseModel):
    """A component as a worker needs it; travels once, inside its Ray remote function."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    function_key: str  # sha256 of the payload: identifies the decoded function in a worker
    payload: bytes
    inputs: dict[str, InputSpec]
    outputs: dict[str, OutputSpec]
    filename: str | None = None
    line: int | None = None
    source: str | None = None

    @functools.cached_property
    def needs_staging(self) -> bool:
        """Whether the step reads or writes file artifacts (staged locally on remote roots)."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return any(s.kind is IOKind.ARTIFACT for s in specs)


def step_function(
    component: ComponentRuntime, call: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """The function one Ray remote function per component runs; the component rides along.

    Called as ``f([*run_context, task, policy], *after_reports, **inputs)`` with plain
    values only, all of the step's context in one argument (every argument costs a
    serialisation per task; see :class:`StepReport`). It returns the outputs and the
    report in wire form. ``call`` replaces the component's function (an actor's instance).
    """

    def run_step(context: list[Any], /, *after: list[Any], **inputs: Any) -> Any:
        *run, task, policy, cache = context
        *values, report = execute_step(
            component,
            RunContext(*run),
            task,
            StepPolicy.from_wire(policy),
            after,
            inputs,
            call,
            None if cache is None else CacheUse(*cache),
        )
        # Ray with num_returns=1 stores the returned value itself, so no tuple then.
        return (*values, report.to_wire()) if values else report.to_wire()

    run_step.__name__ = run_step.__qualname__ = component.key.replace("-", "_")
    return run_step


class CollectedRefs(list[Any]):
    """A ``dsl.Collected`` input as the step receives it: the ObjectRefs of the loop's
    values (nested for nested loops), fetched in the worker, never through the driver."""


class JoinedParts(list[Any]):
    """A string input made of parts (values and ObjectRefs), joined in the worker."""


def join_text(parts: Iterable[Any]) -> str:
    """The string of an f-string of pipeline values: strings as they are, the rest as JSON.

    Example:
        >>> join_text(["n=", 7, " ok=", True])
        'n=7 ok=true'
    """
    return "".join(p if isinstance(p, str) else json.dumps(p) for p in parts)


class StepActor:
    """A Ray actor running the steps of an actor component: the user's class is built once
    (its ``__init__`` loads what is expensive) and called for every step it is given."""

    def __init__(self, component: ComponentRuntime) -> None:
        instance = _function(component)()
        self._run_step = step_function(component, call=instance)

    def run(self, context: list[Any], /, *after: list[Any], **inputs: Any) -> Any:
        return self._run_step(context, *after, **inputs)


@dataclass(frozen=True)
class FailedOutput:
    """Stands in for an output that was never produced because ``task`` failed (or, with
    ``canceled``, because the run stopped before ``task`` started)."""

    task: str
    canceled: bool = False


class StepExitError(RuntimeError):
    """The step's function called ``sys.exit`` with a failure code."""


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
    func = getattr(func, "__wrapped__", func)  # a PathCall's function
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


def execute_step(
    component: ComponentRuntime,
    run: RunContext,
    task: str,
    policy: StepPolicy,
    after: tuple[list[Any], ...],
    inputs: Mapping[str, Any],
    call: Callable[..., Any] | None = None,
    cache: CacheUse | None = None,
) -> list[Any]:
    """Run one step; return its outputs in declaration order, then its report.

    ``after`` holds the wire-form reports of the steps this one waits for; ``call`` is
    what to call instead of the component's function (an actor component's instance);
    ``cache`` says under which key the step may be reused and stored (None: never).
    """
    output_names = list(component.outputs)
    inputs = _with_collected_and_status(component, inputs)
    if policy.runs_when_stopped:
        inputs = _defaults_for_missing(component, inputs)
    blocked = _blocked_by(after, inputs)
    stopped = (  # canceled, or failed fast
        blocked is None and not policy.runs_when_stopped and is_closed_fast(run.scratch)
    )
    if stopped and not policy.records_attempts:
        blocked = FailedOutput(task, canceled=True)
    if blocked is not None:
        return _not_run(task, output_names, blocked)

    node_id, node_ip = _node()
    store = _store(run.artifact_root)
    if cache is not None and cache.lookup and not stopped:
        entry = lookup(store, cache.key)
        if entry is not None:
            return _from_cache(entry, component, run, task, inputs, store, node_id, node_ip)
    try:
        func = call if call is not None else _function(component)
    except Exception as exc:  # e.g. a module it imports is missing on this node: a failure
        # of the step (retrying on the same worker would not help), not a dead worker
        now = time.time()
        error = StepError(
            f"{type(exc).__module__}.{type(exc).__qualname__}",
            f"cannot load the step's function on node {node_ip}: {exc}",
            "".join(traceback.format_exception(exc)),
        )
        return _failed(run, task, output_names, [Attempt(1, now, now, error)], node_id, node_ip)
    staged = component.needs_staging and not store.is_local
    ledger = _Ledger(run, task, policy, node_id, node_ip) if policy.records_attempts else None
    attempts: list[Attempt] = ledger.previous() if ledger is not None else []
    if stopped:  # Ray re-ran this step after its worker died, but the run has stopped since
        if not attempts:
            return _not_run(task, output_names, FailedOutput(task, canceled=True))
        return _failed(run, task, output_names, attempts, node_id, node_ip)
    number = len(attempts) + 1
    if number > policy.retries + 1:  # an earlier run of this step used the last attempt, then died
        return _failed(run, task, output_names, attempts, node_id, node_ip)
    if attempts:
        time.sleep(policy.backoff(len(attempts)))
    hidden = tuple(value for _, value in run.secrets)  # never in its logs or errors
    while True:
        start = time.time()
        if ledger is not None:
            ledger.started(number)
        log = AttemptLog(store, run.pipeline, run.run_id, task, number)
        # the page's "running": a file once the attempt has run for 0.2 s (markers.py)
        marker = AttemptMarker(
            store, run.pipeline, run.run_id, task, number, start, node_id, node_ip
        )
        try:
            with (
                tempfile.TemporaryDirectory(prefix="raypipe-step-")
                if staged
                else contextlib.nullcontext(tempfile.gettempdir()) as staging,
                _environment({**dict(policy.env), **dict(run.secrets)}),
                # outside the deadline: an upload is not the step's
                CapturedOutput(task, log, redact=hidden),
                collecting((run.run_id, task) if run.tracking else None) as metrics,
                _deadline(run, task, policy, number),
            ):
                values, summary = _call(func, run, component, task, inputs, store, Path(staging))
        except Exception as exc:
            error = StepError(
                f"{type(exc).__module__}.{type(exc).__qualname__}",
                redact(str(exc), hidden),
                redact(_user_traceback(exc), hidden),
                log.tail,  # redacted as it was written
            )
            attempts.append(Attempt(number, start, time.time(), error))
            # No retry once the run has stopped (another step failed fast, or a cancel):
            # the run cannot succeed any more.
            if number > policy.retries or is_closed_fast(run.scratch):
                marker.ended("failed", logged=log.written)
                return _failed(run, task, output_names, attempts, node_id, node_ip)
            # (the run may still stop during the backoff, below: then it said "retrying")
            marker.ended("retrying", logged=log.written)
            if ledger is not None:
                ledger.failed(attempts[-1])
            time.sleep(policy.backoff(len(attempts)))
            if is_closed_fast(run.scratch):
                return _failed(run, task, output_names, attempts, node_id, node_ip)
            number += 1
            continue
        attempts.append(Attempt(number, start, time.time(), None))
        marker.ended("succeeded", logged=log.written)
        if cache is not None:
            _persist(cache.key, component, run, task, policy, values, store)
        report = StepReport(
            task,
            TaskState.SUCCEEDED.value,
            tuple(attempts),
            node_id,
            node_ip,
            summary,
            _describe_inputs(component, inputs) if run.tracking else None,
            metrics or None,
        )
        return _with_report([values[name] for name in output_names], report)


class CacheUse(NamedTuple):
    """How a step uses the cache: its key, and whether it may be served from it."""

    key: str
    lookup: bool


def _from_cache(
    entry: CacheEntry,
    component: ComponentRuntime,
    run: RunContext,
    task: str,
    inputs: Mapping[str, Any],
    store: ArtifactStore,
    node_id: str,
    node_ip: str,
) -> list[Any]:
    """The outputs an earlier execution persisted, and a CACHED report."""
    values: dict[str, Any] = {}
    for name, output in entry.outputs.items():
        if output.kind == "object":
            values[name] = load_object(store, output)
        elif output.kind == "artifact":
            values[name] = output.artifact
        else:
            values[name] = output.value
    summary = {n: _summarise(values[n], spec) for n, spec in component.outputs.items()}
    report = StepReport(
        task,
        TaskState.CACHED.value,
        (),
        node_id,
        node_ip,
        summary,
        _describe_inputs(component, inputs) if run.tracking else None,
        None,
    )
    return _with_report([values[name] for name in component.outputs], report)


def _persist(
    key: str,
    component: ComponentRuntime,
    run: RunContext,
    task: str,
    policy: StepPolicy,
    values: Mapping[str, Any],
    store: ArtifactStore,
) -> None:
    """Store what a cache hit needs: in-memory outputs to files, then the index entry.

    ``sync`` outputs are stored before the step returns; otherwise everything happens on
    the worker's background writer and this only queues it (about a microsecond). A step
    with an output that is never persisted is never a hit.
    """
    modes = [policy.persistence(name) for name in component.outputs]
    if "none" in modes:
        return
    job = (key, component, run, task, dict(values), store)
    if "sync" in modes:
        _store_for_cache(*job)
    else:
        _background_writer().put(job)


def _store_for_cache(
    key: str,
    component: ComponentRuntime,
    run: RunContext,
    task: str,
    values: Mapping[str, Any],
    store: ArtifactStore,
) -> None:
    # The step's result stands even if this fails: only its reuse is lost, and said so.
    try:
        outputs: dict[str, Any] = {}
        for name, spec in component.outputs.items():
            value = values[name]
            if spec.kind is IOKind.PARAMETER and _is_json(value):
                outputs[name] = {"kind": "parameter", "value": value}
            elif spec.kind is IOKind.ARTIFACT:
                outputs[name] = {"kind": "artifact", "artifact": value.model_dump(mode="json")}
            else:
                uri = object_uri(store, run.pipeline, run.run_id, task, name)
                outputs[name] = persist_object(store, uri, value).model_dump(mode="json")
        write_entry(store, key, run.pipeline, run.run_id, task, outputs)
    except Exception as exc:
        print(  # lands in the worker's log, which Ray echoes to the driver; not in the log
            # of the step that runs now (sys.stderr is that step's while it runs)
            f"raypipe: {run.pipeline}.{task}: could not persist its outputs for the "
            f"cache: {type(exc).__name__}: {exc}",
            file=sys.__stderr__,
        )


_WRITER: queue.SimpleQueue[Any] | None = None  # the worker process's background writer


def _background_writer() -> queue.SimpleQueue[Any]:
    global _WRITER
    if _WRITER is None:
        _WRITER = queue.SimpleQueue()
        writer = _WRITER

        def drain() -> None:
            while True:
                _store_for_cache(*writer.get())

        threading.Thread(target=drain, name="raypipe-persist", daemon=True).start()
    return _WRITER


def _is_json(value: Any) -> bool:
    """Whether a parameter's value survives JSON (a dict may hold a set, say)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _not_run(task: str, output_names: list[str], blocked: FailedOutput) -> list[Any]:
    """The report of a step that did not call its function: what stopped it, downstream."""
    state = TaskState.CANCELED if blocked.canceled else TaskState.UPSTREAM_FAILED
    return _with_report([blocked] * len(output_names), StepReport(task, state.value))


def _failed(
    run: RunContext,
    task: str,
    output_names: list[str],
    attempts: list[Attempt],
    node_id: str,
    node_ip: str,
) -> list[Any]:
    if run.fail_fast:
        close_here(run.scratch)  # no new step of this run starts on this node from now on
    report = StepReport(task, TaskState.FAILED.value, tuple(attempts), node_id, node_ip, None)
    return _with_report([FailedOutput(task)] * len(output_names), report)


def is_closed_fast(scratch: str) -> bool:
    """Whether the run was stopped (canceled, or failed fast): one stat, about 2 µs."""
    return os.path.exists(scratch + _STOP_SUFFIX)


_STOP_SUFFIX = os.sep + STOP_FLAG  # runfiles.is_closed without os.path.join, on the hot path


def _deadline(
    run: RunContext, task: str, policy: StepPolicy, number: int
) -> contextlib.AbstractContextManager[Any]:
    if policy.timeout is None:
        return contextlib.nullcontext()
    return Deadline(
        pipeline=run.pipeline,
        task=task,
        timeout=policy.timeout,
        attempt=number,
        dump=dump_path(run.scratch, task, number),
    )


class _Ledger:
    """This step's attempt history in the run's ledger (see :mod:`raypipe.runtime.ledger`)."""

    def __init__(
        self, run: RunContext, task: str, policy: StepPolicy, node_id: str, node_ip: str
    ) -> None:
        self.run, self.task, self.policy = run, task, policy
        self.node_id, self.node_ip = node_id, node_ip
        self.history = load_history(run.run_id, task)

    def previous(self) -> list[Attempt]:
        """Attempts of earlier runs of this step (Ray re-ran it because its worker died)."""
        run, store = self.run, _store(self.run.artifact_root)

        def tail(number: int) -> str | None:
            return stored_tail(store, run.pipeline, run.run_id, self.task, number)

        found = outcomes(self.history, pipeline=self.run.pipeline, task=self.task, now=time.time())
        return [
            Attempt(number, start, end, None if error is None else StepError(*error, tail(number)))
            for number, start, end, error in found
        ]

    def started(self, number: int) -> None:
        timeout = self.policy.timeout
        dump = None if timeout is None else dump_path(self.run.scratch, self.task, number)
        entry = AttemptEntry.starting(
            number, node_id=self.node_id, node_ip=self.node_ip, timeout=timeout, dump=dump
        )
        self.history.append(entry)
        save_history(self.run.run_id, self.task, self.history)

    def failed(self, attempt: Attempt) -> None:
        """Record a failed attempt that will be retried (the report carries the last one)."""
        assert attempt.error is not None
        self.history[-1] = self.history[-1].model_copy(
            update={"end": attempt.end, "error": tuple(attempt.error[:3])}
        )
        save_history(self.run.run_id, self.task, self.history)


def _with_report(values: list[Any], report: StepReport) -> list[Any]:
    return [*values, report]


_BLOCKING_STATES = (TaskState.FAILED.value, TaskState.UPSTREAM_FAILED.value)
_CANCELED = TaskState.CANCELED.value


def _with_collected_and_status(
    component: ComponentRuntime, inputs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Fetch collected inputs (refs the driver never touched) and type final statuses."""
    if not any(isinstance(v, (CollectedRefs, JoinedParts)) for v in inputs.values()) and not any(
        s.type == FINAL_STATUS_TYPE for s in component.inputs.values()
    ):
        return inputs
    resolved = dict(inputs)
    for name, value in inputs.items():
        if isinstance(value, CollectedRefs):
            resolved[name] = _fetch_collected(value)
        elif isinstance(value, JoinedParts):
            parts = _fetch_collected(value)
            resolved[name] = parts if isinstance(parts, FailedOutput) else join_text(parts)
        elif component.inputs[name].type == FINAL_STATUS_TYPE and isinstance(value, dict):
            resolved[name] = PipelineTaskFinalStatus(**value)
    return resolved


def _fetch_collected(items: list[Any]) -> Any:
    import ray

    refs = [i for i in items if isinstance(i, ray.ObjectRef)]
    fetched = dict(zip(refs, ray.get(refs), strict=True)) if refs else {}
    values = []
    for item in items:
        if isinstance(item, ray.ObjectRef):
            value = fetched[item]
        elif isinstance(item, CollectedRefs):
            value = _fetch_collected(item)
        else:
            value = item
        if isinstance(value, FailedOutput):
            return value  # the consumer did not get all its items: it did not run
        if isinstance(value, list) and any(isinstance(v, FailedOutput) for v in value):
            return next(v for v in value if isinstance(v, FailedOutput))
        values.append(value)
    return values


def _defaults_for_missing(
    component: ComponentRuntime, inputs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """For a step that runs however its upstream ended (KFP's ``ignore_upstream_failure``,
    exit tasks): an optional input whose producer failed takes its default."""
    if not any(isinstance(v, FailedOutput) for v in inputs.values()):
        return inputs
    return {
        name: component.inputs[name].default
        if isinstance(value, FailedOutput) and component.inputs[name].optional
        else value
        for name, value in inputs.items()
    }


def _blocked_by(after: tuple[list[Any], ...], inputs: Mapping[str, Any]) -> FailedOutput | None:
    """Why this step must not run: an upstream step failed, or was canceled; else None.

    A failure wins over a cancellation (``UPSTREAM_FAILED`` says more than ``CANCELED``).
    """
    canceled: FailedOutput | None = None
    for wire in after:  # wire-form reports: [task, state, ...]
        if wire[1] in _BLOCKING_STATES:
            return FailedOutput(wire[0])
        if wire[1] == _CANCELED and canceled is None:
            canceled = FailedOutput(wire[0], canceled=True)
    for value in inputs.values():
        if isinstance(value, FailedOutput):
            if not value.canceled:
                return value
            canceled = canceled or value
    return canceled


@functools.cache
def _node() -> tuple[str, str]:
    """This worker's Ray node id and IP (they do not change for a process)."""
    import ray  # the worker runs inside Ray; keep this module importable without it

    node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return ray.get_runtime_context().get_node_id(), node_ip


@functools.lru_cache(maxsize=16)
def _store(root: str) -> ArtifactStore:
    """One store per artifact root per worker: building a remote filesystem is not free."""
    return ArtifactStore(root)


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
        elif spec.kind is IOKind.OBJECT and isinstance(value, list) and spec.annotation:
            listed = _ARTIFACT_LIST.fullmatch(spec.annotation)  # Input[List[Dataset]]
            kwargs[name] = (
                [
                    store.open_input(v, listed.group(1), staging)
                    if isinstance(v, ArtifactRecord)
                    else v
                    for v in _flat(value)  # a list of artifacts is flat, even from nested loops
                ]
                if listed
                else value
            )
        else:  # a parameter, an object, or an artifact object given as a run argument
            kwargs[name] = value
    output_artifacts: dict[str, Artifact] = {}
    for name, out_spec in component.outputs.items():
        if out_spec.source == "parameter":
            uri = store.output_uri(run.pipeline, run.run_id, task, name)
            output_artifacts[name] = store.new_output(
                ARTIFACT_TYPES.get(out_spec.type, Artifact), name, uri, staging
            )
    task_uri = store.output_uri(run.pipeline, run.run_id, task, SINGLE_OUTPUT)
    with step_files(store.step_files(task_uri, staging)):
        try:
            returned = func(**kwargs, **output_artifacts)
        except SystemExit as exc:  # KFP components fail with sys.exit(1); keep the worker
            if hasattr(exc, "ray_terminate_msg"):
                # Ray ending this worker (its SIGTERM handler: the node is stopping), not
                # the step exiting: let the worker end, so that the driver sees it die
                # with its node rather than a step that chose to fail.
                raise
            if exc.code not in (None, 0):
                raise StepExitError(f"the step called sys.exit({exc.code!r})") from exc
            returned = None
        values = _returned_values(returned, component)
        summary: dict[str, Any] = {}
        for name, out_spec in component.outputs.items():
            if out_spec.source == "parameter":
                values[name] = store.commit_output(output_artifacts[name])
            elif isinstance(values[name], Artifact):  # an artifact the function returned
                values[name].name = values[name].name or name
                values[name] = store.commit_output(values[name])
            elif out_spec.kind is IOKind.ARTIFACT and isinstance(values[name], (str, bytes)):
                # KFP's older form: the returned text is the artifact's content
                values[name] = store.commit_output(
                    _written_artifact(store, run, task, name, out_spec, values[name], staging)
                )
            summary[name] = _summarise(values[name], out_spec)
    return values, summary


def _written_artifact(
    store: ArtifactStore,
    run: RunContext,
    task: str,
    name: str,
    spec: OutputSpec,
    content: str | bytes,
    staging: Path,
) -> Artifact:
    uri = store.output_uri(run.pipeline, run.run_id, task, name)
    artifact = store.new_output(ARTIFACT_TYPES.get(spec.type, Artifact), name, uri, staging)
    with open(artifact.path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return artifact


def _flat(values: list[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from _flat(value)
        else:
            yield value


_ARTIFACT_LIST = re.compile(r"(?:list|List)\[(\w+)\]")


def _returned_values(returned: Any, component: ComponentRuntime) -> dict[str, Any]:
    names = [n for n, s in component.outputs.items() if s.source == "return"]
    if not names:
        if returned is not None and returned != NamedOutputs():
            raise StepOutputError(
                f"returned a {type(returned).__name__} but declares no return type; "
                "annotate the return type or return None"
            )
        return {}
    if isinstance(returned, NamedOutputs):  # a PathCall: return values and OutputPath files
        missing = sorted(set(names) - set(returned))
        if missing:
            raise StepOutputError(f"produced no value for {', '.join(missing)}")
        raw = {n: returned[n] for n in names}
    elif names == [SINGLE_OUTPUT]:
        raw = {SINGLE_OUTPUT: returned}
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


_SCALARS = (str, int, float, bool, type(None))
_MAX_PARAMETER_CHARS = 1024  # longer parameter values are described by digest and size


def _describe_inputs(component: ComponentRuntime, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the step read, for lineage and MLflow: plain values, cheap to send.

    Parameters: ``{"value": v}`` when small, else ``{"digest", "size"}`` of their JSON;
    artifacts: ``{"artifact": record}`` (or ``"artifacts"`` for a collected list);
    objects: ``{"object": summary}``.
    """
    described: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = component.inputs[name]
        if spec.kind is IOKind.PARAMETER:
            described[name] = _describe_parameter(value)
        elif spec.kind is IOKind.ARTIFACT:
            if isinstance(value, list):
                described[name] = {"artifacts": [v for v in value if isinstance(v, ArtifactRecord)]}
            elif isinstance(value, ArtifactRecord):
                described[name] = {"artifact": value}
            else:  # an artifact object given as a run argument
                described[name] = {"artifact": None}
        else:
            described[name] = {"object": _summarise(value, _OBJECT_SPEC)}
    return described


def _describe_parameter(value: Any) -> dict[str, Any]:
    if isinstance(value, _SCALARS) and not (
        isinstance(value, str) and len(value) > _MAX_PARAMETER_CHARS
    ):
        return {"value": value}
    if isinstance(value, PipelineTaskFinalStatus):
        return {"value": dataclasses.asdict(value)}
    try:
        text = json.dumps(value, sort_keys=True, default=_artifact_json)
    except (TypeError, ValueError):  # a list of arrays, say: described, never sent whole
        return {"digest": value_identity(value)}
    if len(text) <= _MAX_PARAMETER_CHARS:
        return {"value": value}
    return {"digest": hashlib.sha256(text.encode()).hexdigest(), "size": len(text)}


def _artifact_json(value: Any) -> Any:
    """JSON for artifact records inside a parameter (a collected list of artifacts)."""
    if isinstance(value, ArtifactRecord):
        return value.model_dump()
    raise TypeError(f"{type(value).__name__} is not JSON")


_OBJECT_SPEC = OutputSpec(type="object", kind=IOKind.OBJECT)


def _summarise(value: Any, spec: OutputSpec) -> Any:
    if spec.kind is IOKind.OBJECT:
        nbytes = getattr(value, "nbytes", None)
        return ObjectSummary(
            type=f"{type(value).__module__}.{type(value).__qualname__}",
            nbytes=nbytes if isinstance(nbytes, int) else None,
        )
    return value
