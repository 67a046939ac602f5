"""``raypipe.run`` and ``raypipe.submit``: validate, check resources, submit every step, wait.

The static parts of the DAG are submitted in one pass: each step is a Ray task whose
arguments are the ObjectRefs of the upstream outputs it reads, so Ray resolves
dependencies itself and data never passes through the driver. Loops, conditions and exit
handlers are expanded as their values arrive (:mod:`raypipe.runtime.scheduler`). Each step
returns one ObjectRef per output plus a report (see :mod:`raypipe.runtime.execution`).

Example:
    >>> result = raypipe.run(addition, {"a": 1, "b": 2})   # doctest: +SKIP
    >>> result.status, result.output                       # doctest: +SKIP
    ('SUCCEEDED', 13)
    >>> handle = raypipe.submit(addition, {"a": 1, "b": 2})  # doctest: +SKIP
    >>> handle.wait().output                                 # doctest: +SKIP
    13
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from raypipe.dsl.interface import IOKind
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.pipeline import Pipeline
from raypipe.errors import (
    PipelineArgumentError,
    PipelineDefinitionError,
    Problem,
    StepFailedError,
)
from raypipe.runtime.artifacts import ArtifactStore
from raypipe.runtime.cluster import connect
from raypipe.runtime.config import RuntimeConfig, ray_task_events, tracking_enabled
from raypipe.runtime.events import EventBus, RunObserver, RunStarted
from raypipe.runtime.execution import (
    ActorSpec,
    Execution,
    PreparedRun,
    StepCall,
    describe_value,
    step_window,
)
from raypipe.runtime.feasibility import (
    ResourceRequest,
    check_feasible,
    feasibility_check_enabled,
)
from raypipe.runtime.gitinfo import git_commit
from raypipe.runtime.handle import RunHandle
from raypipe.runtime.lost_nodes import NodeWatch
from raypipe.runtime.manifest import RunManifest, RunNotResumableError
from raypipe.runtime.packages import runtime_env
from raypipe.runtime.placement import (
    TRAINING_SELECTOR_ENV,
    AliveNodes,
    cluster_has_groups,
    step_selector,
    training_selector,
)
from raypipe.runtime.result import RunResult
from raypipe.runtime.runfiles import run_dir
from raypipe.runtime.worker import (
    ComponentRuntime,
    RunContext,
    StepActor,
    StepPolicy,
    step_function,
)
from raypipe.spec.arguments import bind_arguments
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.io import loads as spec_loads
from raypipe.spec.models import ComponentSpec, PipelineSpec, TaskSpec
from raypipe.spec.packaging import PYTHON_VERSION, decode_payload

__all__ = ["resume", "run", "submit"]

_RUN_ID = re.compile(r"[0-9a-f]{32}")


def run(
    pipeline: Pipeline | PipelineSpec,
    arguments: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    run_name: str | None = None,
    artifact_root: str | None = None,
    raise_on_failure: bool = False,
    fail_fast: bool = True,
    check_resources: bool = True,
    quiet: bool = False,
    experiment: str | None = None,
    tracking: bool | None = None,
    observers: Sequence[RunObserver] = (),
    cache: bool = True,
) -> RunResult:
    """Run a pipeline on Ray and wait for it to finish: ``submit(...).wait()``.

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
        fail_fast: stop starting new steps at the first failure (running ones finish;
            the others end ``CANCELED``); False runs every branch the failure does not feed.
        check_resources: fail before anything runs if a step asks for more than any node
            has (``RAYPIPE_SKIP_FEASIBILITY=1`` also turns the check off).
        quiet: show no progress while waiting (``RAYPIPE_QUIET=1`` does the same); by
            default a live display on a terminal or in a notebook, plain lines otherwise.
        experiment: the MLflow experiment the run is logged to (default: the pipeline's
            name).
        tracking: record the run in MLflow and the lineage store (default: on, unless
            ``RAYPIPE_TRACKING=0``).
        observers: more :class:`~raypipe.runtime.events.RunObserver` s to send the run's
            events to (they get them even with tracking off).
        cache: serve steps from the cache when an earlier execution had the same code,
            options and inputs (steps with ``cache=False`` never are), and store each
            step's outputs for later runs and for :func:`resume`; False runs every step
            and stores nothing (so a resume of the run runs every step again).

    Raises:
        PipelineDefinitionError, PipelineArgumentError: before any step runs.
        InfeasibleResourcesError: before any step runs.
        ClusterConnectionError: Ray cannot be reached.
        KeyboardInterrupt: after cancelling every step of the run.
    """
    handle = submit(
        pipeline,
        arguments,
        address=address,
        run_name=run_name,
        artifact_root=artifact_root,
        fail_fast=fail_fast,
        check_resources=check_resources,
        experiment=experiment,
        tracking=tracking,
        observers=observers,
        cache=cache,
    )
    try:
        result = handle.wait(progress=not quiet)
    except BaseException:  # Ctrl-C (or anything else) while waiting: stop what was submitted
        handle.cancel()
        raise
    if raise_on_failure and result.error is not None:
        raise StepFailedError(
            pipeline=result.pipeline,
            task=result.error.task,
            attempt=result.error.attempt,
            error_type=result.error.type,
            message=result.error.message,
            traceback=result.error.traceback,
            result=result,
        )
    return result


def submit(
    pipeline: Pipeline | PipelineSpec,
    arguments: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    run_name: str | None = None,
    artifact_root: str | None = None,
    fail_fast: bool = True,
    check_resources: bool = True,
    experiment: str | None = None,
    tracking: bool | None = None,
    observers: Sequence[RunObserver] = (),
    cache: bool = True,
    run_id: str | None = None,
) -> RunHandle:
    """Start a pipeline run on Ray and return at once with a handle to it.

    Every step is submitted before this returns; a background thread follows the run.

    Example:
        >>> handle = raypipe.submit(addition, {"a": 1, "b": 2})   # doctest: +SKIP
        >>> handle.status(), handle.wait().output                  # doctest: +SKIP
        (<RunStatus.RUNNING: 'RUNNING'>, 13)

    Args:
        The same as :func:`run`, without ``raise_on_failure`` and ``quiet``: ``submit``
        shows nothing; ``handle.wait(progress=True)`` shows the run's progress.
        ``run_id``: the id to give the run (32 lowercase hex digits; a fresh one when
        None), for a caller that records the run before it starts (the service).

    Raises:
        PipelineDefinitionError, PipelineArgumentError: before any step runs.
        InfeasibleResourcesError: before any step runs.
        ClusterConnectionError: Ray cannot be reached.
    """
    spec = pipeline if isinstance(pipeline, PipelineSpec) else compile_pipeline(pipeline)
    bound = bind_arguments(spec, arguments)
    started = datetime.now(timezone.utc)
    config = RuntimeConfig.from_env(artifact_root=artifact_root)
    experiment = experiment or spec.name
    if run_id is None:
        run_id = uuid.uuid4().hex
    elif not _RUN_ID.fullmatch(run_id):
        raise PipelineArgumentError(
            [Problem(f"must be 32 lowercase hex digits, got {run_id!r}", spec.name, field="run_id")]
        )
    manifest = RunManifest(
        run_id=run_id,
        run_name=run_name or f"{spec.name}-{started:%Y%m%d-%H%M%S}",
        pipeline=spec.name,
        experiment=experiment,
        spec="",  # filled in by _start, once the spec is known to be valid
        arguments={n: v for n, v in bound.items() if spec.inputs[n].kind is IOKind.PARAMETER},
        pickled=[n for n in bound if spec.inputs[n].kind is not IOKind.PARAMETER],
        artifact_root=config.artifact_root,
        fail_fast=fail_fast,
        cache=cache,
        started=started,
    )
    return _start(
        spec,
        bound,
        manifest,
        config,
        address=address,
        check_resources=check_resources,
        tracking=tracking,
        observers=observers,
        resuming=False,
    )


def resume(
    run_id: str,
    *,
    address: str | None = None,
    tracking: bool | None = None,
    observers: Sequence[RunObserver] = (),
    quiet: bool = False,
) -> RunResult:
    """Finish a run whose driver died, without running again the steps it finished.

    The run keeps its id, name, arguments and artifact root; every step it finished is
    served from what it stored (steps with ``cache=False`` too: their entries belong to
    this run only), and the rest run. MLflow and lineage records continue the run's own.

    Example:
        >>> raypipe.resume("3f2a9c...").status   # doctest: +SKIP
        'SUCCEEDED'

    Raises:
        RunNotResumableError: the run is unknown under this ``RAYPIPE_HOME``, or it ended.
    """
    config = RuntimeConfig.from_env()
    manifest = RunManifest.load(config.home, run_id)
    if manifest.ended:
        raise RunNotResumableError(
            f"run {run_id} of {manifest.pipeline} already ended {manifest.status}"
        )
    spec = spec_loads(manifest.spec, source=f"run {run_id}")
    config = RuntimeConfig.from_env(artifact_root=manifest.artifact_root)
    handle = _start(
        spec,
        manifest.all_arguments(config.home),
        manifest,
        config,
        address=address,
        check_resources=True,
        tracking=tracking,
        observers=observers,
        resuming=True,
    )
    try:
        return handle.wait(progress=not quiet)
    except BaseException:
        handle.cancel()
        raise


def _start(
    spec: PipelineSpec,
    bound: dict[str, Any],
    manifest: RunManifest,
    config: RuntimeConfig,
    *,
    address: str | None,
    check_resources: bool,
    tracking: bool | None,
    observers: Sequence[RunObserver],
    resuming: bool,
) -> RunHandle:
    """Submit a run (new or resumed) and hand back its handle."""
    _check_python_versions(spec)
    secrets = _read_secrets(spec)
    connect(address)
    nodes = AliveNodes.read()
    # image= and accelerator= place steps on worker groups only where the cluster has them.
    prepared = _prepare(
        spec, grouped=cluster_has_groups(nodes.labels), task_events=ray_task_events()
    )
    watched = feasibility_check_enabled(check_resources)
    if watched:
        check_feasible(spec.name, prepared.requests, nodes.resources, nodes.labels)
    run_id, started = manifest.run_id, manifest.started
    if not resuming:
        manifest = manifest.model_copy(update={"spec": prepared.spec_json})
        manifest.save(config.home, {n: bound[n] for n in manifest.pickled})
    listeners = list(observers)
    if tracking_enabled(tracking):
        from raypipe.tracking import default_observers

        listeners.extend(default_observers(config, experiment=manifest.experiment))
    events = EventBus(run_id, listeners) if listeners else None
    if events is not None:
        events.post(
            RunStarted(
                run_id=run_id,
                run_name=manifest.run_name,
                pipeline=spec.name,
                experiment=manifest.experiment,
                arguments={
                    name: describe_value(value, spec.inputs[name].kind)
                    for name, value in bound.items()
                },
                spec_digest=prepared.digest,
                git_commit=git_commit(),
                start_time=started,
                artifact_root=ArtifactStore(config.artifact_root).public_root,
                resumed=resuming,
            )
        )
    context = RunContext(
        run_id,
        spec.name,
        config.artifact_root,
        run_dir(run_id, uuid.uuid4().hex[:8] if resuming else ""),
        manifest.fail_fast,
        events is not None,
    )
    execution = Execution(
        spec=spec,
        prepared=prepared,
        arguments=bound,
        run=context,
        run_name=manifest.run_name,
        started=started,
        events=events,
        cache=manifest.cache,
        resuming=resuming,
        on_end=lambda status: manifest.ended_as(config.home, status),
        # a step only lost nodes could run fails, unless an autoscaler may add nodes
        node_watch=NodeWatch(nodes) if watched else None,
        secrets=secrets,
        window=step_window(spec.name, sum(r.get("CPU", 0.0) for r in nodes.resources)),
    )
    try:
        execution.submit()
    except BaseException:
        if events is not None:
            events.close()
        raise
    return RunHandle(execution)


def _python_tasks(spec: PipelineSpec) -> list[tuple[str, TaskSpec, ComponentSpec]]:
    """(label, task, component) for every Python task of every DAG in ``spec``."""
    dags = [("", spec.root.dag)] + [(f"{k}/", c.dag) for k, c in spec.components.items()]
    found = []
    for prefix, dag in dags:
        for name, task in (dag.tasks if dag is not None else {}).items():
            component = spec.components[task.component]
            if component.python is not None:
                found.append((f"{prefix}{name}", task, component))
    return found


def _finishing_components(spec: PipelineSpec) -> set[str]:
    """Components used inside a DAG task that runs however its upstream ended (an exit
    task that is a pipeline): their steps run even after the run stopped."""
    found: set[str] = set()

    def enter(key: str) -> None:
        if key in found:
            return
        found.add(key)
        dag = spec.components[key].dag
        for task in (dag.tasks if dag is not None else {}).values():
            enter(task.component)

    dags = [spec.root.dag, *(c.dag for c in spec.components.values())]
    for dag in dags:
        for task in (dag.tasks if dag is not None else {}).values():
            if task.trigger == "all_done":
                enter(task.component)
    return found


def _read_secrets(spec: PipelineSpec) -> dict[int, tuple[tuple[str, str], ...]]:
    """The values of every task's ``dsl.Secret`` variables, by ``id(task)``, read from this
    process's environment now (they are never stored; a resume reads them again).

    Raises:
        PipelineDefinitionError: naming each task and variable whose source is not set.
    """
    found: dict[int, tuple[tuple[str, str], ...]] = {}
    problems: list[Problem] = []
    for label, task, _ in _python_tasks(spec):
        pairs = []
        for variable, source in sorted(task.options.secret_env.items()):
            value = os.environ.get(source)
            if value is None:
                problems.append(
                    Problem(
                        f"dsl.Secret({source!r}): the environment of the process starting the "
                        f"run has no {source}; set it there (its value is read at run start)",
                        spec.name,
                        label,
                        f"env.{variable}",
                    )
                )
            else:
                pairs.append((variable, value))
        if pairs:
            found[id(task)] = tuple(pairs)
    if problems:
        raise PipelineDefinitionError(problems)
    return found


def _check_python_versions(spec: PipelineSpec) -> None:
    problems = [
        Problem(
            f"compiled with Python {python.python}, this is Python {PYTHON_VERSION}; "
            "compile the pipeline again with this Python",
            spec.name,
            key,
            "python",
        )
        for key, component in spec.components.items()
        if (python := component.python) is not None and python.python != PYTHON_VERSION
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


def _ray_options(
    name: str,
    component: ComponentSpec,
    options: TaskOptions,
    selector: Mapping[str, str],
    *,
    task_events: bool = True,
) -> dict[str, Any]:
    ray_options: dict[str, Any] = {
        "num_returns": len(component.outputs) + 1,
        "name": name,  # the task's name in its DAG; loop iterations share it
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
    if selector:
        ray_options["label_selector"] = dict(selector)
    environment = runtime_env(options.packages, options.pip_index_urls)
    if environment is not None:
        ray_options["runtime_env"] = environment
    if not task_events:  # RAYPIPE_RAY_TASK_EVENTS=0 (see config.ray_task_events)
        ray_options["enable_task_events"] = False
    return ray_options


def _actor_spec(
    runtime: ComponentRuntime, ray_options: dict[str, Any], options: TaskOptions
) -> ActorSpec:
    """How to start an actor component's actors: its resources go to each actor."""
    import ray

    actor_options = {
        k: v
        for k, v in ray_options.items()
        if k
        in (
            "num_cpus",
            "num_gpus",
            "memory",
            "resources",
            "accelerator_type",
            "label_selector",
            "runtime_env",
        )
    }
    # A dead actor comes back (its class set up again); the step it ran is retried on it
    # as a task's would be after its worker died.
    actor_options["max_restarts"] = options.actor_restarts
    actor_options["max_task_retries"] = options.retries
    return ActorSpec(
        remote_class=ray.remote(StepActor).options(**actor_options),
        component=runtime,
        size=options.actor_pool_size or 1,
        num_returns=ray_options["num_returns"],
    )


