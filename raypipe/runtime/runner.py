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

import functools
import hashlib
import uuid
from collections.abc import Mapping
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
    ErrorInfo,
    RunResult,
    RunStatus,
    TaskResult,
    TaskState,
)
from raypipe.runtime.worker import ComponentRuntime, FailedOutput, RunContext, execute_step
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
    plan = plan_run(spec)
    _check_python_versions(spec, plan)
    config = RuntimeConfig.from_env(artifact_root=artifact_root)
    connect(address)
    started = datetime.now(timezone.utc)
    run_id = uuid.uuid4().hex
    result = _Execution(
        spec=spec,
        plan=plan,
        arguments=bound,
        run=RunContext(run_id=run_id, pipeline=spec.name, artifact_root=config.artifact_root),
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


@functools.cache
def _remote_execute_step() -> Any:
    import ray

    return ray.remote(execute_step)


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


class _Execution:
    """One run in flight: submits the plan, collects reports, builds the RunResult."""

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        plan: Plan,
        arguments: dict[str, Any],
        run: RunContext,
        run_name: str,
        started: datetime,
    ) -> None:
        self.spec, self.plan, self.arguments, self.run = spec, plan, arguments, run
        self.run_name, self.started = run_name, started
        self.output_refs: dict[str, dict[str, Any]] = {}
        self.report_refs: dict[str, Any] = {}

    def execute(self) -> RunResult:
        import ray

        self.submit()
        pending = {ref: name for name, ref in self.report_refs.items()}
        reports: dict[str, TaskResult | BaseException] = {}
        try:
            while pending:
                ready, _ = ray.wait(
                    list(pending), num_returns=len(pending), timeout=_WAIT_INTERVAL_S
                )
                for ref in ready:
                    name = pending.pop(ref)
                    try:
                        reports[name] = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died, not user code
                        reports[name] = exc
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return self.result(reports)

    def submit(self) -> None:
        import ray

        remote = _remote_execute_step()
        run_ref = ray.put(self.run)
        components: dict[str, Any] = {}
        arguments = {
            name: ray.put(value) if self.spec.inputs[name].kind is IOKind.OBJECT else value
            for name, value in self.arguments.items()
        }
        for step in self.plan.steps:
            component_ref = components.get(step.component_key)
            if component_ref is None:
                assert step.component.python is not None
                payload = decode_payload(step.component.python)
                component_ref = components[step.component_key] = ray.put(
                    ComponentRuntime(
                        key=step.component_key,
                        function_key=hashlib.sha256(payload).hexdigest(),
                        payload=payload,
                        filename=step.component.python.filename,
                        line=step.component.python.line,
                        source=step.component.python.source,
                        inputs=step.component.inputs,
                        outputs=step.component.outputs,
                    )
                )
            kwargs = {
                name: self.value_of(source, arguments) for name, source in step.inputs.items()
            }
            after = [self.report_refs[name] for name in step.after]
            refs = remote.options(**_ray_options(step)).remote(
                run_ref, component_ref, step.name, step.options, *after, **kwargs
            )
            *outputs, report = refs if isinstance(refs, list) else [refs]
            self.output_refs[step.name] = dict(zip(step.component.outputs, outputs, strict=True))
            self.report_refs[step.name] = report

    def value_of(self, source: Source, arguments: Mapping[str, Any]) -> Any:
        if isinstance(source, Constant):
            return source.value
        if isinstance(source, Argument):
            return arguments[source.name]
        return self.output_refs[source.step][source.output]

    def result(self, reports: Mapping[str, TaskResult | BaseException]) -> RunResult:
        import ray

        tasks: dict[str, TaskResult] = {}
        for step in self.plan.steps:  # topological: upstream states are known first
            report = reports[step.name]
            if isinstance(report, BaseException):
                upstream_failed = any(
                    tasks[u].state is not TaskState.SUCCEEDED for u in step.upstream()
                )
                report = TaskResult(
                    name=step.name,
                    component=step.component_key,
                    state=TaskState.UPSTREAM_FAILED if upstream_failed else TaskState.FAILED,
                    error=None if upstream_failed else _crash_error(step.name, report),
                )
            tasks[step.name] = report.model_copy(update={"display_name": step.display_name})

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


def _crash_error(task: str, exc: BaseException) -> ErrorInfo:
    return ErrorInfo(
        task=task,
        attempt=1,
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        traceback=str(exc),
    )
