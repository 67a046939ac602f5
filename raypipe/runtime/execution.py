"""One run in flight on the driver: submit every step, collect reports, stop, build the result.

``submit`` sends the static DAG to Ray (upstream ObjectRefs as arguments, so Ray resolves
dependencies itself), up to the run's step window (:func:`step_window`); ``collect``
waits for the reports, refilling the window when half of it has ended, closing the run's
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
import itertools
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from raypipe.dsl.interface import IOKind
from raypipe.runtime import live_metrics
from raypipe.runtime.actors import ActorPool
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.cache import value_identity
from raypipe.runtime.events import (
    EventBus,
    InputRecord,
    MetricPoint,
    RunEnded,
    StepEnded,
    StepMetrics,
)
from raypipe.runtime.failures import NodeLostError, StepCrashedError, qualified_name
from raypipe.runtime.feasibility import ResourceRequest
from raypipe.runtime.ledger import delete_run, load_history, outcomes
from raypipe.runtime.logs import stored_tail
from raypipe.runtime.lost_nodes import CHECK_INTERVAL_S as NODE_CHECK_INTERVAL_S
from raypipe.runtime.lost_nodes import NodeWatch
from raypipe.runtime.placement import AliveNodes
from raypipe.runtime.result import (
    ATTEMPT_FIELDS,
    TASK_FIELDS,
    ArtifactRecord,
    AttemptRecord,
    ErrorInfo,
    ObjectSummary,
    RunResult,
    RunStatus,
    SlimTask,
    TaskResult,
    TaskResults,
    TaskState,
)
from raypipe.runtime.runfiles import RunFiles
from raypipe.runtime.scheduler import (
    DEFAULT_STEP_WINDOW,
    Absent,
    Collected,
    Known,
    Ref,
    Scheduler,
    StepRecord,
    Value,
)
from raypipe.runtime.scheduler import StepCall as ScheduledStep
from raypipe.runtime.worker import (
    ComponentRuntime,
    FailedOutput,
    RunContext,
    StepPolicy,
    StepReport,
)
from raypipe.spec.models import ComponentSpec, PipelineSpec, TaskSpec

__all__ = ["Execution", "Failure", "PreparedRun", "Snapshot", "StepCall", "describe_value"]

_WAIT_INTERVAL_S = 0.5  # how often the collector wakes up while steps run

STEPS_PER_CPU = 16
"""Steps in flight per CPU of the cluster (see :func:`step_window`): with the window
refilled when half of it has ended, every CPU has several steps queued for it."""
_FAILED = TaskState.FAILED.value
_SUCCESSFUL = frozenset(s.value for s in (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.SKIPPED))


@dataclass(frozen=True)
class ActorSpec:
    """How to start the actors of an actor component, once per run."""

    remote_class: Any  # ray.remote(StepActor).options(...)
    component: ComponentRuntime
    size: int
    num_returns: int


@dataclass(frozen=True)
class StepCall:
    """A Python task ready to submit: its Ray function with options bound, and its policy."""

    task: TaskSpec
    component: ComponentSpec
    submit: Any  # remote_function.options(...): calling .remote(...) submits the task
    policy: StepPolicy
    wire_policy: list[Any] | None  # ``policy`` as the task receives it
    actor: ActorSpec | None = None  # set for actor components: steps go to a pool instead
    digest: str | None = None  # sha256 of the component's code
    request: ResourceRequest | None = None  # what it asks Ray for (lost-node checks)


@dataclass(frozen=True)
class _Pending:
    """A submitted step whose report is not in yet."""

    name: str
    outputs: list[Any]  # its output refs
    call: StepCall
    submitted_at: float  # time.monotonic()
    pool: ActorPool | None  # the actors serving it, for an actor component
    sources: dict[str, list[str]]  # input -> the "step/output"s it came from
    cache_key: str
    identities: dict[str, str]  # input -> its identity in the cache key


@dataclass(frozen=True)
class _Lost:
    """A step that returned no report: ``error`` is what Ray raised instead."""

    error: BaseException
    call: StepCall


@dataclass(frozen=True)
class Failure:
    """A step that failed, as the collector learnt it: task, error type and message."""

    task: str
    type: str
    message: str


@dataclass(frozen=True)
class Snapshot:
    """What a progress display needs, copied under the lock (see :meth:`Execution.snapshot`).

    raypipe knows when a step was *submitted* and when it *finished*, not when it started:
    ``in_flight`` steps are waiting for their inputs or a worker, or running.
    """

    elapsed: float  # seconds since the run was created
    finished: dict[str, int]  # TaskState value -> steps reported or decided in that state
    in_flight: int  # steps submitted and not finished
    oldest: list[tuple[str, float]]  # (step, seconds since submission), oldest first
    failures: list[Failure]  # failures after the first ``failures_seen`` ones
    failure_count: int  # every failure so far


@dataclass(frozen=True)
class PreparedRun:
    """Everything about a spec that does not change from run to run."""

    calls: dict[int, StepCall]  # id(TaskSpec) -> how to submit it
    requests: dict[ResourceRequest, list[str]]  # resource request -> tasks that make it
    digest: str = ""  # sha256 of the spec
    spec_json: str = ""  # the spec as JSON (what a run's manifest keeps)

    @functools.cached_property
    def records_attempts(self) -> bool:
        """Whether some step keeps an attempt ledger (so the run has one to delete)."""
        return any(c.policy.records_attempts for c in self.calls.values())

    @functools.cached_property
    def has_training(self) -> bool:
        """Whether some step is a training step (whose metrics arrive while it runs)."""
        return any(c.task.options.train is not None for c in self.calls.values())

    @functools.cached_property
    def has_timeouts(self) -> bool:
        """Whether some step may leave a timeout dump on a node."""
        return any(c.policy.timeout is not None for c in self.calls.values())


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
        events: EventBus | None = None,
        cache: bool = True,
        resuming: bool = False,
        on_end: Callable[[str], None] | None = None,
        node_watch: NodeWatch | None = None,
        secrets: Mapping[int, tuple[tuple[str, str], ...]] | None = None,
        window: int = DEFAULT_STEP_WINDOW,
    ) -> None:
        self.spec, self.prepared = spec, prepared
        self.arguments, self.run = arguments, run
        self.run_name, self.started = run_name, started
        self.events = events  # None when tracking is off: then no event is even built
        self.cache = cache  # steps are stored in and served from the cache
        self.resuming = resuming  # a resumed run reuses every step it finished before
        self._on_end = on_end  # told the run's final status (marks its manifest ended)
        self.scheduler: Scheduler | None = None
        self._pools: dict[int, ActorPool] = {}  # id(ActorSpec) -> this run's actors
        self.files = RunFiles(run.scratch)
        self._lock = threading.Lock()
        # Report ref -> step, until its report is in: only what is in flight is held here.
        self._pending: dict[Any, _Pending] = {}
        # Step -> how it ended; a step's report is read once and its refs are let go.
        self._ended: dict[str, TaskResult | SlimTask | _Lost] = {}
        # For progress displays (snapshot()); written by the submitting/collecting thread.
        self._t0 = time.monotonic()
        self._states: Counter[str] = Counter()  # TaskState value -> reported steps
        self._failures: list[Failure] = []
        self._canceled = False
        self._finished = False
        self._live_taken = 0.0  # time.monotonic() of the last take of live metrics
        # Fails waiting steps that only lost nodes could run (None: not watched).
        self._node_watch = node_watch
        self._nodes_checked = time.monotonic()
        self._stranded: dict[Any, NodeLostError] = {}  # report ref -> why it was canceled
        # id(task) -> its dsl.Secret variables and values: sent with that task's call only
        self._secrets = dict(secrets or {})
        self.window = window  # steps in flight at most (see step_window)
        self._run_wire = _run_wire(run)  # what every step's task receives of ``run``

    # -- submitting ---------------------------------------------------------------------

    def _placeholder_values(self) -> dict[str, str]:
        """The run-level values of ``dsl.PIPELINE_*_PLACEHOLDER``."""
        created = self.started.astimezone(timezone.utc).isoformat()
        return {
            "pipeline_job_name": self.run_name,
            "pipeline_job_resource_name": f"{self.spec.name}-{self.run.run_id}",
            "pipeline_job_uuid": self.run.run_id,
            "pipeline_job_create_time_utc": created,
            "pipeline_job_schedule_time_utc": created,
            "pipeline_root": self.run.artifact_root,
        }

    def submit(self) -> None:
        """Submit every step that can start now, up to the step window; if interrupted,
        cancel what was submitted."""
        import ray

        objects = [n for n in self.arguments if self.spec.inputs[n].kind is IOKind.OBJECT]
        arguments = {
            name: ray.put(value) if name in objects else value
            for name, value in self.arguments.items()
        }
        # What cache keys see of in-memory arguments: their content, hashed once per run.
        identities = (
            {name: value_identity(self.arguments[name]) for name in objects} if self.cache else {}
        )
        self.scheduler = Scheduler(
            self.spec,
            arguments,
            submit=self._submit_step,
            fetch=_fetch,
            run_id=self.run.run_id,
            run_name=self.run_name,
            identities=identities,
            keys=self.cache,
            window=self.window,
            placeholders=self._placeholder_values(),
        )
        try:
            self.scheduler.start()
        except BaseException:
            with self._lock:
                submitted = list(self._pending)
            for report in submitted:
                ray.cancel(report, force=True)
            self._cleanup()
            raise

    def _submit_step(self, step: ScheduledStep) -> tuple[dict[str, Any], Any]:
        """Submit one step the scheduler decided on; its report joins the pending ones."""
        call = self.prepared.calls[id(step.task)]
        # With the cache on, every step stores its outputs; a step with cache=False has a key
        # unique to this run, so only a resume of this run may be served from it. A run
        # with cache=False neither reads nor writes the cache.
        cache = None
        if self.cache:
            reuse = step.task.options.cache or self.resuming
            cache = [step.cache_key, reuse]
        secrets = self._secrets.get(id(step.task))
        run = self._run_wire if secrets is None else _run_wire(self.run._replace(secrets=secrets))
        context = [*run, step.name, call.wire_policy, cache]
        pool = None if call.actor is None else self._pool(call.actor)
        refs = (call.submit if pool is None else pool).remote(context, *step.after, **step.inputs)
        *outputs, report = refs if isinstance(refs, list) else [refs]
        with self._lock:
            self._pending[report] = _Pending(
                step.name,
                outputs,
                call,
                time.monotonic(),
                pool,
                step.sources,
                step.cache_key,
                step.identities,
            )
        return dict(zip(step.component.outputs, outputs, strict=True)), report

    # -- stopping -----------------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the run: no step starts any more, running steps are killed (``ray.cancel``
        with ``force=True``). False if the run had already finished."""
        import ray

        with self._lock:
            if self._finished or self._canceled or not self._pending:
                return False
            self._canceled = True
        self._stop_new_steps("after cancel()")
        # Read after the flag is closed: a step the collector submits from now on (from
        # the step window) sees the flag when it starts, and ends CANCELED unrun.
        with self._lock:
            unfinished = list(self._pending)
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
        """Wait for every step's report, feeding the scheduler, then build the result."""
        import ray

        scheduler = self.scheduler
        assert scheduler is not None, "submit() first"
        try:
            while True:
                with self._lock:
                    refs = list(self._pending)
                waits = [w for w in scheduler.waiting_on() if w not in self._pending]
                if not refs and not waits:
                    break
                candidates = refs + waits
                if waits:  # control flow waits on values: wake for the first one, not for all
                    wanted = 1
                elif scheduler.backlog:  # ready steps wait for the window: refill it at half
                    wanted = max(1, len(refs) - scheduler.window // 2)
                else:
                    wanted = len(candidates)
                ready, rest = ray.wait(candidates, num_returns=wanted, timeout=_WAIT_INTERVAL_S)
                if self.events is not None and self.prepared.has_training:
                    self._take_live_metrics()
                if self._node_watch is not None:
                    self._fail_stranded_steps(self._node_watch)
                if not ready:
                    continue
                if waits and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                with self._lock:
                    reported = [ref for ref in ready if ref in self._pending]
                    steps = [self._pending.pop(ref) for ref in reported]
                failed, unsuccessful = self._read_reports(steps, reported)
                if failed and self.run.fail_fast and not self.files.closed:
                    self._stop_new_steps("after a step failed")
                scheduler.on_ready(ready, unsuccessful)
            if not scheduler.finished:
                raise AssertionError(f"run {self.run.run_id} stalled: nothing left to wait for")
            with self._lock:
                self._finished = True
            result = self.result()
            if self.events is not None:
                self._post_end(result)
            if self._on_end is not None:
                self._on_end(result.status.value)
            return result
        finally:
            self._cleanup()
            if self.events is not None:
                self.events.close()

    def _fail_stranded_steps(self, watch: NodeWatch) -> None:
        """Every ``CHECK_INTERVAL_S``: if nodes were lost, cancel each waiting step that no
        alive node can hold any more; its report then reads as a crash naming those nodes."""
        import ray

        now = time.monotonic()
        if now - self._nodes_checked < NODE_CHECK_INTERVAL_S:
            return
        self._nodes_checked = now
        alive = AliveNodes.read()
        lost = watch.lost(alive)
        if not lost:
            return
        with self._lock:
            waiting = [
                (ref, step)
                for ref, step in self._pending.items()
                if ref not in self._stranded and step.pool is None and step.call.request
            ]
        for ref, step in waiting:
            assert step.call.request is not None  # filtered above
            problem = watch.stranded(step.call.request, alive)
            if problem is not None:
                self._stranded[ref] = NodeLostError(
                    pipeline=self.spec.name, task=step.name, lost=lost, problem=problem
                )
                ray.cancel(ref, force=True)

    def _read_reports(self, steps: list[_Pending], refs: list[Any]) -> tuple[bool, list[Any]]:
        """Read the reports of finished steps into their results.

        Returns whether a step failed (not canceled), and the refs of the reports whose
        step did not succeed.
        """
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
        assert self.scheduler is not None
        records = self.scheduler.records
        failed = False
        unsuccessful: list[Any] = []
        states: list[str] = []
        failures: list[Failure] = []
        for step, ref, wire in zip(steps, refs, wires, strict=True):
            if step.pool is not None:
                step.pool.step_ended(ref)
            if isinstance(wire, BaseException):
                wire = self._stranded.pop(ref, wire)  # canceled here: its nodes were lost
                self._ended[step.name] = _Lost(wire, step.call)
                _drain(step.outputs)
                unsuccessful.append(ref)
                canceled = isinstance(wire, ray.exceptions.TaskCancelledError)
                failed = failed or not canceled
                states.append(TaskState.CANCELED.value if canceled else _FAILED)
                if not canceled:
                    failures.append(
                        Failure(step.name, qualified_name(StepCrashedError), _ray_detail(wire))
                    )
                continue
            report = StepReport.from_wire(wire)
            record = records[step.name]
            task = self._ended[step.name] = _task_result(record, report)
            record.upstream = ()  # only a step without a report needs them (_lost_task)
            if self.events is not None:
                if step.call.task.options.train is not None:  # its last live points first
                    self._post_live_metrics(step.name)
                full = task.expand() if isinstance(task, SlimTask) else task
                self.events.post(self._step_ended(full, step.call, report, step))
            states.append(report.state)
            if report.state not in _SUCCESSFUL:
                unsuccessful.append(ref)
            if report.state == _FAILED:
                failed = True
                error = task.error if isinstance(task, TaskResult) else None
                failures.append(
                    Failure(step.name, "", "")
                    if error is None
                    else Failure(step.name, error.type, error.message)
                )
        with self._lock:
            self._states.update(states)
            self._failures.extend(failures)
        return failed, unsuccessful

    # -- events for trackers -------------------------------------------------------------

    def _take_live_metrics(self) -> None:
        """Every ``live_metrics.INTERVAL_S``: the points running training steps reported."""
        now = time.monotonic()
        if now - self._live_taken < live_metrics.INTERVAL_S:
            return
        self._live_taken = now
        with self._lock:
            training = [p.name for p in self._pending.values() if p.call.task.options.train]
        for name in training:
            self._post_live_metrics(name)

    def _post_live_metrics(self, task: str) -> None:
        assert self.events is not None and self.scheduler is not None
        points = live_metrics.take(self.run.run_id, task)
        if not points:
            return
        self.events.post(
            StepMetrics(
                run_id=self.run.run_id,
                pipeline=self.spec.name,
                task=task,
                component=self.scheduler.records[task].component_key,
                points=[
                    MetricPoint.model_construct(
                        _METRIC_FIELDS, name=n, value=v, step=st, timestamp=ts
                    )
                    for n, v, st, ts in points
                ],
            )
        )

    def _step_ended(
        self,
        task: TaskResult,
        call: StepCall | None,
        report: StepReport | None,
        pending: _Pending | None,
    ) -> StepEnded:
        """The event of one ended step: what it read, what it logged, whether it is tracked."""
        component = call.component if call is not None else None
        sources = pending.sources if pending is not None else {}
        identities = pending.identities if pending is not None else {}
        described = (report.inputs if report is not None else None) or {}
        inputs = []
        for name, what in described.items():
            kind = component.inputs[name].kind if component is not None else IOKind.PARAMETER
            inputs.append(
                InputRecord.model_construct(
                    _INPUT_FIELDS,
                    name=name,
                    kind=kind.value,
                    value=what.get("value"),
                    artifact=what.get("artifact"),
                    artifacts=what.get("artifacts") or [],
                    object=what.get("object"),
                    producers=sources.get(name, []),
                    pipeline_input=None,
                    digest=what.get("digest"),
                    size=what.get("size"),
                    identity=identities.get(name),
                )
            )
        metrics = [
            MetricPoint.model_construct(_METRIC_FIELDS, name=n, value=v, step=st, timestamp=ts)
            for n, v, st, ts in (report.metrics if report is not None else None) or ()
        ]
        end = task.end_time.timestamp() if task.end_time is not None else time.time()
        visual = False
        for output in task.outputs.values():
            if isinstance(output, ArtifactRecord) and output.type in _VISUAL_ARTIFACTS:
                visual = True
                if output.type == "Metrics":
                    metrics.extend(
                        MetricPoint.model_construct(
                            _METRIC_FIELDS, name=k, value=float(v), step=None, timestamp=end
                        )
                        for k, v in output.metadata.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                    )
        track = call is not None and call.task.options.track
        return StepEnded.model_construct(
            _STEP_FIELDS,
            run_id=self.run.run_id,
            pipeline=self.spec.name,
            task=task,
            component_digest=call.digest if call is not None else None,
            inputs=inputs,
            metrics=metrics,
            tracked=bool(metrics) or visual or track,
            # The key its outputs are stored under (unique to the run for cache=False).
            cache_key=(pending.cache_key or None) if pending is not None else None,
        )

    def _post_end(self, result: RunResult) -> None:
        """Events of the steps that ended without a report, then the run's own."""
        assert self.events is not None and self.scheduler is not None
        for record in self.scheduler.records.values():
            ended = self._ended.get(record.name)
            if record.state is not None or isinstance(ended, _Lost):
                call = ended.call if isinstance(ended, _Lost) else None
                self.events.post(self._step_ended(result.tasks[record.name], call, None, None))
        outputs: dict[str, Any] = {}
        for name, value in result.outputs.items():
            kind = self.spec.outputs[name].kind
            outputs[name] = describe_value(value, kind)
        self.events.post(
            RunEnded(
                run_id=self.run.run_id,
                pipeline=self.spec.name,
                status=result.status,
                end_time=result.end_time,
                outputs=outputs,
                error=None if result.error is None else str(result.error),
            )
        )

    # -- progress -----------------------------------------------------------------------

    def snapshot(self, failures_seen: int = 0, oldest: int = 5) -> Snapshot:
        """A cheap copy of the run's progress, safe from any thread while ``collect`` runs.

        ``failures`` holds the failures after the first ``failures_seen``; ``oldest`` the
        ``oldest`` steps longest in flight. Steps the scheduler decided without running
        (``SKIPPED``, ``UPSTREAM_FAILED``) count among ``finished``.
        """
        now = time.monotonic()
        decided: Counter[str] = Counter()
        scheduler = self.scheduler
        if scheduler is not None:
            for _ in range(3):  # the collector may add records while we copy them
                try:
                    records = list(scheduler.records.values())
                except RuntimeError:
                    continue
                decided.update(r.state.value for r in records if r.state is not None)
                break
        with self._lock:
            finished = dict(self._states + decided)
            first = list(itertools.islice(self._pending.values(), oldest))
            names = [(step.name, step.submitted_at) for step in first]
            return Snapshot(
                elapsed=now - self._t0,
                finished=finished,
                in_flight=len(self._pending),
                oldest=[(name, now - at) for name, at in names],
                failures=self._failures[failures_seen:],
                failure_count=len(self._failures),
            )

    def _pool(self, actor: ActorSpec) -> ActorPool:
        """The run's pool for an actor component, started at its first step."""
        pool = self._pools.get(id(actor))
        if pool is None:
            pool = self._pools[id(actor)] = ActorPool(
                actor.remote_class, actor.component, size=actor.size, num_returns=actor.num_returns
            )
        return pool

    def _cleanup(self) -> None:
        """Forget the run's attempt ledger and scratch files; a failure here only warns."""
        try:
            for pool in self._pools.values():
                pool.kill()
            self._pools.clear()
            if self.prepared.records_attempts:
                delete_run(self.run.run_id)
            if self.prepared.has_training:
                live_metrics.delete_run(self.run.run_id)
            self.files.cleanup(remote=self.prepared.has_timeouts)
        except Exception as exc:
            warnings.warn(
                f"raypipe: could not clean up after run {self.run.run_id} of {self.spec.name} "
                f"(ledger in Ray's KV store, files under {self.files.path}): {exc!r}",
                RuntimeWarning,
                stacklevel=1,
            )

    # -- the result ---------------------------------------------------------------------

    def result(self) -> RunResult:
        scheduler = self.scheduler
        assert scheduler is not None
        tasks: dict[str, TaskResult | SlimTask] = {}
        for record in scheduler.records.values():  # in submission order: upstream first
            if record.state is not None:
                tasks[record.name] = TaskResult(
                    name=record.name,
                    component=record.component_key,
                    display_name=record.display_name,
                    state=record.state,
                )
                continue
            ended = self._ended[record.name]
            tasks[record.name] = (
                self._lost_task(record, ended, tasks) if isinstance(ended, _Lost) else ended
            )

        error = next(
            (
                t.error
                for t in tasks.values()
                if t.state is TaskState.FAILED and isinstance(t, TaskResult)
            ),
            None,
        )
        store = ArtifactStore(self.run.artifact_root)
        outputs: dict[str, Any] = {}
        for name, value in scheduler.outputs.items():
            found, plain = _materialise(value)
            if found:
                outputs[name] = _artifacts_as_objects(plain, store)
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
            tasks=TaskResults(tasks),
            error=error,
            start_time=self.started,
            end_time=datetime.now(timezone.utc),
            artifact_root=store.public_root,
        )

    def _lost_task(
        self, step: StepRecord, lost: _Lost, tasks: Mapping[str, TaskResult | SlimTask]
    ) -> TaskResult:
        """The result of a step that returned no report: canceled, blocked, or its worker died."""
        import ray

        exc, call = lost.error, lost.call
        upstream = [tasks[u].state for u in step.upstream if u in tasks]
        if any(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in upstream):
            state = TaskState.UPSTREAM_FAILED
        elif (
            self._canceled
            or isinstance(exc, ray.exceptions.TaskCancelledError)
            or TaskState.CANCELED in upstream
        ):
            state = TaskState.CANCELED
        else:
            attempts = self._crashed_attempts(step.name, call, exc)
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

    def _crashed_attempts(
        self, name: str, call: StepCall, exc: BaseException
    ) -> list[AttemptRecord]:
        """Attempts of a step whose last worker died, from its ledger (if it kept one)."""
        if not call.policy.records_attempts:
            return []
        history = load_history(self.run.run_id, name)
        now = datetime.now(timezone.utc).timestamp()
        found = outcomes(
            history,
            pipeline=self.run.pipeline,
            task=name,
            now=now,
            detail=_ray_detail(exc),
        )
        store = ArtifactStore(self.run.artifact_root)
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
                        task=name,
                        attempt=number,
                        type=error[0],
                        message=error[1],
                        traceback=error[2] or (str(exc) if last else ""),
                        log_tail=stored_tail(
                            store, self.run.pipeline, self.run.run_id, name, number
                        ),
                    ),
                )
            )
        return records


