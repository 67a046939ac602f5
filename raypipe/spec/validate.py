"""Check a PipelineSpec for consistency: every problem found, located, in one list.

The same checks run on a pipeline compiled from Python and on a file loaded from disk:
unknown components, tasks and inputs; missing required inputs; type mismatches across
edges; constants of the wrong type; cycles; unbound outputs.

Example:
    >>> [str(p) for p in validate_spec(spec)]  # doctest: +SKIP
    ["addition.add-2.a: expected int, got str (output 'Output' of task 'echo')"]
"""

from __future__ import annotations

from raypipe.dsl.control import ANY_OBJECT, FINAL_STATUS_TYPE
from raypipe.dsl.interface import IOKind, IOType, check_assignable, check_value
from raypipe.errors import Problem
from raypipe.spec.graph import CycleError, topological_order
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConcatBinding,
    ConditionExpr,
    Conjunction,
    ConstantBinding,
    DagSpec,
    Negation,
    OneOfBinding,
    PipelineInputBinding,
    PipelineSpec,
    TaskFinalStatusBinding,
    TaskSpec,
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
            if task.loop is not None:
                self.check_loop(task, component, owner, dag, task_path, label)
            if task.condition is not None:
                self.check_condition(task.condition, owner, dag, f"{task_path}.condition", label)
            provided = set(task.inputs) | ({task.loop.item_input} if task.loop else set())
            for input_name, spec in component.inputs.items():
                if input_name not in provided and not spec.optional:
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
        target: IOType | None,
        owner: ComponentSpec,
        dag: DagSpec,
        path: str,
        task: str | None,
        field: str,
    ) -> IOType | None:
        """Check ``binding`` resolves (and fits ``target`` when given); return its type."""
        if isinstance(binding, ConstantBinding):
            if target is not None and target.kind is IOKind.ARTIFACT:
                self.add(
                    f"expected {target.describe()}, got a constant; artifacts come from task "
                    "outputs or pipeline inputs",
                    path=path,
                    task=task,
                    field=field,
                )
            elif target is not None and (problem := check_value(binding.constant, target)):
                self.add(problem, path=path, task=task, field=field)
            return None
        resolved = self.source_type(binding, owner, dag, path, task, field)
        if resolved is None:
            return None
        source, origin = resolved
        if target is not None and (problem := check_assignable(source, target)) is not None:
            self.add(f"{problem} ({origin})", path=path, task=task, field=field)
        return source

    def source_type(
        self,
        binding: Binding,
        owner: ComponentSpec,
        dag: DagSpec,
        path: str,
        task: str | None,
        field: str,
    ) -> tuple[IOType, str] | None:
        """The type of what ``binding`` refers to and a phrase naming it; None if dangling."""
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
                return None
            if binding.field:  # a field of a structured value: its type is not declared
                return ANY_OBJECT, f"pipeline input {binding.pipeline_input!r}{binding.field}"
            return found, f"pipeline input {binding.pipeline_input!r}"
        if isinstance(binding, TaskFinalStatusBinding):
            if binding.task_final_status not in dag.tasks:
                self.add(
                    f"no task named {binding.task_final_status!r} in this DAG",
                    path=f"{path}.task_final_status",
                    task=task,
                    field=field,
                )
                return None
            final = IOType(kind=IOKind.OBJECT, type=FINAL_STATUS_TYPE)
            return final, f"final status of {binding.task_final_status!r}"
        if isinstance(binding, OneOfBinding):
            types = [
                self.source_type(alt, owner, dag, f"{path}.oneof[{i}]", task, field)
                for i, alt in enumerate(binding.oneof)
            ]
            typed = [t for t in types if t is not None]
            if len(typed) != len(types):
                return None
            if len({t.model_dump_json() for t, _ in typed}) > 1:
                shown = " and ".join(t.describe() for t, _ in typed)
                self.add(
                    f"oneof alternatives differ in type: {shown}", path=path, task=task, field=field
                )
                return None
            return typed[0][0], "oneof(" + ", ".join(origin for _, origin in typed) + ")"
        if isinstance(binding, ConstantBinding):
            return None
        if isinstance(binding, ConcatBinding):
            for index, part in enumerate(binding.concat):
                where = f"{path}.concat[{index}]"
                part_type = self.check_binding(part, None, owner, dag, where, task, field)
                if part_type is not None and part_type.kind is IOKind.ARTIFACT:
                    self.add(
                        f"a string cannot include {part_type.describe()}; pass its "
                        "metadata or content from a step",
                        path=where,
                        task=task,
                        field=field,
                    )
            return IOType(kind=IOKind.PARAMETER, type="str"), "a string of pipeline values"
        ref = binding.task_output
        producer = dag.tasks.get(ref.task)
        if producer is None:
            self.add(
                f"no task named {ref.task!r} in this DAG",
                path=f"{path}.task_output.task",
                task=task,
                field=field,
            )
            return None
        component = self.spec.components.get(producer.component)
        if component is None:
            return None  # reported at the producer
        output = component.outputs.get(ref.output)
        if output is None:
            known_outputs = ", ".join(component.outputs) or "none"
            self.add(
                f"task {ref.task!r} has no output {ref.output!r} (outputs: {known_outputs})",
                path=f"{path}.task_output.output",
                task=task,
                field=field,
            )
            return None
        origin = f"output {ref.output!r} of task {ref.task!r}"
        if producer.loop is not None:  # a loop's outputs are lists, one value per item
            kind = IOKind.PARAMETER if output.kind is IOKind.PARAMETER else IOKind.OBJECT
            listed = IOType(
                kind=kind, type="list", annotation=f"list[{output.annotation or output.type}]"
            )
            return listed, origin
        return output, origin

    def check_loop(
        self,
        task: TaskSpec,
        component: ComponentSpec,
        owner: ComponentSpec,
        dag: DagSpec,
        task_path: str,
        label: str,
    ) -> None:
        loop = task.loop
        assert loop is not None  # only called for loop tasks
        if component.dag is None:
            self.add(
                "a loop runs a DAG component",
                path=f"{task_path}.component",
                task=label,
                field="loop",
            )
        if loop.item_input not in component.inputs:
            self.add(
                f"the loop's item_input {loop.item_input!r} is not an input of "
                f"component {task.component}",
                path=f"{task_path}.loop.item_input",
                task=label,
                field="loop",
            )
        items = self.check_binding(
            loop.items, None, owner, dag, f"{task_path}.loop.items", label, "items"
        )
        if isinstance(loop.items, ConstantBinding) and not isinstance(loop.items.constant, list):
            self.add(
                "a loop's items must be a list",
                path=f"{task_path}.loop.items",
                task=label,
                field="items",
            )
        if items is not None and (
            items.kind is IOKind.ARTIFACT
            or (items.kind is IOKind.PARAMETER and items.type != "list")
        ):
            self.add(
                f"dsl.ParallelFor needs a list to loop over, got {items.describe()}",
                path=f"{task_path}.loop.items",
                task=label,
                field="items",
            )

    def check_condition(
        self, expr: ConditionExpr, owner: ComponentSpec, dag: DagSpec, path: str, label: str
    ) -> None:
        if isinstance(expr, Negation):
            self.check_condition(expr.not_, owner, dag, f"{path}.not", label)
        elif isinstance(expr, Conjunction):
            for i, part in enumerate(expr.all):
                self.check_condition(part, owner, dag, f"{path}.all[{i}]", label)
        else:
            for side in ("left", "right"):
                operand = self.check_binding(
                    getattr(expr, side), None, owner, dag, f"{path}.{side}", label, "condition"
                )
                if operand is not None and (
                    operand.kind is IOKind.ARTIFACT
                    or (operand.kind is IOKind.OBJECT and operand.type != "typing.Any")
                ):
                    self.add(
                        "a condition compares parameters (numbers, strings, booleans...), "
                        f"not {operand.describe()}",
                        path=f"{path}.{side}",
                        task=label,
                        field="condition",
                    )

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
