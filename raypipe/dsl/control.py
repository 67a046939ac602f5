"""Control flow inside a pipeline: loops, conditions, exit handlers, and their channels.

Each construct is a context manager that opens a *group*; tasks created inside belong to
it. The compiler turns every group into a sub-DAG, the way KFP does (``for-loop-1``,
``condition-2``, ``exit-handler-3``).

Example:
    >>> # inside a @dsl.pipeline function:
    >>> # with dsl.ParallelFor([0.1, 0.01], parallelism=2) as lr:
    >>> #     t = train(lr=lr)
    >>> # best = pick(scores=dsl.Collected(t.output))
    >>> # with dsl.If(best.output > 0.9):
    >>> #     deploy(model=...)
    >>> # with dsl.ExitHandler(exit_task=notify(message="done")):
    >>> #     ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from raypipe.dsl.interface import IOKind, IOType
from raypipe.dsl.task import Channel, Comparison, PipelineTask, TaskOutput
from raypipe.errors import PipelineDefinitionError

__all__ = [
    "FINAL_STATUS_TYPE",
    "Collected",
    "Condition",
    "Elif",
    "Else",
    "ExitHandler",
    "Group",
    "If",
    "LoopItem",
    "OneOf",
    "ParallelFor",
    "PipelineTaskFinalStatus",
]

ANY_OBJECT = IOType(kind=IOKind.OBJECT, type="typing.Any")

FINAL_STATUS_TYPE = "raypipe.dsl.PipelineTaskFinalStatus"
"""The IR type of an input annotated ``dsl.PipelineTaskFinalStatus``."""


class Group:
    """A block of a pipeline opened by ``with``; its tasks compile into one sub-DAG."""

    kind: ClassVar[str]

    def __init__(self) -> None:
        self.name = ""  # set by the builder: for-loop-1, condition-2, ...
        self.parent: Group | None = None
        self.order = -1  # creation order among the pipeline's tasks and groups
        self.pipeline = ""

    def __enter__(self) -> Any:
        from raypipe.dsl.pipeline import active_builder

        builder = active_builder()
        if builder is None:
            raise PipelineDefinitionError(
                f"dsl.{type(self).__name__} is used outside a @dsl.pipeline function"
            )
        builder.open_group(self)
        return self._entered()

    def _entered(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        from raypipe.dsl.pipeline import active_builder

        builder = active_builder()
        assert builder is not None  # __enter__ succeeded in this context
        builder.close_group(self)

    def ancestors(self) -> list[Group]:
        """This group and the groups around it, innermost first."""
        chain: list[Group] = []
        group: Group | None = self
        while group is not None:
            chain.append(group)
            group = group.parent
        return chain

    def __repr__(self) -> str:
        return f"<{self.name or type(self).__name__}>"


class ParallelFor(Group):
    """Run the block once per item, in parallel (at most ``parallelism`` at a time).

    ``items`` is a list, a pipeline parameter or a step's list output. The ``as`` target
    is the item; for dict items, ``item.lr`` or ``item["lr"]`` selects a field.

    Example:
        >>> # with dsl.ParallelFor([{"lr": 0.1}, {"lr": 0.01}]) as cfg:
        >>> #     train(lr=cfg.lr)
    """

    kind = "for-loop"

    def __init__(
        self,
        items: Sequence[Any] | Channel,
        parallelism: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, Channel)):
            raise PipelineDefinitionError(
                f"dsl.ParallelFor needs a list, a pipeline parameter or a task output, "
                f"got {type(items).__name__}"
            )
        if parallelism is not None and (
            isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 1
        ):
            raise PipelineDefinitionError(
                f"dsl.ParallelFor parallelism must be a positive int, got {parallelism!r}"
            )
        self.items = list(items) if not isinstance(items, Channel) else items
        self.parallelism = parallelism
        self.display_name = name

    def _entered(self) -> LoopItem:
        return LoopItem(self, ())

    @property
    def item_input(self) -> str:
        """The name of the loop body's input that receives one item."""
        return f"pipelinechannel--{self.name}-loop-item"

    def item_type(self) -> IOType:
        """The type of one item, when the items say it (a list of ints is ints)."""
        if isinstance(self.items, list):
            kinds = {type(v) for v in self.items}
            if len(kinds) == 1 and (only := kinds.pop()) in (int, float, str, bool):
                return IOType(kind=IOKind.PARAMETER, type=only.__name__)
            return ANY_OBJECT
        annotation = self.items.type.annotation or ""
        for name in ("int", "float", "str", "bool"):
            if annotation in (f"list[{name}]", f"List[{name}]"):
                return IOType(kind=IOKind.PARAMETER, type=name)
        return ANY_OBJECT