_INPUT_FIELDS = set(InputRecord.model_fields)
_METRIC_FIELDS = set(MetricPoint.model_fields)
_STEP_FIELDS = set(StepEnded.model_fields)
_VISUAL_ARTIFACTS = frozenset({"Metrics", "ClassificationMetrics", "HTML", "Markdown"})


def describe_value(value: Any, kind: IOKind | None) -> Any:
    """A pipeline output as trackers see it: values, artifact records, object summaries."""
    from raypipe.dsl.artifacts import Artifact

    if isinstance(value, Artifact):
        return ArtifactRecord(
            name=value.name, type=type(value).__name__, uri=value.uri, metadata=value.metadata
        )
    if isinstance(value, list) and value and isinstance(value[0], Artifact):
        return [describe_value(v, kind) for v in value]
    if kind is IOKind.OBJECT:
        nbytes = getattr(value, "nbytes", None)
        return ObjectSummary(
            type=f"{type(value).__module__}.{type(value).__qualname__}",
            nbytes=nbytes if isinstance(nbytes, int) else None,
        )
    return value


_SECRETS = RunContext._fields.index("secrets")


def _run_wire(run: RunContext) -> list[Any]:
    """``run`` as a step's task receives it: builtins, and no tuple among them.

    Ray's serialiser msgpacks lists, strings and numbers but pickles a tuple, even an empty
    one: the empty ``secrets`` of every step cost a fan-out of 1,000 trivial steps about 6%
    (some 35 µs a step, driver and worker). So the secrets go as ``[name, value]`` lists.
    """
    wire: list[Any] = list(run)
    wire[_SECRETS] = [list(pair) for pair in run.secrets]
    return wire