_PREPARED: OrderedDict[tuple[int, bool, bool], tuple[PipelineSpec, PreparedRun]] = OrderedDict()
_PREPARED_CACHE_SIZE = 32


def _prepare(spec: PipelineSpec, *, grouped: bool, task_events: bool = True) -> PreparedRun:
    """Bind every Python task of ``spec`` to its Ray function; cached per spec object,
    per kind of cluster (``grouped``: its nodes carry raypipe worker-group labels) and
    whether the tasks send Ray their task events."""
    key = (id(spec), grouped, task_events)
    cached = _PREPARED.get(key)
    if cached is not None and cached[0] is spec:
        _PREPARED.move_to_end(key)
        return cached[1]
    runtimes: dict[str, ComponentRuntime] = {}
    calls: dict[int, StepCall] = {}
    requests: dict[ResourceRequest, list[str]] = {}
    finishing = _finishing_components(spec)
    for label, task, component in _python_tasks(spec):
        runtime = runtimes.get(task.component)
        if runtime is None:
            python = component.python
            assert python is not None  # _python_tasks yields Python components only
            payload = decode_payload(python)
            runtime = runtimes[task.component] = ComponentRuntime(
                key=task.component,
                function_key=hashlib.sha256(payload).hexdigest(),
                payload=payload,
                inputs=component.inputs,
                outputs=component.outputs,
                filename=python.filename,
                line=python.line,
                source=python.source,
            )
        name = label.rpartition("/")[2]
        selector = step_selector(task.options, grouped)
        ray_options = _ray_options(name, component, task.options, selector, task_events=task_events)
        policy = StepPolicy.from_options(
            task.options,
            runs_when_stopped=task.trigger == "all_done" or task.component in finishing,
        )
        workers = training_selector(task.options, grouped) if task.options.train else {}
        if workers:  # the step's trainer places its workers with it (ScalingConfig)
            policy = policy._replace(
                env=(*policy.env, (TRAINING_SELECTOR_ENV, json.dumps(workers, sort_keys=True)))
            )
        request = ResourceRequest.from_options(task.options, selector)
        if task.options.actor:
            calls[id(task)] = StepCall(
                task,
                component,
                None,
                policy,
                policy.to_wire(),
                _actor_spec(runtime, ray_options, task.options),
                runtime.function_key,
                request,
            )
        else:
            submit = _remote_step_function(runtime).options(**ray_options)
            calls[id(task)] = StepCall(
                task,
                component,
                submit,
                policy,
                policy.to_wire(),
                None,
                runtime.function_key,
                request,
            )
        requests.setdefault(request, []).append(label)
        if task.options.train is not None:
            training = ResourceRequest.for_training(task.options.train, workers)
            requests.setdefault(training, []).append(label)
    spec_json = spec.model_dump_json()
    digest = hashlib.sha256(spec_json.encode()).hexdigest()
    prepared = PreparedRun(calls, requests, digest, spec_json)
    _PREPARED[key] = (spec, prepared)
    if len(_PREPARED) > _PREPARED_CACHE_SIZE:
        _PREPARED.popitem(last=False)
    return prepared
