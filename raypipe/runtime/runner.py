"""``raypipe.run``: validate, submit every step to Ray at once, wait, report.

The static DAG is submitted in one pass: each step is a Ray task whose arguments are the
ObjectRefs of the upstream outputs it reads, so Ray resolves dependencies itself and data
never passes through the driver. Each step returns one ObjectRef per output plus a
report; the driver only waits on reports.

Example:
    >>> result = raypipe.run(addition, {"a": 1, "b": 2})   # doctest: +SKIP
    >>> result.status, result.output                       # doctest: +SKIP
    ('SUCCEEDED', 13)
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from raypipe.dsl.interface import IOKind
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import PipelineDefinitionError, Problem, StepFailedError
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.cluster import connect
from raypipe.runtime.config import RuntimeConfig
from raypipe.runtime.plan import Argument, Constant, Plan, PlannedStep, Source, StepOutput, plan_run
from raypipe.runtime.result import (
    ArtifactRecord,
    AttemptRecord,
    ErrorInfo,
    RunResult,
    RunStatus,
    TaskResult,
    TaskState,
)
from raypipe.runtime.worker import (
    ComponentRuntime,
    FailedOutput,
    RunContext,
    StepPolicy,
    StepReport,
    step_function,
)
from raypipe.spec.arguments import bind_arguments
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.models import PipelineSpec
from raypipe.spec.packaging import PYTHON_VERSION, decode_payload

__all__ = ["run"]

_WAIT_INTERVAL_S = 0.5


def run(
    pipeline: Pipeline | PipelineSpec,
    arguments: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    run_name: str | None = None,
    artifact_root: str | None = None,
    raise_on_failure: bool = False,
) -> RunResult:
    """Run a pipeline on Ray and wait for it to finish.

    Example:
        >>> raypipe.run(addition, {"a": 1, "b": 2}).output   # doctest: +SKIP
        13

    Args:
        pipeline: a ``@dsl.pipeline`` or a spec from ``raypipe.load``.
        arguments: values for the pipeline's inputs; defaults fill the rest.
        address: the Ray cluster; by default a running session, ``RAY_ADDRESS``, or a
            new local Ray.
        run_name: a human name for the run (default: pipeline name and time).
        artifact_root: where file artifacts go (any ``pyarrow.fs`` URI); default
            ``RAYPIPE_ARTIFACT_ROOT`` or ``$RAYPIPE_HOME/artifacts``.
        raise_on_failure: raise :class:`StepFailedError` instead of returning a failed result.

    Raises:
        PipelineDefinitionError, PipelineArgumentError: before any step runs.
        ClusterConnectionError: Ray cannot be reached.
    """
    spec = pipeline if isinstance(pipeline, PipelineSpec) else compile_pipeline(pipeline)
    bound = bind_arguments(spec, arguments)
    prepared = _prepare(spec)
    config = RuntimeConfig.from_env(artifact_root=artifact_root)
    connect(address)
    started = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex
    result = _Execution(
        spec=spec,
        prepared=prepared,
        arguments=bound,
        run=RunContext(run_id, spec.name, config.artifact_root),
        run_name=run_name or f"{spec.name}-{started:%Y%m%d-%H%M%S}",
        started=started,
    ).execute()
    if raise_on_failure and result.error is not None:
        raise StepFailedError(
            pipeline=spec.name,
            task=result.error.task,
            attempt=result.error.attempt,
            error_type=result.error.type,
            message=result.error.message,
            traceback=result.error.traceback,
            result=result,
        )
    return result


def _check_python_versions(spec: PipelineSpec, plan: Plan) -> None:
    problems = [
        Problem(
            f"compiled with Python {s.component.python.python}, this is Python {PYTHON_VERSION}; "
            "compile the pipeline again with this Python",
            spec.name,
            s.name,
            "python",
        )
        for s in plan.steps
        if s.component.python is not None and s.component.python.python != PYTHON_VERSION
    ]
    if problems:
        raise PipelineDefinitionError(problems)


_STEP_FUNCTIONS: OrderedDict[str, Any] = OrderedDict()  # component identity -> remote function
_STEP_FUNCTION_CACHE_SIZE = 256


def _remote_step_function(component: ComponentRuntime) -> Any:
    """One Ray remote function per component, reused across runs: Ray ships the function
    (and the component inside it) to each worker once, not with every task."""
    import ray

    identity = hashlib.sha256(component.model_dump_json(exclude={"payload"}).encode()).hexdigest()
    remote = _STEP_FUNCTIONS.get(identity)
    if remote is None:
        remote = _STEP_FUNCTIONS[identity] = ray.remote(step_function(component))
        if len(_STEP_FUNCTIONS) > _STEP_FUNCTION_CACHE_SIZE:
            _STEP_FUNCTIONS.popitem(last=False)
    else:
        _STEP_FUNCTIONS.move_to_end(identity)
    return remote


def _ray_options(step: PlannedStep) -> dict[str, Any]:
    options: TaskOptions = step.options
    ray_options: dict[str, Any] = {
        "num_returns": len(step.component.outputs) + 1,
        "name": step.name,
        # exceptions are retried inside the step (attempts are recorded); Ray retries
        # only a dead worker
        "max_retries": options.retries,
        "retry_exceptions": False,
    }
    if options.num_cpus is not None:
        ray_options["num_cpus"] = options.num_cpus
    if options.num_gpus is not None:
        ray_options["num_gpus"] = options.num_gpus
    if options.memory is not None:
        ray_options["memory"] = options.memory
    if options.resources:
        ray_options["resources"] = dict(options.resources)
    if options.accelerator is not None:
        ray_options["accelerator_type"] = options.accelerator
    return ray_options


@dataclass(frozen=True)
class _StepCall:
    """A planned step ready to submit: its Ray function with options bound, and its policy."""

    step: PlannedStep
    submit: Any  # remote_function.options(...): calling .remote(...) submits the task
    policy: list[Any] | None  # StepPolicy in wire form


@dataclass(frozen=True)
class _PreparedRun:
    """Everything about a spec that does not change from run to run."""

    plan: Plan
    calls: list[_StepCall]


_PREPARED: OrderedDict[int, tuple[PipelineSpec, _PreparedRun]] = OrderedDict()
_PREPARED_CACHE_SIZE = 32


def _prepare(spec: PipelineSpec) -> _PreparedRun:
    """Plan ``spec`` and bind each step to its Ray function; cached per spec object."""
    cached = _PREPARED.get(id(spec))
    if cached is not None and cached[0] is spec:
        _PREPARED.move_to_end(id(spec))
        return cached[1]
    plan = plan_run(spec)
    _check_python_versions(spec, plan)
    runtimes: dict[str, ComponentRuntime] = {}
    calls = []
    for step in plan.steps:
        runtime = runtimes.get(step.component_key)
        if runtime is None:
            python = step.component.python
            assert python is not None  # the plan holds Python steps only
            payload = decode_payload(python)
            runtime = runtimes[step.component_key] = ComponentRuntime(
                key=step.component_key,
                function_key=hashlib.sha256(payload).hexdigest(),
                payload=payload,
                inputs=step.component.inputs,
                outputs=step.component.outputs,
                filename=python.filename,
                line=python.line,
                source=python.source,
            )
        submit = _remote_step_function(runtime).options(**_ray_options(step))
        calls.append(_StepCall(step, submit, StepPolicy.from_options(step.options).to_wire()))
    prepared = _PreparedRun(plan, calls)
    _PREPARED[id(spec)] = (spec, prepared)
    if len(_PREPARED) > _PREPARED_CACHE_SIZE:
        _PREPARED.popitem(last=False)
    return prepared


class _Execution:
    """One run in flight: submits the plan, collects reports, builds the RunResult."""

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        prepared: _PreparedRun,
        arguments: dict[str, Any],
        run: RunContext,
        run_name: str,
        started: datetime,
    ) -> None:
        self.spec, self.prepared, self.plan = spec, prepared, prepared.plan
        self.arguments, self.run = arguments, run
        self.run_name, self.started = run_name, started
        self.output_refs: dict[str, dict[str, Any]] = {}
        self.report_refs: dict[str, Any] = {}

    def execute(self) -> RunResult:
        import ray

        self.submit()
        pending = {ref: name for name, ref in self.report_refs.items()}
        reports: dict[str, StepReport | BaseException] = {}
        try:
            while pending:
                ready, _ = ray.wait(
                    list(pending), num_returns=len(pending), timeout=_WAIT_INTERVAL_S
                )
                names = [pending.pop(ref) for ref in ready]
                try:
                    wires = ray.get(ready)
                    reports.update(
                        (n, StepReport.from_wire(w)) for n, w in zip(names, wires, strict=True)
                    )
                except ray.exceptions.RayError:
                    for name, ref in zip(names, ready, strict=True):
                        try:
                            reports[name] = StepReport.from_wire(ray.get(ref))
                        except ray.exceptions.RayError as exc:  # the worker died, not user code
                            reports[name] = exc
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return self.result(reports)

    def submit(self) -> None:
        import ray

        arguments = {
            name: ray.put(value) if self.spec.inputs[name].kind is IOKind.OBJECT else value
            for name, value in self.arguments.items()
        }
        for call in self.prepared.calls:
            step = call.step
            kwargs = {
                name: self.value_of(source, arguments) for name, source in step.inputs.items()
            }
            after = [self.report_refs[name] for name in step.after]
            context = [*self.run, step.name, call.policy]
            refs = call.submit.remote(context, *after, **kwargs)
            *outputs, report = refs if isinstance(refs, list) else [refs]
            self.output_refs[step.name] = dict(zip(step.component.outputs, outputs, strict=True))
            self.report_refs[step.name] = report

    def value_of(self, source: Source, arguments: Mapping[str, Any]) -> Any:
        if isinstance(source, Constant):
            return source.value
        if isinstance(source, Argument):
            return arguments[source.name]
        return self.output_refs[source.step][source.output]

    def result(self, reports: Mapping[str, StepReport | BaseException]) -> RunResult:
        import ray

        tasks: dict[str, TaskResult] = {}
        for step in self.plan.steps:  # topological: upstream states are known first
            report = reports[step.name]
            if isinstance(report, BaseException):
                upstream_failed = any(
                    tasks[u].state is not TaskState.SUCCEEDED for u in step.upstream()
                )
                tasks[step.name] = TaskResult(
                    name=step.name,
                    component=step.component_key,
                    display_name=step.display_name,
                    state=TaskState.UPSTREAM_FAILED if upstream_failed else TaskState.FAILED,
                    error=None if upstream_failed else _crash_error(step.name, report),
                )
            else:
                tasks[step.name] = _task_result(step, report)

        error = next((t.error for t in tasks.values() if t.state is TaskState.FAILED), None)
        store = ArtifactStore(self.run.artifact_root)
        outputs: dict[str, Any] = {}
        for name, source in self.plan.outputs.items():
            if isinstance(source, StepOutput):
                if tasks[source.step].state is not TaskState.SUCCEEDED:
                    continue
                value = ray.get(self.output_refs[source.step][source.output])
                if isinstance(value, FailedOutput):
                    continue
            else:
                value = self.value_of(source, self.arguments)
            outputs[name] = (
                store.artifact_from_record(value) if isinstance(value, ArtifactRecord) else value
            )
        return RunResult(
            run_id=self.run.run_id,
            run_name=self.run_name,
            pipeline=self.spec.name,
            status=RunStatus.FAILED if error is not None else RunStatus.SUCCEEDED,
            arguments=self.arguments,
            outputs=outputs,
            tasks=tasks,
            error=error,
            start_time=self.started,
            end_time=datetime.now(timezone.utc),
            artifact_root=store.public_root,
        )


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _task_result(step: PlannedStep, report: StepReport) -> TaskResult:
    # model_construct: the data was built by raypipe itself, and validating a thousand
    # reports costs a noticeable share of a fan-out run.
    attempts = [
        AttemptRecord.model_construct(
            number=a.number,
            start_time=_timestamp(a.start),
            end_time=_timestamp(a.end),
            error=None
            if a.error is None
            else ErrorInfo.model_construct(
                task=step.name,
                attempt=a.number,
                type=a.error.type,
                message=a.error.message,
                traceback=a.error.traceback,
            ),
        )
        for a in report.attempts
    ]
    state = TaskState(report.state)
    return TaskResult.model_construct(
        name=step.name,
        component=step.component_key,
        display_name=step.display_name,
        state=state,
        attempts=attempts,
        start_time=attempts[0].start_time if attempts else None,
        end_time=attempts[-1].end_time if attempts else None,
        node_id=report.node_id,
        node_ip=report.node_ip,
        outputs=report.outputs or {},
        error=attempts[-1].error if state is TaskState.FAILED and attempts else None,
    )


def _crash_error(task: str, exc: BaseException) -> ErrorInfo:
    return ErrorInfo(
        task=task,
        attempt=1,
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        traceback=str(exc),
    )