def step_window(pipeline: str, cpus: float = 0.0) -> int:
    """Steps a run keeps in flight at most: ``RAYPIPE_STEP_WINDOW`` if set, else
    :data:`~raypipe.runtime.scheduler.DEFAULT_STEP_WINDOW` or :data:`STEPS_PER_CPU` per CPU
    of the cluster (``cpus``, when the run starts), whichever is more.

    Example:
        >>> step_window("p", cpus=2), step_window("p", cpus=64)  # doctest: +SKIP
        (256, 1024)

    Raises:
        ValueError: the variable is set to something other than a positive integer.
    """
    text = os.environ.get("RAYPIPE_STEP_WINDOW", "").strip()
    if not text:
        return max(DEFAULT_STEP_WINDOW, int(STEPS_PER_CPU * cpus))
    try:
        window = int(text)
    except ValueError:
        window = 0
    if window < 1:
        raise ValueError(
            f"pipeline {pipeline!r}: RAYPIPE_STEP_WINDOW={text!r} is not a positive integer "
            "(the most steps a run keeps submitted at once)"
        )
    return window


def _drain(refs: list[Any]) -> None:
    """Fetch the errors held by the outputs of a step that returned no report.

    Ray logs "Unhandled error" for an errored ObjectRef nobody fetched; the step's error is
    in the result already, so its outputs' copies of it are fetched and dropped here.
    """
    import ray

    for ref in refs:
        with contextlib.suppress(Exception):  # the same error, already in the result
            ray.get(ref, timeout=0)


