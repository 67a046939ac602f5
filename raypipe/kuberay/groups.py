"""Which worker groups a pipeline needs: one per (image, accelerator), sized for its steps.

Every Ray task or actor a step starts lands on the group named by
:func:`raypipe.dsl.placement.worker_group` of its image and accelerator: a plain step's
own task, and for a training step (``train=TorchDistributed(...)``) the step's driver task
and each of its training workers (``TorchDistributed.accelerator`` wins over the step's).
A group's pods are sized so the largest of those fits on one pod; a training step's
workers get one pod each, so the group may grow to ``num_workers`` pods.

Example:
    >>> plan = plan_worker_groups(spec)  # doctest: +SKIP
    >>> [(g.name, g.cpus, g.gpus, g.min_pods) for g in plan]  # doctest: +SKIP
    [('default', 1, 0, 1), ('trainer-h100-f69cd1', 4, 1, 2)]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from raypipe.dsl.options import TaskOptions
from raypipe.dsl.placement import DEFAULT_GROUP, GROUP_LABEL, worker_group
from raypipe.kuberay.errors import ManifestOptionError
from raypipe.spec.models import DagSpec, PipelineSpec

__all__ = ["StepNeed", "WorkerGroupPlan", "plan_worker_groups", "step_needs"]

_DEFAULT_TASK_CPUS = 1.0  # what Ray reserves for a task that does not say


class StepNeed(BaseModel):
    """What one Ray task or actor of a step asks for, and where it must run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = Field(description="the step's path, e.g. 'for-loop-1/train'")
    image: str | None = None
    accelerator: str | None = None
    cpus: float = 0.0
    gpus: float = 0.0
    memory: int = Field(default=0, description="bytes")
    resources: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(
        default_factory=dict, description="node labels its label_selector asks for by value"
    )
    count: int = Field(default=1, description="how many must run at once (training workers)")

    @property
    def group(self) -> str:
        return worker_group(self.image, self.accelerator)


