"""Tasks and channels: what a pipeline function builds when it calls components.

Inside a ``@dsl.pipeline`` function, calling a component runs nothing: it returns a
:class:`PipelineTask`. ``task.output`` and ``task.outputs["name"]`` are channels, placeholders
for values that exist only when the pipeline runs; passing one to another component wires
an edge of the DAG.

Example:
    >>> # inside a pipeline:  t1 = add(a=a, b=b); t2 = add(a=t1.output, b=10)
    >>> # t2.name == "add-2"; t1.output is TaskOutput(task="add", output="Output")
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from raypipe.dsl.component import BaseComponent
from raypipe.dsl.interface import InputSpec, IOType, OutputSpec
from raypipe.dsl.options import (
    TaskOptions,
    label_selector_problem,
    parse_cpu,
    parse_duration,
    parse_memory,
)
from raypipe.dsl.secrets import Secret
from raypipe.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from raypipe.dsl.control import ExitHandler, Group
    from raypipe.dsl.pipeline import PipelineBuilder

__all__ = [
    "COMPARISONS",
    "Channel",
    "Comparison",
    "FString",
    "PipelineInput",
    "PipelineTask",
    "TaskOutput",
]


ComparisonOperator = Literal["==", "!=", "<", "<=", ">", ">="]

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclasses.dataclass(frozen=True, eq=False)
class Comparison:
    """``left OP right`` where either side may be a channel: what ``dsl.If`` tests."""

    op: ComparisonOperator
    left: Any
    right: Any

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"a comparison of pipeline values ({self.op}) has no value while the pipeline is "
            "built; use it in dsl.If(...), not in a Python if"
        )


class Channel:
    """A placeholder for a value known only at run time.

    Comparing a channel (``task.output > 0.5``) builds a :class:`Comparison` for
    ``dsl.If``, as in KFP; channels hash by identity. Inside an f-string it becomes part
    of a string built when the step runs (``f"lr={lr}"``), as in KFP.
    """

    type: IOType

    def __format__(self, format_spec: str) -> str:
        from raypipe.dsl.pipeline import active_builder

        builder = active_builder()
        if builder is None:
            return format(repr(self), format_spec)
        if format_spec:
            raise PipelineDefinitionError(
                f"{self!r} is formatted with {format_spec!r}; an f-string of a pipeline value "
                "takes no format spec (format the value in a step)",
                pipeline=self._pipeline_name(),
            )
        return builder.mark(self)

    def __str__(self) -> str:
        return self.__format__("")

    def __eq__(self, other: object) -> Comparison:  # type: ignore[override]
        return Comparison("==", self, other)

    def __ne__(self, other: object) -> Comparison:  # type: ignore[override]
        return Comparison("!=", self, other)

    def __lt__(self, other: object) -> Comparison:
        return Comparison("<", self, other)

    def __le__(self, other: object) -> Comparison:
        return Comparison("<=", self, other)

    def __gt__(self, other: object) -> Comparison:
        return Comparison(">", self, other)

    def __ge__(self, other: object) -> Comparison:
        return Comparison(">=", self, other)

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"{self!r} has no value while the pipeline is being built, so it cannot be used "
            "in a Python condition; compute with it inside a component",
            pipeline=self._pipeline_name(),
        )

    def __iter__(self) -> Iterator[Any]:
        raise PipelineDefinitionError(
            f"{self!r} has no value while the pipeline is being built, so it cannot be "
            "iterated; pass it to a component",
            pipeline=self._pipeline_name(),
        )

    def _pipeline_name(self) -> str | None:
        return None


@dataclasses.dataclass(frozen=True)
class FString:
    """A string argument with pipeline values in it (an f-string): text and channels."""

    parts: tuple[Any, ...]


class PipelineInput(Channel):
    """A pipeline parameter, as seen inside the pipeline function."""

    def __init__(self, name: str, spec: InputSpec, pipeline: str) -> None:
        self.name, self.type, self.pipeline = name, spec, pipeline

    def _pipeline_name(self) -> str:
        return self.pipeline

    def __repr__(self) -> str:
        return f"PipelineInput(name={self.name!r})"


class TaskOutput(Channel):
    """One output of a task: a parameter, an in-memory object or an artifact."""

    def __init__(self, task: PipelineTask, output: str, spec: OutputSpec) -> None:
        self.task, self.output, self.type = task, output, spec

    def _pipeline_name(self) -> str:
        return self.task.pipeline

    def __repr__(self) -> str:
        return f"TaskOutput(task={self.task.name!r}, output={self.output!r})"


class _OutputsView(Mapping[str, TaskOutput]):
    def __init__(self, task: PipelineTask) -> None:
        self._task = task

    def __getitem__(self, name: str) -> TaskOutput:
        outputs = self._task.component.outputs
        if name not in outputs:
            known = ", ".join(repr(n) for n in outputs) or "none"
            raise PipelineDefinitionError(
                f"unknown output name; {self._task.component.name} has outputs: {known}",
                pipeline=self._task.pipeline,
                task=self._task.name,
                field=name,
            )
        return TaskOutput(self._task, name, outputs[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._task.component.outputs)

    def __len__(self) -> int:
        return len(self._task.component.outputs)


class PipelineTask:
    """One step of a pipeline being built: a component, its inputs and its options.

    Setters return the task, so they chain:
    ``train(lr=0.1).set_cpu_limit("2").set_memory_limit("4Gi").set_retry(3)``.
    """

    def __init__(
        self,
        builder: PipelineBuilder,
        name: str,
        component: BaseComponent,
        arguments: dict[str, Any],
    ) -> None:
        self._builder = builder
        self.name = name
        self.component = component
        self.arguments = arguments
        self.options: TaskOptions = component.options
        self.display_name: str | None = None
        self.dependencies: list[PipelineTask] = []
        self.group: Group | None = builder.current_group  # None: the pipeline's top level
        self.order = builder.next_order()
        self.exit_handler: ExitHandler | None = None  # set when this is an exit task
        self.ignores_upstream_failure = False

    @property
    def pipeline(self) -> str:
        """The name of the pipeline this task belongs to."""
        return self._builder.pipeline_name

    @property
    def inputs(self) -> Mapping[str, InputSpec]:
        return self.component.inputs

    @property
    def output(self) -> TaskOutput:
        """The task's only output; use ``outputs["name"]`` when it has several."""
        outputs = self.component.outputs
        if len(outputs) != 1:
            known = ", ".join(repr(n) for n in outputs) or "none"
            raise PipelineDefinitionError(
                f".output needs exactly one output, {self.component.name} has {known}; "
                "use .outputs[name]",
                pipeline=self.pipeline,
                task=self.name,
            )
        (name,) = outputs
        return TaskOutput(self, name, outputs[name])

    @property
    def outputs(self) -> Mapping[str, TaskOutput]:
        """Outputs by name: NamedTuple fields, ``Output[...]`` parameters, or ``"Output"``."""
        return _OutputsView(self)

    def after(self, *tasks: PipelineTask) -> PipelineTask:
        """Run this task only after ``tasks`` finished, even without a data edge."""
        for task in tasks:
            if not isinstance(task, PipelineTask):
                raise PipelineDefinitionError(
                    f".after() takes tasks, got {type(task).__name__}",
                    pipeline=self.pipeline,
                    task=self.name,
                )
            if task not in self.dependencies:
                self.dependencies.append(task)
        return self

    def ignore_upstream_failure(self) -> PipelineTask:
        """Run even when the tasks it waits for failed (KFP's setter).

        An input whose producer failed takes its default, so every input fed by another
        task's output needs one.
        """
        for name, value in self.arguments.items():
            spec = self.component.inputs.get(name)
            fed = isinstance(value, Channel) and not isinstance(value, PipelineInput)
            if fed and spec is not None and not spec.optional:
                raise PipelineDefinitionError(
                    "ignore_upstream_failure() needs a default for every input fed by another "
                    "task, since a failed task produces nothing",
                    pipeline=self.pipeline,
                    task=self.name,
                    field=name,
                )
        self.ignores_upstream_failure = True
        return self

    def _set(self, field: str, **update: Any) -> PipelineTask:
        try:
            self.options = TaskOptions.model_validate({**self.options.model_dump(), **update})
        except ValueError as exc:
            raise PipelineDefinitionError(
                f"invalid value: {exc}", pipeline=self.pipeline, task=self.name, field=field
            ) from exc
        return self

    def _parsed(self, field: str, parse: Any, value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise PipelineDefinitionError(
                str(exc), pipeline=self.pipeline, task=self.name, field=field
            ) from exc

    def set_display_name(self, name: str) -> PipelineTask:
        """A human-friendly name shown in results and the UI (the task name stays)."""
        self.display_name = name
        return self

    def set_retry(
        self,
        num_retries: int,
        backoff_duration: str | float | None = None,
        backoff_factor: float | None = None,
        backoff_max_duration: str | float | None = None,
    ) -> PipelineTask:
        """Retry a failing step ``num_retries`` times with exponential backoff (KFP's setter)."""
        update: dict[str, Any] = {"retries": num_retries}
        if backoff_duration is not None:
            update["backoff_seconds"] = self._parsed("retries", parse_duration, backoff_duration)
        if backoff_factor is not None:
            update["backoff_factor"] = backoff_factor
        if backoff_max_duration is not None:
            update["backoff_max"] = self._parsed("retries", parse_duration, backoff_max_duration)
        return self._set("retries", **update)

    def set_cpu_limit(self, cpu: str | float) -> PipelineTask:
        """CPUs for the step, as a number or a Kubernetes quantity (``"500m"``)."""
        return self._set("num_cpus", num_cpus=self._parsed("num_cpus", parse_cpu, cpu))

    set_cpu_request = set_cpu_limit

    def set_memory_limit(self, memory: str | int) -> PipelineTask:
        """Memory for the step, in bytes or as a quantity (``"4Gi"``)."""
        return self._set("memory", memory=self._parsed("memory", parse_memory, memory))

    set_memory_request = set_memory_limit

    def set_accelerator_type(self, accelerator: str) -> PipelineTask:
        """The accelerator type the step needs, e.g. ``"A100"``."""
        return self._set("accelerator", accelerator=accelerator)

    def set_accelerator_limit(self, limit: int | str) -> PipelineTask:
        """How many accelerators (GPUs) the step needs."""
        return self._set("num_gpus", num_gpus=float(limit))

    set_gpu_limit = set_accelerator_limit

    def add_node_selector_constraint(self, accelerator: str) -> PipelineTask:
        """KFP's older name for :meth:`set_accelerator_type` (it sets the accelerator)."""
        return self._set("accelerator", accelerator=accelerator)

    def set_label_selector(self, selector: Mapping[str, str]) -> PipelineTask:
        """Run the step only on Ray nodes with these labels (Ray's ``label_selector``).

        Example:
            >>> # inside a pipeline: train(x=x).set_label_selector({"raypipe.io/pool": "gpu"})

        A value may be ``"v"``, ``"!v"``, ``"in(a,b)"`` or ``"!in(a,b)"``; the selector
        replaces the component's.
        """
        problem = label_selector_problem(selector)
        if problem is not None:  # said plainly, before pydantic would wrap it
            raise PipelineDefinitionError(
                problem, pipeline=self.pipeline, task=self.name, field="label_selector"
            )
        return self._set("label_selector", label_selector=dict(selector))

    def set_env_variable(self, name: str, value: str | Secret) -> PipelineTask:
        """Set an environment variable while the step runs; a ``dsl.Secret("NAME")`` value
        is read from the starting process's environment variable ``NAME`` at run start."""
        env = {k: v for k, v in self.options.env.items() if k != name}
        secrets = {k: v for k, v in self.options.secret_env.items() if k != name}
        if isinstance(value, Secret):
            return self._set("env", env=env, secret_env={**secrets, name: value.name})
        return self._set("env", env={**env, name: str(value)}, secret_env=secrets)

    def set_container_image(self, image: str) -> PipelineTask:
        """The container image the step runs in on a cluster (KubeRay placement)."""
        return self._set("image", image=image)

    def set_caching_options(self, enable_caching: bool) -> PipelineTask:
        """Allow or forbid reusing this step's result from an earlier run."""
        return self._set("cache", cache=enable_caching)

    def __repr__(self) -> str:
        return f"<task {self.name} of {self.component.name}>"