def _fetch(refs: list[Any]) -> list[Any]:
    """Values of complete refs; an exception stands in for a value that was lost."""
    import ray

    try:
        return list(ray.get(refs))
    except ray.exceptions.RayError:
        values: list[Any] = []
        for ref in refs:
            try:
                values.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                values.append(exc)
        return values


def _materialise(value: Value) -> tuple[bool, Any]:
    """(True, the value) for a pipeline output that was produced; (False, None) if not."""
    import ray

    if isinstance(value, Known):
        return True, value.value
    if isinstance(value, Ref):
        try:
            got = ray.get(value.ref)
        except ray.exceptions.ObjectLostError as exc:
            # The step ended, yet its output cannot be read: say so rather than return a
            # result that lacks it silently.
            warnings.warn(
                f"pipeline output from {value.step}/{value.output} could not be read: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            return False, None
        except ray.exceptions.RayError:  # the step crashed or was canceled: no output
            return False, None
        return not isinstance(got, FailedOutput), got
    if isinstance(value, Collected):
        items = [_materialise(v) for v in value.items if not isinstance(v, Absent)]
        if not all(found for found, _ in items):
            return False, None
        return True, [v for _, v in items]
    return False, None


def _artifacts_as_objects(value: Any, store: ArtifactStore) -> Any:
    if isinstance(value, ArtifactRecord):
        return store.artifact_from_record(value)
    if isinstance(value, list):
        return [_artifacts_as_objects(v, store) for v in value]
    return value


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _task_result(step: StepRecord, report: StepReport) -> TaskResult | SlimTask:
    """What the run keeps of an ended step: a ``SlimTask`` if it ended on its first try
    without an error (most steps, and most of a large run's memory), else a ``TaskResult``.
    """
    # Interned: a run's steps share a few nodes and output names, and each step's report
    # brings its own copies of them.
    node_id = None if report.node_id is None else sys.intern(report.node_id)
    node_ip = None if report.node_ip is None else sys.intern(report.node_ip)
    outputs = report.outputs or {}
    if report.state != _FAILED and len(report.attempts) <= 1:
        first = report.attempts[0] if report.attempts else None
        if first is None or first.error is None:
            return SlimTask(
                step.name,
                step.component_key,
                step.display_name,
                TaskState(report.state),
                first.number if first is not None else 0,
                first.start if first is not None else 0.0,
                first.end if first is not None else 0.0,
                node_id,
                node_ip,
                _interned_names(outputs),
                tuple(outputs.values()),
            )
    # model_construct: the data was built by raypipe itself, and validating a thousand
    # reports costs a noticeable share of a fan-out run.
    attempts = [
        AttemptRecord.model_construct(
            ATTEMPT_FIELDS,
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
                log_tail=a.error.log_tail,
            ),
        )
        for a in report.attempts
    ]
    state = TaskState(report.state)
    return TaskResult.model_construct(
        TASK_FIELDS,
        name=step.name,
        component=step.component_key,
        display_name=step.display_name,
        state=state,
        attempts=attempts,
        start_time=attempts[0].start_time if attempts else None,
        end_time=attempts[-1].end_time if attempts else None,
        node_id=node_id,
        node_ip=node_ip,
        outputs=dict(zip(_interned_names(outputs), outputs.values(), strict=True)),
        error=attempts[-1].error if state is TaskState.FAILED and attempts else None,
    )


_OUTPUT_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _interned_names(outputs: Mapping[str, Any]) -> tuple[str, ...]:
    """The output names of a step as one tuple shared by every step with the same names."""
    names = tuple(outputs)
    return _OUTPUT_NAMES.setdefault(names, names) if len(_OUTPUT_NAMES) < 4096 else names


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
