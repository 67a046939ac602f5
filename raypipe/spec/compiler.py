"""Compile a traced ``@dsl.pipeline`` into a validated :class:`PipelineSpec`.

Example:
    >>> spec = compile_pipeline(addition)     # doctest: +SKIP
    >>> list(spec.root.dag.tasks)             # doctest: +SKIP
    ['add', 'add-2']
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from raypipe.dsl.component import BaseComponent, Component
from raypipe.dsl.pipeline import Pipeline
from raypipe.dsl.task import PipelineInput, PipelineTask, TaskOutput
from raypipe.errors import PipelineDefinitionError, Problem
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConstantBinding,
    DagSpec,
    OutputRef,
    PipelineInputBinding,
    PipelineSpec,
    TaskOutputBinding,
    TaskSpec,
)
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


class _Compiler:
    def __init__(self) -> None:
        self.components: dict[str, ComponentSpec] = {}
        self.problems: list[Problem] = []
        self._keys: dict[int, str] = {}  # id(component object) -> key in self.components
        self._alive: list[BaseComponent] = []  # keeps ids above valid while compiling

    def component_key(self, component: BaseComponent) -> str:
        key = self._keys.get(id(component))
        if key is not None:
            return key
        key, n = component.name, 1
        while key in self.components or key in self._keys.values():
            n += 1
            key = f"{component.name}-{n}"
        self._keys[id(component)] = key
        self._alive.append(component)
        if isinstance(component, Pipeline):
            self.components[key] = self.dag_component(component)
        elif isinstance(component, Component):
            self.components[key] = ComponentSpec(
                description=component.description,
                inputs=dict(component.inputs),
                outputs=dict(component.outputs),
                python=package_function(component.python_func, component=component.name),
            )
        else:
            raise TypeError(f"cannot compile {component!r}")
        return key

    def dag_component(self, pipeline: Pipeline) -> ComponentSpec:
        graph = pipeline.trace()
        own_tasks = {id(t) for t in graph.tasks}
        tasks: dict[str, TaskSpec] = {}
        for task in graph.tasks:
            inputs: dict[str, Binding] = {}
            for input_name, value in task.arguments.items():
                binding = self.binding(value, pipeline, own_tasks, task.name, input_name)
                if binding is not None:
                    inputs[input_name] = binding
            tasks[task.name] = TaskSpec(
                component=self.component_key(task.component),
                display_name=task.display_name,
                inputs=inputs,
                after=[d.name for d in task.dependencies],
                options=task.options,
            )
        outputs: dict[str, Binding] = {}
        for output_name, value in graph.outputs.items():
            binding = self.binding(value, pipeline, own_tasks, None, output_name)
            if binding is not None:
                outputs[output_name] = binding
        return ComponentSpec(
            description=graph.description,
            inputs=dict(graph.inputs),
            outputs=dict(graph.output_specs),
            dag=DagSpec(tasks=tasks, outputs=outputs),
        )

    def binding(
        self,
        value: Any,
        pipeline: Pipeline,
        own_tasks: set[int],
        task: str | None,
        field: str,
    ) -> Binding | None:
        def problem(message: str) -> None:
            self.problems.append(Problem(message, pipeline.name, task, field))

        if isinstance(value, PipelineInput):
            if value.pipeline != pipeline.name or value.name not in pipeline.inputs:
                problem(f"{value!r} belongs to pipeline {value.pipeline!r}, not this one")
                return None
            return PipelineInputBinding(pipeline_input=value.name)
        if isinstance(value, TaskOutput):
            if id(value.task) not in own_tasks:
                problem(f"{value!r} comes from a task of another pipeline")
                return None
            return TaskOutputBinding(
                task_output=OutputRef(task=value.task.name, output=value.output)
            )
        if isinstance(value, PipelineTask):
            problem(
                f"got the task {value.name!r} itself; pass {value.name}.output or "
                f"{value.name}.outputs[name]"
            )
            return None
        try:
            constant = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            problem(
                f"a constant of type {type(value).__name__} cannot be stored in the compiled "
                "pipeline; pass it as a pipeline argument or produce it in a step"
            )
            return None
        return ConstantBinding(constant=constant)
