"""``@dsl.pipeline``: a function whose body wires components into a DAG.

The body runs once, at build time, with placeholders for its parameters; each component
call adds a task. The result is a :class:`PipelineGraph`, which ``raypipe.compile`` turns
into the IR and ``raypipe.run`` executes.

Example:
    >>> from raypipe.dsl.component import component
    >>> @component
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> @pipeline(name="addition")
    ... def addition(a: int, b: int, c: int = 10) -> int:
    ...     return add(a=add(a=a, b=b).output, b=c).output
    >>> [t.name for t in addition.trace().tasks]
    ['add', 'add-2']
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from raypipe.dsl.component import (
    SINGLE_OUTPUT,
    BaseComponent,
    _read_signature,
    caller_namespace,
    kfp_name,
)
from raypipe.dsl.control import Condition, Elif, Else, ExitHandler, Group, If
from raypipe.dsl.interface import InputSpec, OutputSpec
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.task import Channel, FString, PipelineInput, PipelineTask
from raypipe.errors import ComponentDefinitionError, PipelineDefinitionError

__all__ = ["Pipeline", "PipelineBuilder", "PipelineGraph", "active_builder", "pipeline"]

F = TypeVar("F", bound=Callable[..., Any])

# A channel inside an f-string: "{{raypipe.channel:N}}", N its number in the builder.
_MARK_OPEN, _MARK_CLOSE = "{{raypipe.channel:", "}}"
_MARK = re.compile(r"\{\{raypipe\.channel:(\d+)\}\}")

_ACTIVE_BUILDER: contextvars.ContextVar[PipelineBuilder | None] = contextvars.ContextVar(
    "raypipe_active_pipeline_builder", default=None
)


def active_builder() -> PipelineBuilder | None:
    """The pipeline being built in this context, if any."""
    return _ACTIVE_BUILDER.get()


class PipelineBuilder:
    """Collects the tasks a pipeline function creates, naming them the KFP way."""

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.tasks: list[PipelineTask] = []
        self.groups: list[Group] = []
        self.current_group: Group | None = None
        self._name_counts: dict[str, int] = {}
        self._order = 0
        self._group_count = 0
        self._last_branch: dict[int, Condition] = {}  # id(parent group or self) -> If/Elif
        self._marked: list[Channel] = []  # channels formatted into strings, by marker number

    def next_order(self) -> int:
        """Creation order of tasks and groups, which the compiler keeps."""
        self._order += 1
        return self._order

    def open_group(self, group: Group) -> None:
        """Enter a ``with dsl.ParallelFor/If/Elif/Else/ExitHandler`` block."""
        self._group_count += 1
        group.name = f"{group.kind}-{self._group_count}"
        group.parent = self.current_group
        group.order = self.next_order()
        group.pipeline = self.pipeline_name
        level = id(group.parent) if group.parent is not None else id(self)
        if isinstance(group, (Elif, Else)):
            previous = self._last_branch.get(level)
            if previous is None:
                raise PipelineDefinitionError(
                    f"dsl.{type(group).__name__} must directly follow a dsl.If or dsl.Elif block",
                    pipeline=self.pipeline_name,
                )
            assert previous.condition is not None  # If and Elif always have one
            group.previous = [*previous.previous, previous.condition]
        self._last_branch.pop(level, None)
        if isinstance(group, ExitHandler):
            exit_task = group.exit_task
            if exit_task.group is not group.parent:
                raise PipelineDefinitionError(
                    "the exit task must be created just before its dsl.ExitHandler, in the "
                    "same block",
                    pipeline=self.pipeline_name,
                    task=exit_task.name,
                )
            if exit_task.exit_handler is not None:
                raise PipelineDefinitionError(
                    f"is already the exit task of {exit_task.exit_handler.name}",
                    pipeline=self.pipeline_name,
                    task=exit_task.name,
                )
            exit_task.exit_handler = group
        self.groups.append(group)
        self.current_group = group

    def close_group(self, group: Group) -> None:
        """Leave the block opened by :meth:`open_group`."""
        self.current_group = group.parent
        level = id(group.parent) if group.parent is not None else id(self)
        if isinstance(group, (If, Elif)):
            self._last_branch[level] = group

    def add_task(
        self, component: BaseComponent, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> PipelineTask:
        name = self._next_name(kfp_name(component.name))
        if args:
            example = ", ".join(f"{n}=..." for n in component.inputs)
            raise PipelineDefinitionError(
                f"components take keyword arguments only: {component.name}({example})",
                pipeline=self.pipeline_name,
                task=name,
            )
        arguments = {k: self._with_channels(v) for k, v in kwargs.items()}
        task = PipelineTask(self, name, component, arguments)
        self.tasks.append(task)
        level = id(task.group) if task.group is not None else id(self)
        self._last_branch.pop(level, None)  # an Elif/Else must follow its If directly
        return task

    def mark(self, channel: Channel) -> str:
        """A marker standing for ``channel`` inside an f-string (see :meth:`_with_channels`)."""
        self._marked.append(channel)
        return f"{_MARK_OPEN}{len(self._marked) - 1}{_MARK_CLOSE}"

    def _with_channels(self, value: Any) -> Any:
        """A string holding markers of channels (an f-string) as an :class:`FString`."""
        if not isinstance(value, str) or _MARK_OPEN not in value:
            return value
        parts: list[Any] = []
        for index, piece in enumerate(_MARK.split(value)):
            if index % 2:
                parts.append(self._marked[int(piece)])
            elif piece:
                parts.append(piece)
        return FString(tuple(parts))

    def _next_name(self, base: str) -> str:
        count = self._name_counts.get(base, 0) + 1
        self._name_counts[base] = count
        return base if count == 1 else f"{base}-{count}"


@dataclass(frozen=True)
class PipelineGraph:
    """What tracing a pipeline function produced: its inputs, tasks and outputs."""

    name: str
    description: str | None
    inputs: Mapping[str, InputSpec]
    tasks: list[PipelineTask]
    groups: list[Group]
    outputs: Mapping[str, Any]  # output name -> Channel (or a stray value, reported later)
    output_specs: Mapping[str, OutputSpec]


class Pipeline(BaseComponent):
    """A pipeline: run it with ``raypipe.run``, compile it, or call it inside another one."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None,
        description: str | None,
        localns: dict[str, Any] | None = None,
    ) -> None:
        self._init_from_function(func, "pipeline", name, description)
        self.options = TaskOptions()
        self._inputs, artifact_outputs, _ = _read_signature(func, self.name, localns)
        if artifact_outputs and any(o.source == "parameter" for o in artifact_outputs.values()):
            raise ComponentDefinitionError(
                "a pipeline returns its outputs; it takes no Output[...] parameters",
                component=self.name,
            )
        self._declared_outputs = artifact_outputs  # from the return annotation, may be empty
        self._has_return_annotation = "return" in func.__annotations__
        self._graph: PipelineGraph | None = None

    @property
    def inputs(self) -> Mapping[str, InputSpec]:
        return self._inputs

    @property
    def outputs(self) -> Mapping[str, OutputSpec]:
        return self.trace().output_specs

    def trace(self) -> PipelineGraph:
        """Run the pipeline function once with placeholders and record what it wires.

        The result is cached: the function body runs once per Pipeline object.
        """
        if self._graph is None:
            self._graph = self._trace()
        return self._graph

    def _trace(self) -> PipelineGraph:
        builder = PipelineBuilder(self.name)
        placeholders = {n: PipelineInput(n, spec, self.name) for n, spec in self._inputs.items()}
        token = _ACTIVE_BUILDER.set(builder)
        try:
            returned = self.python_func(**placeholders)
        finally:
            _ACTIVE_BUILDER.reset(token)
        outputs = self._read_return(returned)
        output_specs: dict[str, OutputSpec] = dict(self._declared_outputs)
        if not self._has_return_annotation:
            for out_name, value in outputs.items():
                if isinstance(value, Channel):
                    output_specs[out_name] = OutputSpec(
                        **value.type.model_dump(include={"kind", "type", "annotation", "nullable"})
                    )
        return PipelineGraph(
            name=self.name,
            description=self.description,
            inputs=self._inputs,
            tasks=builder.tasks,
            groups=builder.groups,
            outputs=outputs,
            output_specs=output_specs,
        )

    def _read_return(self, returned: Any) -> dict[str, Any]:
        declared = list(self._declared_outputs)
        if returned is None:
            values: dict[str, Any] = {}
        elif isinstance(returned, PipelineTask):
            raise PipelineDefinitionError(
                f"returns the task {returned.name!r}; return {returned.name}.output or "
                f"{returned.name}.outputs[name]",
                pipeline=self.name,
                field="return",
            )
        elif isinstance(returned, tuple) and not isinstance(returned, Channel):
            fields = getattr(returned, "_fields", None) or declared
            if len(fields) != len(returned):
                raise PipelineDefinitionError(
                    f"returns {len(returned)} values but declares outputs {declared}",
                    pipeline=self.name,
                    field="return",
                )
            values = dict(zip(fields, returned, strict=True))
        else:
            values = {SINGLE_OUTPUT: returned}
        if self._has_return_annotation and set(values) != set(declared):
            raise PipelineDefinitionError(
                f"returns outputs {sorted(values)} but its annotation declares {sorted(declared)}",
                pipeline=self.name,
                field="return",
            )
        return values

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"