class LoopItem(Channel):
    """One item of a ``ParallelFor``, or a field of it (``item.lr``, ``item["lr"]``)."""

    def __init__(self, loop: ParallelFor, path: tuple[str | int, ...]) -> None:
        self.loop, self.path = loop, path
        self.type = loop.item_type() if not path else ANY_OBJECT

    def __getattr__(self, name: str) -> LoopItem:
        if name.startswith("_"):
            raise AttributeError(name)
        return LoopItem(self.loop, (*self.path, name))

    def __getitem__(self, key: str | int) -> LoopItem:
        return LoopItem(self.loop, (*self.path, key))

    def _pipeline_name(self) -> str:
        return self.loop.pipeline

    def __repr__(self) -> str:
        fields = "".join(f"[{p!r}]" for p in self.path)
        return f"LoopItem({self.loop.name}){fields}"


class Condition(Group):
    """Run the block only when ``condition`` holds; otherwise its steps end ``SKIPPED``.

    Example:
        >>> # with dsl.Condition(flip.output == "heads"):
        >>> #     celebrate()
    """

    kind = "condition"

    def __init__(self, condition: Comparison, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(condition, Comparison):
            raise PipelineDefinitionError(
                "a condition compares a pipeline parameter or task output with ==, !=, <, "
                f"<=, > or >= (e.g. dsl.If(task.output > 0.5)), got {condition!r}"
            )
        self.condition: Comparison | None = condition
        self.display_name = name
        self.previous: list[Comparison] = []  # earlier branches of an If/Elif/Else chain


class If(Condition):
    """The first branch of ``If`` / ``Elif`` / ``Else``."""


class Elif(Condition):
    """A branch taken when every earlier branch of its chain was not."""


class Else(Condition):
    """The branch taken when no earlier branch of its chain was."""

    def __init__(self, name: str | None = None) -> None:
        Group.__init__(self)
        self.condition = None
        self.display_name = name
        self.previous = []


class ExitHandler(Group):
    """Run ``exit_task`` after the block, whether the block succeeded, failed or was canceled.

    A parameter of the exit task annotated ``dsl.PipelineTaskFinalStatus`` receives how
    the block ended.

    Example:
        >>> # with dsl.ExitHandler(exit_task=notify(message="finished")):
        >>> #     train(...)
    """

    kind = "exit-handler"

    def __init__(self, exit_task: PipelineTask, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(exit_task, PipelineTask):
            raise PipelineDefinitionError(
                f"dsl.ExitHandler(exit_task=...) takes a task, got {type(exit_task).__name__}"
            )
        self.exit_task = exit_task
        self.display_name = name


class Collected(Channel):
    """All of a loop's values of one task output, as a list in item order.

    Example:
        >>> # with dsl.ParallelFor([1, 2, 3]) as x:
        >>> #     sq = square(x=x)
        >>> # total = add_all(xs=dsl.Collected(sq.output))
    """

    def __init__(self, output: TaskOutput) -> None:
        if not isinstance(output, TaskOutput):
            raise PipelineDefinitionError(
                f"dsl.Collected takes a task output inside a loop, got {output!r}"
            )
        self.output = output
        inner = output.type
        annotation = f"list[{inner.annotation or inner.type}]"
        self.type = IOType(
            kind=IOKind.PARAMETER if inner.kind is IOKind.PARAMETER else IOKind.OBJECT,
            type="list",
            annotation=annotation,
        )

    def _pipeline_name(self) -> str:
        return self.output.task.pipeline

    def __repr__(self) -> str:
        return f"Collected({self.output!r})"


class OneOf(Channel):
    """The output of whichever branch of an ``If``/``Elif``/``Else`` chain ran.

    Example:
        >>> # with dsl.If(x.output > 0): a = pos()
        >>> # with dsl.Else(): b = neg()
        >>> # report(value=dsl.OneOf(a.output, b.output))
    """

    def __init__(self, *outputs: TaskOutput) -> None:
        if len(outputs) < 2 or not all(isinstance(o, TaskOutput) for o in outputs):
            raise PipelineDefinitionError(
                "dsl.OneOf takes two or more task outputs from branches of one If/Else chain"
            )
        self.outputs = outputs
        self.type = outputs[0].type

    def _pipeline_name(self) -> str:
        return self.outputs[0].task.pipeline

    def __repr__(self) -> str:
        return f"OneOf({', '.join(map(repr, self.outputs))})"


@dataclasses.dataclass
class PipelineTaskFinalStatus:
    """How the block of an exit handler ended; annotate an exit task's parameter with it.

    Fields follow KFP's backend: ``state`` is ``COMPLETE`` (the block succeeded),
    ``FAILED`` or ``CANCELED``.
    """

    state: str
    pipeline_job_resource_name: str
    pipeline_task_name: str
    error_code: int | None
    error_message: str | None
