"""Compile a traced ``@dsl.pipeline`` into a validated :class:`PipelineSpec`.

Every control-flow block (``ParallelFor``, ``If``/``Elif``/``Else``, ``ExitHandler``)
becomes a sub-DAG component run by one task of the enclosing DAG, as in KFP. A value used
inside a block but made outside it is threaded in through the block's inputs
(``pipelinechannel--<task>-<output>``); a value leaves a block only through
``dsl.Collected`` (a loop) or ``dsl.OneOf`` (branches).

Example:
    >>> spec = compile_pipeline(addition)     # doctest: +SKIP
    >>> list(spec.root.dag.tasks)             # doctest: +SKIP
    ['add', 'add-2']
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raypipe.dsl.component import BaseComponent, Component
from raypipe.dsl.control import (
    FINAL_STATUS_TYPE,
    Collected,
    Condition,
    ExitHandler,
    Group,
    LoopItem,
    OneOf,
    ParallelFor,
)
from raypipe.dsl.interface import InputSpec, IOType, OutputSpec
from raypipe.dsl.pipeline import Pipeline
from raypipe.dsl.task import Comparison, FString, PipelineInput, PipelineTask, TaskOutput
from raypipe.errors import PipelineDefinitionError, Problem
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConcatBinding,
    ConditionExpr,
    Conjunction,
    ConstantBinding,
    DagSpec,
    LoopSpec,
    Negation,
    OneOfBinding,
    OutputRef,
    PipelineInputBinding,
    PipelineSpec,
    TaskFinalStatusBinding,
    TaskOutputBinding,
    TaskSpec,
)
from raypipe.spec.models import Comparison as ComparisonSpec
from raypipe.spec.packaging import package_function
from raypipe.spec.validate import validate_spec

__all__ = ["compile_pipeline"]

_COMPILED: weakref.WeakKeyDictionary[Pipeline, PipelineSpec] = weakref.WeakKeyDictionary()


def compile_pipeline(pipeline: Pipeline) -> PipelineSpec:
    """Trace, compile and validate ``pipeline``; the result is cached per Pipeline object.

    Raises:
        PipelineDefinitionError: listing every problem found, each naming pipeline, task
            and field.
        ComponentDefinitionError: a component cannot be made portable.
    """
    cached = _COMPILED.get(pipeline)
    if cached is not None:
        return cached
    compiler = _Compiler()
    root = compiler.dag_component(pipeline)
    spec = PipelineSpec(
        name=pipeline.name,
        description=pipeline.description,
        root=root,
        components=compiler.components,
    )
    # A binding the compiler rejected is absent from the spec; don't also call it "missing".
    reported = {(p.task, p.field) for p in compiler.problems}
    problems = compiler.problems + [
        p for p in validate_spec(spec) if (p.task, p.field) not in reported
    ]
    if problems:
        raise PipelineDefinitionError(problems)
    _COMPILED[pipeline] = spec
    return spec


@dataclass
class _Level:
    """One DAG being built: the pipeline's top level, or the body of one block."""

    group: Group | None
    parent: _Level | None
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    bindings: dict[str, Binding] = field(default_factory=dict)  # inputs, as bound outside
    outputs: dict[str, OutputSpec] = field(default_factory=dict)
    output_bindings: dict[str, Binding] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)  # node name -> waits for

    def encloses(self, group: Group | None) -> bool:
        """Whether ``group`` is this level's group or one around it (None: the top)."""
        if group is None:
            return True
        return self.group is not None and group in self.group.ancestors()

    def wait(self, node: str, dependency: str) -> None:
        waits = self.after.setdefault(node, [])
        if dependency not in waits:
            waits.append(dependency)


def _input_spec(io_type: IOType) -> InputSpec:
    return InputSpec(**io_type.model_dump(include={"kind", "type", "annotation", "nullable"}))


def _output_spec(io_type: IOType) -> OutputSpec:
    return OutputSpec(**io_type.model_dump(include={"kind", "type", "annotation", "nullable"}))


