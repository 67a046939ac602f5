"""Check a PipelineSpec for consistency: every problem found, located, in one list.

The same checks run on a pipeline compiled from Python and on a file loaded from disk:
unknown components, tasks and inputs; missing required inputs; type mismatches across
edges; constants of the wrong type; cycles; unbound outputs.

Example:
    >>> [str(p) for p in validate_spec(spec)]  # doctest: +SKIP
    ["addition.add-2.a: expected int, got str (output 'Output' of task 'echo')"]
"""

from __future__ import annotations

from raypipe.dsl.interface import IOKind, IOType, check_assignable, check_value
from raypipe.errors import Problem
from raypipe.spec.graph import CycleError, topological_order
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConstantBinding,
    DagSpec,
    PipelineInputBinding,
    PipelineSpec,
    TaskOutputBinding,
)

__all__ = ["validate_spec"]


def validate_spec(spec: PipelineSpec) -> list[Problem]:
    """Every consistency problem of ``spec``; an empty list means it can run."""
    checker = _Checker(spec)
    if spec.root.dag is None:
        checker.add("the root component must be a DAG", path="root")
    else:
        checker.check_dag(spec.root, "root", scope=None)
    for name, component in spec.components.items():
        if component.dag is not None:
            checker.check_dag(component, f"components.{name}", scope=name)
    checker.check_component_nesting()
    return checker.problems


class _Checker:
    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.problems: list[Problem] = []

    def add(
        self, message: str, *, path: str, task: str | None = None, field: str | None = None
    ) -> None:
        self.problems.append(Problem(message, self.spec.name, task, field, path))

    def check_dag(self, owner: ComponentSpec, path: str, scope: str | None) -> None:
        assert owner.dag is not None  # callers pass DAG components only
        dag = owner.dag

        def task_label(name: str) -> str:
            return f"{scope}/{name}" if scope else name

        for task_name, task in dag.tasks.items():
            task_path = f"{path}.dag.tasks.{task_name}"
            label = task_label(task_name)
            component = self.spec.components.get(task.component)
            if component is None:
                self.add(
                    f"unknown component {task.component!r}",
                    path=f"{task_path}.component",
                    task=label,
                    field="component",
                )
                continue
            for input_name, binding in task.inputs.items():
                input_path = f"{task_path}.inputs.{input_name}"
                target = component.inputs.get(input_name)
                if target is None:
                    hint = ""
                    if input_name in component.outputs:
                        hint = (
                            f"; {input_name!r} is an output of {task.component}, filled in by "
                            f"the runtime (read it as {task_name}.outputs[{input_name!r}])"
                        )
                    known = ", ".join(component.inputs) or "none"
                    self.add(
                        f"unknown input of component {task.component} (inputs: {known}){hint}",
                        path=input_path,
                        task=label,
                        field=input_name,
                    )
                    continue
                self.check_binding(binding, target, owner, dag, input_path, label, input_name)
            for input_name, spec in component.inputs.items():
                if input_name not in task.inputs and not spec.optional:
                    self.add(
                        f"missing required input ({spec.describe()}) of component {task.component}",
                        path=f"{task_path}.inputs",
                        task=label,
                        field=input_name,
                    )
            for i, dependency in enumerate(task.after):
                if dependency not in dag.tasks:
                    self.add(
                        f"waits for unknown task {dependency!r}",
                        path=f"{task_path}.after[{i}]",
                        task=label,
                        field="after",
                    )
                elif dependency == task_name:
                    self.add("waits for itself", path=f"{task_path}.after[{i}]", task=label)
        for output_name, output_spec in owner.outputs.items():
            output_binding = dag.outputs.get(output_name)
            if output_binding is None:
                self.add(
                    "declared output is not bound to any task output",
                    path=f"{path}.dag.outputs",
                    field=output_name,
                )
                continue
            self.check_binding(
                output_binding,
                output_spec,
                owner,
                dag,
                f"{path}.dag.outputs.{output_name}",
                None,
                output_name,
            )
        for output_name in dag.outputs:
            if output_name not in owner.outputs:
                self.add(
                    "bound but not declared in outputs",
                    path=f"{path}.dag.outputs.{output_name}",
                    field=output_name,
                )
        try:
            topological_order(dag)
        except CycleError as exc:
            self.add(
                f"the tasks form a cycle: {' -> '.join(exc.cycle)}",
                path=f"{path}.dag.tasks.{exc.cycle[0]}",
                task=task_label(exc.cycle[0]),
            )

    def check_binding(
        self,
        binding: Binding,
        target: IOType,
        owner: ComponentSpec,
        dag: DagSpec,
        path: str,
        task: str | None,
        field: str,
    ) -> None:
        source: IOType
        origin: str
        found: IOType | None
        if isinstance(binding, ConstantBinding):
            if target.kind is IOKind.ARTIFACT:
                self.add(
                    f"expected {target.describe()}, got a constant; artifacts come from task "
                    "outputs or pipeline inputs",
                    path=path,
                    task=task,
                    field=field,
                )
            elif (problem := check_value(binding.constant, target)) is not None:
                self.add(problem, path=path, task=task, field=field)
            return
        if isinstance(binding, PipelineInputBinding):
            found = owner.inputs.get(binding.pipeline_input)
            if found is None:
                known = ", ".join(owner.inputs) or "none"
                self.add(
                    f"no pipeline input named {binding.pipeline_input!r} (inputs: {known})",
                    path=f"{path}.pipeline_input",
                    task=task,
                    field=field,
                )
                return
            source, origin = found, f"pipeline input {binding.pipeline_input!r}"
        else:
            assert isinstance(binding, TaskOutputBinding)
            ref = binding.task_output
            producer = dag.tasks.get(ref.task)
            if producer is None:
                self.add(
                    f"no task named {ref.task!r} in this DAG",
                    path=f"{path}.task_output.task",
                    task=task,
                    field=field,
                )
                return
            component = self.spec.components.get(producer.component)
            if component is None:
                return  # reported at the producer
            output = component.outputs.get(ref.output)
            if output is None:
                known = ", ".join(component.outputs) or "none"
                self.add(
                    f"task {ref.task!r} has no output {ref.output!r} (outputs: {known})",
                    path=f"{path}.task_output.output",
                    task=task,
                    field=field,
                )
                return
            source, origin = output, f"output {ref.output!r} of task {ref.task!r}"
        if (problem := check_assignable(source, target)) is not None:
            self.add(f"{problem} ({origin})", path=path, task=task, field=field)

    def check_component_nesting(self) -> None:
        """A DAG component must not contain itself, directly or through others."""

        def children(name: str) -> list[str]:
            dag = self.spec.components[name].dag
            if dag is None:
                return []
            return [t.component for t in dag.tasks.values() if t.component in self.spec.components]

        for start in self.spec.components:
            stack, seen = [(start, [start])], set()
            while stack:
                name, trail = stack.pop()
                for child in children(name):
                    if child == start:
                        self.add(
                            f"component contains itself: {' -> '.join([*trail, child])}",
                            path=f"components.{start}",
                        )
                        return
                    if child not in seen:
                        seen.add(child)
                        stack.append((child, [*trail, child]))
