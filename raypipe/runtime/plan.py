"""Flatten a PipelineSpec into the steps one run submits: nested DAGs expanded, inputs resolved.

A pipeline used as a component is expanded in place; its steps are named with a path
(``child/add``). Every step input becomes a :data:`Source`: a constant, a run argument, or
an output of an earlier step.

Example:
    >>> [s.name for s in plan_run(spec).steps]  # doctest: +SKIP
    ['add', 'add-2']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raypipe.dsl.options import TaskOptions
from raypipe.errors import PipelineDefinitionError, Problem
from raypipe.spec.graph import topological_order
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConstantBinding,
    DagSpec,
    PipelineInputBinding,
    PipelineSpec,
    TaskOutputBinding,
)

__all__ = ["Argument", "Constant", "Plan", "PlannedStep", "Source", "StepOutput", "plan_run"]


@dataclass(frozen=True)
class Constant:
    """A value fixed in the IR."""

    value: Any


@dataclass(frozen=True)
class Argument:
    """A run argument (an input of the root pipeline)."""

    name: str


@dataclass(frozen=True)
class StepOutput:
    """An output of another step of the same run."""

    step: str
    output: str


Source = Constant | Argument | StepOutput


@dataclass(frozen=True)
class PlannedStep:
    """One Ray task to submit: a Python component with every input resolved."""

    name: str
    component_key: str
    component: ComponentSpec
    inputs: dict[str, Source]
    after: tuple[str, ...]
    options: TaskOptions
    display_name: str | None

    def upstream(self) -> list[str]:
        """Steps this one waits for: data edges and ``after``."""
        names = [s.step for s in self.inputs.values() if isinstance(s, StepOutput)]
        return list(dict.fromkeys([*names, *self.after]))


@dataclass(frozen=True)
class Plan:
    """The steps of a run in a valid submission order, and where its outputs come from."""

    steps: list[PlannedStep]
    outputs: dict[str, Source]


def plan_run(spec: PipelineSpec) -> Plan:
    """Expand ``spec`` (already validated) into the steps of one run.

    Raises:
        PipelineDefinitionError: the spec uses loops, conditions or exit handlers, which
            compile and validate but do not run yet.
    """
    _reject_control_flow(spec)
    steps: list[PlannedStep] = []
    assert spec.root.dag is not None  # validation guarantees a DAG root
    scope: dict[str, Source] = {name: Argument(name) for name in spec.root.inputs}
    outputs, _ = _expand(spec, spec.root.dag, "", scope, (), steps)
    return Plan(steps=steps, outputs=outputs)


def _reject_control_flow(spec: PipelineSpec) -> None:
    problems = []
    dags = [("", spec.root.dag)] + [(f"{k}/", c.dag) for k, c in spec.components.items()]
    for prefix, dag in dags:
        for name, task in (dag.tasks if dag is not None else {}).items():
            used = [
                feature
                for feature, present in (
                    ("a loop (dsl.ParallelFor)", task.loop is not None),
                    ("a condition (dsl.If/Elif/Else)", task.condition is not None),
                    ("an exit handler (dsl.ExitHandler)", task.trigger == "all_done"),
                    (
                        "a loop item, dsl.OneOf or a final status",
                        any(
                            not isinstance(b, (ConstantBinding, TaskOutputBinding))
                            and not (isinstance(b, PipelineInputBinding) and not b.field)
                            for b in task.inputs.values()
                        ),
                    ),
                )
                if present
            ]
            if used:
                problems.append(
                    Problem(
                        f"uses {used[0]}: control flow compiles and validates, but this "
                        "version of raypipe cannot run it yet",
                        spec.name,
                        f"{prefix}{name}",
                    )
                )
    if problems:
        raise PipelineDefinitionError(problems)


def _expand(
    spec: PipelineSpec,
    dag: DagSpec,
    prefix: str,
    scope: dict[str, Source],
    extra_after: tuple[str, ...],
    steps: list[PlannedStep],
) -> tuple[dict[str, Source], tuple[str, ...]]:
    produced: dict[str, dict[str, Source]] = {}
    leaves: dict[str, tuple[str, ...]] = {}

    def resolve(binding: Binding) -> Source:
        if isinstance(binding, ConstantBinding):
            return Constant(binding.constant)
        if isinstance(binding, PipelineInputBinding) and not binding.field:
            return scope[binding.pipeline_input]
        if isinstance(binding, TaskOutputBinding):
            return produced[binding.task_output.task][binding.task_output.output]
        raise AssertionError(f"unplannable binding {binding!r}; _reject_control_flow missed it")

    for name in topological_order(dag):
        task = dag.tasks[name]
        component = spec.components[task.component]
        inputs = {k: resolve(b) for k, b in task.inputs.items()}
        for input_name, input_spec in component.inputs.items():
            if input_name not in inputs and input_spec.optional:
                inputs[input_name] = Constant(input_spec.default)
        after = extra_after + tuple(leaf for dep in task.after for leaf in leaves[dep])
        path = f"{prefix}{name}"
        if component.dag is not None:
            inner_outputs, inner_leaves = _expand(
                spec, component.dag, f"{path}/", inputs, after, steps
            )
            produced[name] = inner_outputs
            leaves[name] = inner_leaves
        else:
            steps.append(
                PlannedStep(
                    name=path,
                    component_key=task.component,
                    component=component,
                    inputs=inputs,
                    after=tuple(dict.fromkeys(after)),
                    options=task.options,
                    display_name=task.display_name,
                )
            )
            produced[name] = {out: StepOutput(path, out) for out in component.outputs}
            leaves[name] = (path,)
    outputs = {name: resolve(binding) for name, binding in dag.outputs.items()}
    all_leaves = tuple(leaf for task_leaves in leaves.values() for leaf in task_leaves)
    return outputs, all_leaves