class _Compiler:
    def __init__(self) -> None:
        self.components: dict[str, ComponentSpec] = {}
        self.problems: list[Problem] = []
        self._keys: dict[int, str] = {}  # id(component object) -> key in self.components
        self._alive: list[BaseComponent] = []  # keeps ids above valid while compiling
        self._reserved: set[str] = set()

    def unique_key(self, base: str) -> str:
        """A new component key starting with ``base``; reserved at once."""
        key, n = base, 1
        while key in self._reserved:
            n += 1
            key = f"{base}-{n}"
        self._reserved.add(key)
        return key

    def component_key(self, component: BaseComponent) -> str:
        key = self._keys.get(id(component))
        if key is not None:
            return key
        key = self.unique_key(component.name)
        self._keys[id(component)] = key
        self._alive.append(component)
        if isinstance(component, Pipeline):
            self.components[key] = self.dag_component(component)
        elif isinstance(component, Component):
            self.components[key] = ComponentSpec(
                description=component.description,
                inputs=dict(component.inputs),
                outputs=dict(component.outputs),
                python=package_function(
                    component.python_func, component=component.name, call=component.entrypoint
                ),
            )
        else:
            raise TypeError(f"cannot compile {component!r}")
        return key

    def dag_component(self, pipeline: Pipeline) -> ComponentSpec:
        return _PipelineCompiler(self, pipeline).compile()


