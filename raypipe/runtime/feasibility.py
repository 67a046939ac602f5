"""Check, before a run starts, that every step's resource request fits on some node.

Ray queues a task that no node can ever hold and waits forever (or until an autoscaler
adds a node). raypipe compares each step's request with the resources and labels of
every alive node (``ray.nodes()``, about 0.4 ms) and fails the run before submitting
anything, naming the pipeline, step and resource (or label selector). Requests are
grouped, so a thousand identical steps cost one comparison.

Example:
    >>> request = ResourceRequest.from_options(TaskOptions(num_cpus=64))
    >>> find_problem(request, [{"CPU": 2.0, "memory": 8e9}])
    ('num_cpus', 'needs 64 CPUs; the largest node has 2')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from raypipe.dsl.options import TaskOptions
from raypipe.dsl.placement import GROUP_LABEL
from raypipe.dsl.train import TorchDistributed
from raypipe.errors import Problem
from raypipe.runtime.failures import SKIP_FEASIBILITY_ENV, InfeasibleResourcesError
from raypipe.runtime.placement import describe_selector, matches

__all__ = [
    "ResourceRequest",
    "check_feasible",
    "feasibility_check_enabled",
    "find_problem",
    "request_problem",
]

_ACCELERATOR_PREFIX = "accelerator_type:"
_EPSILON = 1e-9
_DEFAULT_TASK_CPUS = 1.0  # what Ray reserves for a task that does not say


@dataclass(frozen=True)
class ResourceRequest:
    """What one step asks Ray for, as Ray's resource names see it."""

    cpus: float
    gpus: float
    memory: float
    custom: tuple[tuple[str, float], ...]
    accelerator: str | None
    count: int = 1  # how many of these must be held at once (a training step's workers)
    training: bool = False  # the workers of a training step (the train= option)
    label_selector: tuple[tuple[str, str], ...] = ()  # labels its node must have
    selector_option: str = "label_selector"  # the option a problem with them names

    @classmethod
    def from_options(
        cls, options: TaskOptions, selector: Mapping[str, str] | None = None
    ) -> ResourceRequest:
        """The request of a step with ``options`` whose whole label selector is ``selector``
        (see :func:`raypipe.runtime.placement.step_selector`)."""
        selector = dict(options.label_selector if selector is None else selector)
        return cls(
            cpus=_DEFAULT_TASK_CPUS if options.num_cpus is None else options.num_cpus,
            gpus=options.num_gpus or 0.0,
            memory=float(options.memory or 0),
            custom=tuple(sorted(options.resources.items())),
            accelerator=options.accelerator,
            label_selector=tuple(sorted(selector.items())),
            selector_option=_selector_option(options, selector),
        )

    @classmethod
    def for_training(
        cls, train: TorchDistributed, selector: Mapping[str, str] | None = None
    ) -> ResourceRequest:
        """The workers of a training step: ``num_workers`` bundles, held together, on nodes
        matching ``selector`` (their worker group's, see
        :func:`raypipe.runtime.placement.training_selector`)."""
        resources = train.worker_resources()
        known = {"CPU", "GPU", "memory"}
        return cls(
            cpus=resources.get("CPU", 0.0),
            gpus=resources.get("GPU", 0.0),
            memory=resources.get("memory", 0.0),
            custom=tuple(sorted((k, v) for k, v in resources.items() if k not in known)),
            accelerator=train.accelerator,
            count=train.num_workers,
            training=True,
            label_selector=tuple(sorted((selector or {}).items())),
            selector_option="train",
        )

    def amounts(self) -> list[tuple[str, str, float]]:
        """``(option, Ray resource, amount)`` for every resource asked for."""
        wanted = [
            ("num_cpus", "CPU", self.cpus),
            ("num_gpus", "GPU", self.gpus),
            ("memory", "memory", self.memory),
            *((f"resources.{name}", name, amount) for name, amount in self.custom),
        ]
        if self.accelerator is not None:
            wanted.append(("accelerator", _ACCELERATOR_PREFIX + self.accelerator, 0.001))
        return [w for w in wanted if w[2] > 0]


def feasibility_check_enabled(check_resources: bool) -> bool:
    """The ``check_resources`` argument, unless ``RAYPIPE_SKIP_FEASIBILITY=1`` turns it off."""
    return check_resources and os.environ.get(SKIP_FEASIBILITY_ENV, "") not in ("1", "true")


def _selector_option(options: TaskOptions, selector: Mapping[str, str]) -> str:
    """The option that put a label selector on a step: ``label_selector`` if the user's
    own selector says it all, else ``image``/``accelerator`` (its worker group)."""
    if GROUP_LABEL not in selector or GROUP_LABEL in options.label_selector:
        return "label_selector"
    return "image" if options.image is not None else "accelerator"


def _selector_problem(
    request: ResourceRequest, labels: Sequence[Mapping[str, str]]
) -> tuple[str, str]:
    """``(option, message)`` for a request whose label selector matches no alive node."""
    selector = dict(request.label_selector)
    if request.selector_option == "label_selector":
        unmatched = [k for k, v in selector.items() if not any(matches({k: v}, n) for n in labels)]
        have = sorted({f"{k}={node[k]}" for node in labels for k in selector if k in node})
        seen = f"the nodes have {', '.join(have)}" if have else "no node has any of these labels"
        which = describe_selector({k: selector[k] for k in unmatched} or selector)
        return "label_selector", (
            f"label_selector {describe_selector(selector)} matches no alive node "
            f"({which} matches none; {seen})"
        )
    group = selector[GROUP_LABEL]
    groups = sorted({node[GROUP_LABEL] for node in labels if GROUP_LABEL in node})
    who = "its training workers run" if request.training else "runs"
    return request.selector_option, (
        f"{who} on worker group {group!r} (node label {GROUP_LABEL}={group}), and no alive "
        f"node is in it (the groups with alive nodes: {', '.join(groups)})"
    )