class WorkerGroupPlan(BaseModel):
    """One worker group: its image, accelerator and what one pod must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    image: str | None
    accelerator: str | None
    cpus: int = Field(description="whole CPUs per pod (Ray counts a pod's CPU limit rounded up)")
    gpus: int = Field(description="whole GPUs per pod")
    memory: int = Field(description="bytes a single task or actor asks for (0: not said)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom, per pod")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Ray node labels the steps' label selectors ask for"
    )
    min_pods: int = Field(description="pods that must run at once for the largest step")
    tasks: list[str] = Field(description="the steps placed here")


def step_needs(spec: PipelineSpec) -> list[StepNeed]:
    """Every Ray task or actor the pipeline's steps start, nested DAGs included.

    Example:
        >>> [n.task for n in step_needs(spec)]  # doctest: +SKIP
        ['for-loop-1/add', 'condition-2/inner/gpu-step', 'fit', 'fit']
    """
    return list(_walk(spec, spec.root.dag or DagSpec(), prefix="", seen=()))


def plan_worker_groups(spec: PipelineSpec) -> list[WorkerGroupPlan]:
    """The worker groups ``spec`` needs, the default group first, then by name.

    A pipeline whose every step runs without image and accelerator gets one group,
    ``default``. A group holds at least one CPU per pod, and a GPU when it has an
    accelerator (a GPU type is only reachable through a GPU request).
    """
    by_group: dict[str, list[StepNeed]] = {}
    for need in step_needs(spec):
        by_group.setdefault(need.group, []).append(need)
    if not by_group:
        by_group[DEFAULT_GROUP] = []
    plans = [_plan(spec.name, name, needs) for name, needs in by_group.items()]
    return sorted(plans, key=lambda p: (p.name != DEFAULT_GROUP, p.name))


def _plan(spec_name: str, name: str, needs: list[StepNeed]) -> WorkerGroupPlan:
    image = needs[0].image if needs else None
    accelerator = needs[0].accelerator if needs else None
    cpus = max([1, *(math.ceil(n.cpus - 1e-9) for n in needs)])
    gpus = max([0, *(math.ceil(n.gpus - 1e-9) for n in needs)])
    if accelerator is not None:
        gpus = max(gpus, 1)
    resources: dict[str, float] = {}
    for need in needs:
        for key, value in need.resources.items():
            resources[key] = max(resources.get(key, 0.0), value)
    return WorkerGroupPlan(
        name=name,
        image=image,
        accelerator=accelerator,
        cpus=cpus,
        gpus=gpus,
        memory=max([0, *(n.memory for n in needs)]),
        resources=resources,
        labels=_labels(spec_name, name, needs),
        min_pods=max([1, *(n.count for n in needs)]),
        tasks=sorted({n.task for n in needs}),
    )


def _labels(pipeline: str, group: str, needs: list[StepNeed]) -> dict[str, str]:
    """The labels a group's nodes carry for its steps' selectors; two values of one key
    in one group cannot both be met by its nodes."""
    labels: dict[str, str] = {}
    asked_by: dict[str, str] = {}
    for need in needs:
        for key, value in need.labels.items():
            if key in labels and labels[key] != value:
                raise ManifestOptionError(
                    f"steps {asked_by[key]!r} and {need.task!r} of worker group {group!r} ask "
                    f"for {key}={labels[key]} and {key}={value}; a group's nodes have one "
                    "value: give one of them another image or accelerator",
                    pipeline=pipeline,
                    field="label_selector",
                )
            labels[key] = value
            asked_by.setdefault(key, need.task)
    return labels


def _walk(
    spec: PipelineSpec, dag: DagSpec, *, prefix: str, seen: tuple[str, ...]
) -> Iterator[StepNeed]:
    for task_name, task in dag.tasks.items():
        path = f"{prefix}{task_name}"
        component = spec.components.get(task.component)
        if component is not None and component.dag is not None:
            if task.component in seen:  # validated specs have no cycles; never loop anyway
                continue
            yield from _walk(spec, component.dag, prefix=f"{path}/", seen=(*seen, task.component))
            continue
        yield from _needs_of(spec.name, path, task.options)


def _needs_of(pipeline: str, task: str, options: TaskOptions) -> Iterator[StepNeed]:
    train = options.train
    labels = _selected_labels(pipeline, task, options.label_selector)
    yield StepNeed(
        task=task,
        image=options.image,
        accelerator=options.accelerator,
        cpus=_DEFAULT_TASK_CPUS if options.num_cpus is None else options.num_cpus,
        gpus=options.num_gpus or 0.0,
        memory=options.memory or 0,
        resources=dict(options.resources),
        labels=labels,
    )
    if train is None:
        return
    worker = train.worker_resources()
    custom = {k: v for k, v in worker.items() if k not in ("CPU", "GPU", "memory")}
    yield StepNeed(
        task=task,
        image=options.image,
        accelerator=train.accelerator or options.accelerator,
        cpus=worker.get("CPU", 0.0),
        gpus=worker.get("GPU", 0.0),
        memory=int(worker.get("memory", 0.0)),
        resources=custom,
        count=train.num_workers,
    )


def _selected_labels(pipeline: str, task: str, selector: dict[str, str]) -> dict[str, str]:
    """The labels a node must have for ``selector``: its ``key: value`` terms. Terms that
    exclude (``!v``) or choose (``in(a,b)``) name no one label to give a group."""
    labels: dict[str, str] = {}
    for key, value in selector.items():
        if key == GROUP_LABEL:  # the step picks a group itself: every group has this key
            continue
        if value.startswith(("!", "in(")):
            warnings.warn(
                f"{pipeline}.{task}: label_selector {key}={value} names no one label value; "
                "no worker group gets it, so label the nodes it should match yourself",
                stacklevel=4,
            )
            continue
        labels[key] = value
    return labels