class _PipelineCompiler:
    """Compiles one pipeline's tasks and blocks into nested DAGs."""

    def __init__(self, compiler: _Compiler, pipeline: Pipeline) -> None:
        self.compiler = compiler
        self.pipeline = pipeline
        self.graph = pipeline.trace()
        self.own_tasks = {id(t) for t in self.graph.tasks}
        self.root = _Level(group=None, parent=None, inputs=dict(self.graph.inputs))
        self.levels: dict[int, _Level] = {}
        for group in self.graph.groups:  # parents open before children
            parent = self.level(group.parent)
            self.levels[id(group)] = _Level(group=group, parent=parent)
            if isinstance(group, ParallelFor):
                item = group.item_type()
                self.levels[id(group)].inputs[group.item_input] = _input_spec(item)

    def level(self, group: Group | None) -> _Level:
        return self.root if group is None else self.levels[id(group)]

    def problem(self, message: str, task: str | None, field_name: str | None) -> None:
        self.compiler.problems.append(Problem(message, self.pipeline.name, task, field_name))

    # --- the whole pipeline -------------------------------------------------------------

    def compile(self) -> ComponentSpec:
        task_inputs: dict[int, dict[str, Binding]] = {}
        for task in self.graph.tasks:
            task_inputs[id(task)] = self.task_bindings(task)
            for dependency in task.dependencies:
                self.add_dependency(task, dependency)
        loops: dict[int, LoopSpec | None] = {}
        conditions: dict[int, ConditionExpr | None] = {}
        for group in self.graph.groups:
            loops[id(group)] = self.loop_spec(group) if isinstance(group, ParallelFor) else None
            conditions[id(group)] = (
                self.condition_expr(group) if isinstance(group, Condition) else None
            )
        for name, value in self.graph.outputs.items():
            binding = self.resolve(value, self.root, None, name)
            if binding is not None:
                self.root.output_bindings[name] = binding

        # Every binding is known now (threading may have added inputs to any level).
        dags: dict[int, dict[str, TaskSpec]] = {id(lv): {} for lv in self.all_levels()}
        nodes: list[PipelineTask | Group] = [*self.graph.tasks, *self.graph.groups]
        nodes.sort(key=lambda node: node.order)
        for node in nodes:
            if isinstance(node, PipelineTask):
                level = self.level(node.group)
                dags[id(level)][node.name] = TaskSpec(
                    component=self.compiler.component_key(node.component),
                    display_name=node.display_name,
                    inputs=task_inputs[id(node)],
                    after=level.after.get(node.name, []),
                    options=node.options,
                    trigger=(
                        "all_done"
                        if node.exit_handler is not None or node.ignores_upstream_failure
                        else "all_succeeded"
                    ),
                )
        keys = {
            id(group): self.compiler.unique_key(f"{self.pipeline.name}-{group.name}")
            for group in self.graph.groups
        }
        for group in self.graph.groups:
            parent = self.level(group.parent)
            dags[id(parent)][group.name] = TaskSpec(
                component=keys[id(group)],
                display_name=getattr(group, "display_name", None),
                inputs=self.level(group).bindings,
                after=parent.after.get(group.name, []),
                loop=loops[id(group)],
                condition=conditions[id(group)],
            )
        # Each DAG lists its tasks and blocks in the order the pipeline function made them.
        order = {node.name: node.order for node in nodes}
        for tasks in dags.values():
            ordered = dict(sorted(tasks.items(), key=lambda item: order[item[0]]))
            tasks.clear()
            tasks.update(ordered)
        for group in self.graph.groups:
            body = self.level(group)
            self.compiler.components[keys[id(group)]] = ComponentSpec(
                description=getattr(group, "display_name", None),
                inputs=body.inputs,
                outputs=body.outputs,
                dag=DagSpec(tasks=dags[id(body)], outputs=body.output_bindings),
            )
        return ComponentSpec(
            description=self.graph.description,
            inputs=self.root.inputs,
            outputs=dict(self.graph.output_specs),
            dag=DagSpec(tasks=dags[id(self.root)], outputs=self.root.output_bindings),
        )

    def all_levels(self) -> list[_Level]:
        return [self.root, *self.levels.values()]

    # --- tasks ---------------------------------------------------------------------------

    def task_bindings(self, task: PipelineTask) -> dict[str, Binding]:
        level = self.level(task.group)
        bindings: dict[str, Binding] = {}
        for input_name, value in task.arguments.items():
            binding = self.resolve(value, level, task.name, input_name, exit_task=task)
            if binding is not None:
                bindings[input_name] = binding
        for input_name, spec in task.component.inputs.items():
            if spec.type != FINAL_STATUS_TYPE or input_name in task.arguments:
                continue
            if task.exit_handler is None:
                self.problem(
                    "a dsl.PipelineTaskFinalStatus input is filled in only for the exit task "
                    "of a dsl.ExitHandler",
                    task.name,
                    input_name,
                )
            else:
                bindings[input_name] = TaskFinalStatusBinding(
                    task_final_status=task.exit_handler.name
                )
        if task.exit_handler is not None:
            level.wait(task.name, task.exit_handler.name)
        return bindings

    def add_dependency(self, task: PipelineTask, dependency: PipelineTask) -> None:
        """``task.after(dependency)`` across blocks: the nodes under their common level wait."""
        if id(dependency) not in self.own_tasks:
            self.problem(
                f".after({dependency.name}) names a task of another pipeline", task.name, "after"
            )
            return
        ours = list(reversed(task.group.ancestors())) if task.group else []
        theirs = list(reversed(dependency.group.ancestors())) if dependency.group else []
        common = 0
        while common < min(len(ours), len(theirs)) and ours[common] is theirs[common]:
            common += 1
        level = self.level(ours[common - 1] if common else None)
        waiting = ours[common].name if common < len(ours) else task.name
        waited = theirs[common].name if common < len(theirs) else dependency.name
        if waiting == waited:
            self.problem(
                f"cannot wait for {dependency.name}, which is inside the same block",
                task.name,
                "after",
            )
            return
        level.wait(waiting, waited)

    # --- blocks --------------------------------------------------------------------------

    def loop_spec(self, loop: ParallelFor) -> LoopSpec | None:
        parent = self.level(loop.parent)
        items = self.resolve(loop.items, parent, loop.name, "items")
        if items is None:
            return None
        return LoopSpec(items=items, item_input=loop.item_input, parallelism=loop.parallelism)

    def condition_expr(self, group: Condition) -> ConditionExpr | None:
        parent = self.level(group.parent)
        previous = [self.comparison(c, parent, group.name) for c in group.previous]
        negated: list[ConditionExpr] = [Negation(not_=c) for c in previous if c is not None]
        if group.condition is None:  # Else
            return Conjunction(all=negated) if len(negated) > 1 else negated[0]
        current = self.comparison(group.condition, parent, group.name)
        if current is None:
            return None
        return Conjunction(all=[*negated, current]) if negated else current

    def comparison(
        self, comparison: Comparison, level: _Level, group: str
    ) -> ComparisonSpec | None:
        # Which values may be compared is checked by the validator, on any spec.
        sides = [
            self.resolve(side, level, group, f"condition.{side_name}")
            for side_name, side in (("left", comparison.left), ("right", comparison.right))
        ]
        left, right = sides
        if left is None or right is None:
            return None
        return ComparisonSpec(op=comparison.op, left=left, right=right)

    # --- values --------------------------------------------------------------------------

    def resolve(
        self,
        value: Any,
        level: _Level,
        task: str | None,
        field_name: str,
        exit_task: PipelineTask | None = None,
    ) -> Binding | None:
        """The binding of ``value`` as seen from inside ``level``; threads it in if needed."""

        def problem(message: str) -> None:
            self.problem(message, task, field_name)

        if isinstance(value, PipelineInput):
            if value.pipeline != self.pipeline.name or value.name not in self.pipeline.inputs:
                problem(f"{value!r} belongs to pipeline {value.pipeline!r}, not this one")
                return None
            return self.deliver(
                None,
                PipelineInputBinding(pipeline_input=value.name),
                value.type,
                f"pipelinechannel--{value.name}",
                level,
            )
        if isinstance(value, TaskOutput):
            if id(value.task) not in self.own_tasks:
                problem(f"{value!r} comes from a task of another pipeline")
                return None
            producer = value.task.group
            if (
                exit_task is not None
                and exit_task.exit_handler is not None
                and (producer is not None and exit_task.exit_handler in producer.ancestors())
            ):
                problem(
                    f"the exit task of {exit_task.exit_handler.name} cannot use outputs of "
                    f"the block it guards ({value!r})"
                )
                return None
            binding: Binding = TaskOutputBinding(
                task_output=OutputRef(task=value.task.name, output=value.output)
            )
            key = f"pipelinechannel--{value.task.name}-{value.output}"
            # An exit handler's block always runs, so its values may leave it.
            while isinstance(producer, ExitHandler) and not level.encloses(producer):
                body = self.level(producer)
                body.outputs[key] = _output_spec(value.type)
                body.output_bindings[key] = binding
                binding = TaskOutputBinding(task_output=OutputRef(task=producer.name, output=key))
                producer = producer.parent
            if not level.encloses(producer):
                assert producer is not None  # the top level encloses everything
                problem(
                    f"uses {value!r}, made inside {producer.name}, outside that block; use "
                    "dsl.Collected(...) after a loop or dsl.OneOf(...) after branches"
                )
                return None
            return self.deliver(producer, binding, value.type, key, level)
        if isinstance(value, LoopItem):
            loop = value.loop
            if not level.encloses(loop):
                problem(f"uses the item of {loop.name} outside its loop")
                return None
            delivered = self.deliver(
                loop,
                PipelineInputBinding(pipeline_input=loop.item_input),
                loop.item_type(),
                loop.item_input,
                level,
            )
            if value.path and isinstance(delivered, PipelineInputBinding):
                return delivered.model_copy(update={"field": list(value.path)})
            return delivered
        if isinstance(value, Collected):
            return self.resolve_collected(value, level, problem)
        if isinstance(value, OneOf):
            return self.resolve_oneof(value, level, problem)
        if isinstance(value, PipelineTask):
            problem(
                f"got the task {value.name!r} itself; pass {value.name}.output or "
                f"{value.name}.outputs[name]"
            )
            return None
        if isinstance(value, Comparison):
            problem("a comparison is a condition for dsl.If(...), not a value to pass")
            return None
        if isinstance(value, FString):
            parts = [
                ConstantBinding(constant=part)
                if isinstance(part, str)
                else self.resolve(part, level, task, field_name, exit_task)
                for part in value.parts
            ]
            if any(p is None for p in parts):
                return None
            return ConcatBinding(concat=[p for p in parts if p is not None])
        try:
            constant = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            problem(
                f"a constant of type {type(value).__name__} cannot be stored in the compiled "
                "pipeline; pass it as a pipeline argument or produce it in a step"
            )
            return None
        return ConstantBinding(constant=constant)

    def resolve_collected(
        self, value: Collected, level: _Level, problem: Callable[[str], None]
    ) -> Binding | None:
        inner = value.output
        # The loop is the innermost ParallelFor around the task; blocks between them
        # (conditions, exit handlers) pass the value out: a skipped branch gives no item.
        between: list[Group] = []
        loop = inner.task.group
        while loop is not None and not isinstance(loop, ParallelFor):
            between.append(loop)
            loop = loop.parent
        if id(inner.task) not in self.own_tasks or loop is None:
            problem(f"dsl.Collected takes the output of a task inside a loop, got {inner!r}")
            return None
        if level.encloses(loop):
            problem(f"dsl.Collected({inner!r}) is used inside {loop.name}; use it after the loop")
            return None
        key = f"pipelinechannel--{inner.task.name}-{inner.output}"
        binding: Binding = TaskOutputBinding(
            task_output=OutputRef(task=inner.task.name, output=inner.output)
        )
        for group in [*between, loop]:
            body = self.level(group)
            body.outputs[key] = _output_spec(inner.type)
            body.output_bindings[key] = binding
            binding = TaskOutputBinding(task_output=OutputRef(task=group.name, output=key))
        if not level.encloses(loop.parent):
            problem(f"uses {value!r} outside the block around {loop.name}")
            return None
        return self.deliver(loop.parent, binding, value.type, f"{key}-collected", level)

    def resolve_oneof(
        self, value: OneOf, level: _Level, problem: Callable[[str], None]
    ) -> Binding | None:
        branches: list[Condition] = []
        alternatives: list[Binding] = []
        for output in value.outputs:
            branch = output.task.group
            if id(output.task) not in self.own_tasks or not isinstance(branch, Condition):
                problem(
                    f"dsl.OneOf takes outputs of tasks directly inside If/Elif/Else blocks, "
                    f"got {output!r}"
                )
                return None
            if output.type != value.type:
                problem(
                    f"dsl.OneOf alternatives differ in type: {value.type.describe()} and "
                    f"{output.type.describe()}"
                )
                return None
            body = self.level(branch)
            key = f"pipelinechannel--{output.task.name}-{output.output}"
            body.outputs[key] = _output_spec(output.type)
            body.output_bindings[key] = TaskOutputBinding(
                task_output=OutputRef(task=output.task.name, output=output.output)
            )
            branches.append(branch)
            alternatives.append(
                TaskOutputBinding(task_output=OutputRef(task=branch.name, output=key))
            )
        parent = branches[0].parent
        if any(b.parent is not parent for b in branches) or len(set(map(id, branches))) < 2:
            problem("dsl.OneOf takes outputs of different branches of one If/Elif/Else chain")
            return None
        if not level.encloses(parent):
            problem(f"uses {value!r} outside the block around its branches")
            return None
        key = "oneof--" + "-".join(b.name for b in branches)
        return self.deliver(parent, OneOfBinding(oneof=alternatives), value.type, key, level)

    def deliver(
        self, producer: Group | None, binding: Binding, io_type: IOType, key: str, level: _Level
    ) -> Binding:
        """``binding`` is valid inside ``producer``'s level; thread it in down to ``level``."""
        if level.group is producer:
            return binding
        assert level.parent is not None  # the top level is the producer's or encloses it
        if key not in level.inputs:
            level.inputs[key] = _input_spec(io_type)
            level.bindings[key] = self.deliver(producer, binding, io_type, key, level.parent)
        return PipelineInputBinding(pipeline_input=key)
