"""One run in flight on the driver: submit every step, collect reports, stop, build the result.

``submit`` sends the whole static DAG to Ray at once (upstream ObjectRefs as arguments, so
Ray resolves dependencies itself). ``collect`` waits for the reports, closing the run's
stop flag at the first failure when the run fails fast; ``cancel`` closes it and
force-cancels every unfinished step. :class:`~raypipe.runtime.handle.RunHandle` runs
``collect`` in a background thread.

Example (what ``raypipe.submit`` does):
    >>> execution = Execution(spec=spec, prepared=prepared, arguments=bound,  # doctest: +SKIP
    ...                       run=context, run_name="addition-1", started=now)
    >>> execution.submit(); result = execution.collect()                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from raypipe.dsl.interface import IOKind
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.failures import StepCrashedError, qualified_name
from raypipe.runtime.feasibility import ResourceRequest
from raypipe.runtime.ledger import delete_run, load_history, outcomes
from raypipe.runtime.plan import Argument, Constant, Plan, PlannedStep, Source, StepOutput
from raypipe.runtime.result import (
    ArtifactRecord,
    AttemptRecord,
    ErrorInfo,
    RunResult,
    RunStatus,
    TaskResult,
    TaskState,
)
from raypipe.runtime.runfiles import RunFiles
from raypipe.runtime.worker import FailedOutput, RunContext, StepPolicy, StepReport
from raypipe.spec.models import PipelineSpec

__all__ = ["Execution", "PreparedRun", "StepCall"]

_WAIT_INTERVAL_S = 0.5  # how often the collector wakes up while steps run
_FAILED = TaskState.FAILED.value


@dataclass(frozen=True)
class StepCall:
    """A planned step ready to submit: its Ray function with options bound, and its policy."""

    step: PlannedStep
    submit: Any  # remote_function.options(...): calling .remote(...) submits the task
    policy: StepPolicy
    wire_policy: list[Any] | None  # ``policy`` as the task receives it


@dataclass(frozen=True)
class PreparedRun:
    """Everything about a spec that does not change from run to run."""

    plan: Plan
    calls: list[StepCall]
    requests: dict[ResourceRequest, list[str]]  # resource request -> steps that make it

    @functools.cached_property
    def records_attempts(self) -> bool:
        """Whether some step keeps an attempt ledger (so the run has one to delete)."""
        return any(c.policy.records_attempts for c in self.calls)

    @functools.cached_property
    def has_timeouts(self) -> bool:
        """Whether some step may leave a timeout dump on a node."""
        return any(c.policy.timeout is not None for c in self.calls)


class Execution:
    """One run in flight: submits the plan, collects reports, cancels, builds the RunResult.

    ``cancel`` may be called from any thread while ``collect`` runs in another.
    """

    def __init__(
        self,
        *,
        spec: PipelineSpec,
        prepared: PreparedRun,
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
        self.files = RunFiles(run.run_id)
        self._lock = threading.Lock()
        self._pending: dict[Any, str] = {}  # report ref -> step, until its report is in
        self._canceled = False
        self._finished = False

    # -- submitting ---------------------------------------------------------------------

    def submit(self) -> None:
        """Submit every step; if interrupted half-way, cancel what was submitted."""
        import ray

        try:
            arguments = {
                name: ray.put(value) if self.spec.inputs[name].kind is IOKind.OBJECT else value
                for name, value in self.arguments.items()
            }
            context = list(self.run)
            for call in self.prepared.calls:
                step = call.step
                kwargs = {
                    name: self.value_of(source, arguments) for name, source in step.inputs.items()
                }
                after = [self.report_refs[name] for name in step.after]
                refs = call.submit.remote([*context, step.name, call.wire_policy], *after, **kwargs)
                *outputs, report = refs if isinstance(refs, list) else [refs]
                self.output_refs[step.name] = dict(
                    zip(step.component.outputs, outputs, strict=True)
                )
                self.report_refs[step.name] = report
        except BaseException:
            for report in self.report_refs.values():
                ray.cancel(report, force=True)
            self._cleanup()
            raise
        self._pending = {ref: name for name, ref in self.report_refs.items()}

    def value_of(self, source: Source, arguments: Mapping[str, Any]) -> Any:
        if isinstance(source, Constant):
            return source.value
        if isinstance(source, Argument):
            return arguments[source.name]
        return self.output_refs[source.step][source.output]

    # -- stopping -----------------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the run: no step starts any more, running steps are killed (``ray.cancel``
        with ``force=True``). False if the run had already finished."""
        import ray

        with self._lock:
            if self._finished or self._canceled or not self._pending:
                return False
            self._canceled = True
            unfinished = list(self._pending)
        self._stop_new_steps("after cancel()")
        for ref in unfinished:
            ray.cancel(ref, force=True)
        return True

    def _stop_new_steps(self, why: str) -> None:
        """Close the run's stop flag on every node, so that no step starts any more."""
        try:
            with self._lock:
                self.files.close()
        except Exception as exc:  # the run still stops; only steps on other nodes may start
            warnings.warn(
                f"raypipe: run {self.run.run_id} of {self.spec.name} could not stop new steps "
                f"on every node {why}: {exc!r}",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- collecting ---------------------------------------------------------------------

    def collect(self) -> RunResult:
        """Wait for every step's report, then build the result and clean up."""
        import ray

        reports: dict[str, StepReport | BaseException] = {}
        try:
            while True:
                with self._lock:
                    refs = list(self._pending)
                if not refs:
                    break
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_WAIT_INTERVAL_S)
                if not ready:
                    continue
                with self._lock:
                    names = [self._pending.pop(ref) for ref in ready]
                failed = self._read_reports(names, ready, reports)
                if failed and self.run.fail_fast and not self.files.closed:
                    self._stop_new_steps("after a step failed")
            with self._lock:
                self._finished = True
            return self.result(reports)
        finally:
            self._cleanup()

    def _read_reports(
        self, names: list[str], refs: list[Any], reports: dict[str, StepReport | BaseException]
    ) -> bool:
        """Fetch the reports of finished steps into ``reports``; True if any step failed."""
        import ray

        try:
            wires = ray.get(refs)
        except ray.exceptions.RayError:  # some worker died: fetch one by one
            wires = []
            for ref in refs:
                try:
                    wires.append(ray.get(ref))
                except ray.exceptions.RayError as exc:  # the worker died, not user code
                    wires.append(exc)
        failed = False
        for name, wire in zip(names, wires, strict=True):
            if isinstance(wire, BaseException):
                reports[name] = wire
                failed = failed or not isinstance(wire, ray.exceptions.TaskCancelledError)
            else:
                reports[name] = StepReport.from_wire(wire)
                failed = failed or wire[1] == _FAILED
        return failed

    def _cleanup(self) -> None:
        """Forget the run's attempt ledger and scratch files; a failure here only warns."""
        try:
            if self.prepared.records_attempts:
                delete_run(self.run.run_id)
            self.files.cleanup(remote=self.prepared.has_timeouts)
        except Exception as exc:
            warnings.warn(
                f"raypipe: could not clean up after run {self.run.run_id} of {self.spec.name} "
                f"(ledger in Ray's KV store, files under {self.files.path}): {exc!r}",
                RuntimeWarning,
                stacklevel=1,
            )

    # -- the result ---------------------------------------------------------------------

    def result(self, reports: Mapping[str, StepReport | BaseException]) -> RunResult:
        import ray

        tasks: dict[str, TaskResult] = {}
        for call in self.prepared.calls:  # topological: upstream states are known first
            step = call.step
            report = reports[step.name]
            if isinstance(report, BaseException):
                tasks[step.name] = self._lost_task(call, report, tasks)
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
        if self._canceled:
            status = RunStatus.CANCELED
        else:
            status = RunStatus.FAILED if error is not None else RunStatus.SUCCEEDED
        return RunResult(
            run_id=self.run.run_id,
            run_name=self.run_name,
            pipeline=self.spec.name,
            status=status,
            arguments=self.arguments,
            outputs=outputs,
            tasks=tasks,
            error=error,
            start_time=self.started,
            end_time=datetime.now(timezone.utc),
            artifact_root=store.public_root,
        )

    def _lost_task(
        self, call: StepCall, exc: BaseException, tasks: Mapping[str, TaskResult]
    ) -> TaskResult:
        """The result of a step that returned no report: canceled, blocked, or its worker died."""
        import ray

        step = call.step
        for ref in self.output_refs[step.name].values():
            # Ray logs "Unhandled error" for an errored ObjectRef nobody fetched; this
            # step's error is in the result, so fetch its outputs' copies of it here.
            with contextlib.suppress(Exception):  # the same error, already in the result
                ray.get(ref, timeout=0)
        upstream = [tasks[u].state for u in step.upstream()]
        if any(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in upstream):
            state = TaskState.UPSTREAM_FAILED
        elif (
            self._canceled
            or isinstance(exc, ray.exceptions.TaskCancelledError)
            or TaskState.CANCELED in upstream
        ):
            state = TaskState.CANCELED
        else:
            attempts = self._crashed_attempts(call, exc)
            return TaskResult(
                name=step.name,
                component=step.component_key,
                display_name=step.display_name,
                state=TaskState.FAILED,
                attempts=attempts,
                start_time=attempts[0].start_time if attempts else None,
                end_time=attempts[-1].end_time if attempts else None,
                error=attempts[-1].error if attempts else _crash_error(self.run, step.name, exc),
            )
        return TaskResult(
            name=step.name,
            component=step.component_key,
            display_name=step.display_name,
            state=state,
        )

    def _crashed_attempts(self, call: StepCall, exc: BaseException) -> list[AttemptRecord]:
        """Attempts of a step whose last worker died, from its ledger (if it kept one)."""
        if not call.policy.records_attempts:
            return []
        history = load_history(self.run.run_id, call.step.name)
        now = datetime.now(timezone.utc).timestamp()
        found = outcomes(
            history,
            pipeline=self.run.pipeline,
            task=call.step.name,
            now=now,
            detail=_ray_detail(exc),
        )
        records = []
        for i, (number, start, end, error) in enumerate(found):
            last = i == len(found) - 1
            records.append(
                AttemptRecord(
                    number=number,
                    start_time=_timestamp(start),
                    end_time=_timestamp(end),
                    error=None
                    if error is None
                    else ErrorInfo(
                        task=call.step.name,
                        attempt=number,
                        type=error[0],
                        message=error[1],
                        traceback=error[2] or (str(exc) if last else ""),
                    ),
                )
            )
        return records


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


def _ray_detail(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _crash_error(run: RunContext, task: str, exc: BaseException) -> ErrorInfo:
    crash = StepCrashedError(pipeline=run.pipeline, task=task, attempt=1, detail=_ray_detail(exc))
    return ErrorInfo(
        task=task,
        attempt=1,
        type=qualified_name(StepCrashedError),
        message=str(crash),
        traceback=str(exc),
    )