def _fits(wanted: Iterable[tuple[str, str, float]], node: Mapping[str, float]) -> bool:
    return all(node.get(resource, 0.0) + _EPSILON >= amount for _, resource, amount in wanted)


def _copies(wanted: Sequence[tuple[str, str, float]], node: Mapping[str, float]) -> int:
    """How many of ``wanted`` fit on ``node`` side by side."""
    fits = [int((node.get(r, 0.0) + _EPSILON) // a) for _, r, a in wanted if a > 0]
    return min(fits) if fits else 1_000_000  # asks for nothing: any number fits


def _count(value: float) -> str:
    return f"{value:g}"


def _bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} bytes"


def _describe(
    option: str, resource: str, amount: float, nodes: Sequence[Mapping[str, float]]
) -> str:
    largest = max((node.get(resource, 0.0) for node in nodes), default=0.0)
    if resource == "CPU":
        have = f"the largest node has {_count(largest)}" if largest else "no node has CPUs"
        return f"needs {_count(amount)} CPU{'s' if amount != 1 else ''}; {have}"
    if resource == "GPU":
        have = f"the largest node has {_count(largest)}" if largest else "no node has a GPU"
        return f"needs {_count(amount)} GPU{'s' if amount != 1 else ''}; {have}"
    if resource == "memory":
        return f"needs {_bytes(amount)} of memory; the largest node has {_bytes(largest)}"
    if resource.startswith(_ACCELERATOR_PREFIX):
        types = sorted(
            {
                r[len(_ACCELERATOR_PREFIX) :]
                for n in nodes
                for r in n
                if r.startswith(_ACCELERATOR_PREFIX)
            }
        )
        have = (
            f"the cluster has {', '.join(map(repr, types))}"
            if types
            else "no node has an accelerator type"
        )
        return f"needs accelerator type {resource[len(_ACCELERATOR_PREFIX) :]!r}; {have}"
    name = option.removeprefix("resources.")
    have = f"the most any node has is {_count(largest)}" if largest else "no node has it"
    return f"needs {_count(amount)} of custom resource {name!r}; {have}"


def find_problem(
    request: ResourceRequest, nodes: Sequence[Mapping[str, float]]
) -> tuple[str | None, str] | None:
    """``(option, what is wrong)`` if no node can hold ``request``, else None."""
    wanted = request.amounts()
    if any(_fits(wanted, node) for node in nodes):
        held = sum(_copies(wanted, node) for node in nodes)
        if held >= request.count:
            return None
        return "train", (
            f"needs {request.count} training workers of "
            + ", ".join(f"{_count(a)} {r}" for _, r, a in wanted if r != "memory")
            + f" each at once; the cluster holds {held}"
        )
    for option, resource, amount in wanted:
        if not any(_fits([(option, resource, amount)], node) for node in nodes):
            return option, _describe(option, resource, amount, nodes)
    asked = ", ".join(
        _bytes(amount) + " of memory" if resource == "memory" else f"{_count(amount)} {resource}"
        for option, resource, amount in wanted
    )
    return None, f"needs {asked} on one node; each fits on some node, but no node has all of it"


def check_feasible(
    pipeline: str,
    requests: Mapping[ResourceRequest, Sequence[str]],
    nodes: Sequence[Mapping[str, float]],
    labels: Sequence[Mapping[str, str]] | None = None,
) -> None:
    """Raise if some step's request fits on none of ``nodes``; ``requests`` maps a request to
    the steps that make it, ``labels`` holds each node's labels (for label selectors).

    Raises:
        InfeasibleResourcesError: naming every such step and the resource it lacks, or
            the label selector no node matches.
    """
    problems: list[Problem] = []
    for request, steps in requests.items():
        found = request_problem(request, nodes, labels)
        if found is not None:
            option, message = found
            problems.extend(Problem(message, pipeline, step, option) for step in steps)
    if problems:
        raise InfeasibleResourcesError(problems)


def request_problem(
    request: ResourceRequest,
    nodes: Sequence[Mapping[str, float]],
    labels: Sequence[Mapping[str, str]] | None = None,
) -> tuple[str | None, str] | None:
    """``(option, what is wrong)`` if no node of ``nodes`` (with ``labels``) can ever hold
    ``request``, its label selector included; None if one can.

    Example:
        >>> request_problem(ResourceRequest.from_options(TaskOptions(num_cpus=1)), [{"CPU": 2.0}])
    """
    candidates = nodes
    selector = dict(request.label_selector)
    if selector:
        node_labels = labels if labels is not None else [{} for _ in nodes]
        candidates = [
            n for n, lab in zip(nodes, node_labels, strict=True) if matches(selector, lab)
        ]
        if not candidates:
            return _selector_problem(request, node_labels)
    found = find_problem(request, candidates)
    if found is None:
        return None
    option, message = found
    if request.training and option != "train":  # the train= option, per worker
        option, message = "train", f"each training worker {message}"
    if selector:
        message += f" (among the nodes matching {describe_selector(selector)})"
    return option, message