@overload
def pipeline(func: F, /) -> Pipeline: ...


@overload
def pipeline(
    *,
    name: str | None = None,
    description: str | None = None,
    display_name: str | None = None,
    pipeline_root: str | None = None,
    pipeline_config: Any = None,
) -> Callable[[F], Pipeline]: ...


def pipeline(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    display_name: str | None = None,
    pipeline_root: str | None = None,
    pipeline_config: Any = None,
) -> Pipeline | Callable[[F], Pipeline]:
    """Declare a pipeline; its body calls components with keyword arguments.

    ``display_name`` is accepted for KFP code and not used. KFP's ``pipeline_root`` and
    ``pipeline_config`` are refused: the artifact root is chosen per run
    (``raypipe.run(..., artifact_root=...)`` or ``RAYPIPE_ARTIFACT_ROOT``).

    Example:
        >>> @pipeline(name="empty", description="does nothing")
        ... def empty() -> None:
        ...     pass
        >>> empty.name, empty.description
        ('empty', 'does nothing')
    """

    def decorate(f: F) -> Pipeline:
        for key, value in (("pipeline_root", pipeline_root), ("pipeline_config", pipeline_config)):
            if value is not None:
                raise PipelineDefinitionError(
                    f"{key}= is not supported: raypipe chooses the artifact root per run, with "
                    "raypipe.run(..., artifact_root=...) or RAYPIPE_ARTIFACT_ROOT",
                    pipeline=name or kfp_name(getattr(f, "__name__", "pipeline")),
                    field=key,
                )
        return Pipeline(f, name, description, caller_namespace())

    if func is not None:
        return decorate(func)
    return decorate
