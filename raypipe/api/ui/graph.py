"""The drawing of a pipeline: its tasks as boxes, sub-DAGs as groups, laid out in layers.

Every DAG of the IR (the pipeline's, a condition's, an exit handler's, a loop body's, a
sub-pipeline's) is laid out on its own with :func:`layered_layout`; a group is then one
box of its parent's drawing, as large as its own drawing. Edges in the IR always join
tasks of the same DAG (a group's inner tasks read the outside through the group's inputs),
so groups never overlap and no edge crosses a group's border.

A loop is drawn folded by default: one box, whatever the number of items (a 1,000-item
``ParallelFor`` is one node); unfolded (its path in ``expand``), its body is drawn once and
each inner node stands for all its iterations. Node ids are task paths without loop
indexes (``exit-handler-1/for-loop-2/train``), which is how the page matches the steps of
a run (``exit-handler-1/for-loop-2[7]/train``) to them.

Example:
    >>> drawing = pipeline_graph(spec, expand={"for-loop-2"})   # doctest: +SKIP
    >>> [n.id for n in drawing.nodes][:2]                        # doctest: +SKIP
    ['add', 'for-loop-2']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel

from raypipe.api.ui.layout import layered_layout
from raypipe.spec.graph import task_dependencies
from raypipe.spec.models import (
    Comparison,
    ConditionExpr,
    Conjunction,
    ConstantBinding,
    DagSpec,
    Negation,
    PipelineInputBinding,
    PipelineSpec,
    TaskOutputBinding,
    TaskSpec,
)

__all__ = ["GraphEdge", "GraphNode", "NodeKind", "PipelineGraph", "pipeline_graph"]

NodeKind = Literal["task", "loop", "condition", "exit-handler", "pipeline"]

TASK_SIZE = (190.0, 46.0)
FOLDED_SIZE = (210.0, 58.0)  # a folded group: its name and, for a loop, counts by state
_PAD = 14.0  # inside a group, around its drawing
_HEADER = 26.0  # a group's title bar
_CHAR = 6.6  # width of a character of a group's title
_MAX_TITLE = 480.0  # a group is widened to show its title up to this width


class GraphNode(BaseModel):
    """One box: a task, or a group (drawn around its children, or folded)."""

    id: str
    label: str
    kind: NodeKind
    parent: str | None
    x: float
    y: float
    width: float
    height: float
    component: str
    detail: str = ""  # a condition's test, a loop's items
    folded: bool = False
    items: int | None = None  # a loop over a constant list: how many iterations
    exit_task: bool = False  # runs whatever its block did (an exit handler's task)
    options: dict[str, Any] = {}  # what it asked for: resources, retries, timeout, image


_SHOWN_OPTIONS = {
    "num_cpus", "num_gpus", "memory", "resources", "accelerator", "retries", "timeout",
    "image", "cache", "actor",
}  # fmt: skip


class GraphEdge(BaseModel):
    """An edge between two boxes of one DAG, as a polyline."""

    source: str
    target: str
    points: list[tuple[float, float]]
    ordering: bool = False  # ``after`` only: no data flows


class PipelineGraph(BaseModel):
    """A whole drawing; groups come before their children (draw in order)."""

    width: float
    height: float
    nodes: list[GraphNode]
    edges: list[GraphEdge]


def pipeline_graph(spec: PipelineSpec, expand: Iterable[str] = ()) -> PipelineGraph:
    """The drawing of ``spec``; loops whose path is in ``expand`` are drawn unfolded.

    Raises:
        ValueError: a DAG of the spec has a cycle (a valid spec has none).
    """
    assert spec.root.dag is not None  # a pipeline's root is a DAG
    drawn = _Drawing(spec, set(expand))
    width, height = drawn.dag(spec.root.dag, "", 0.0, 0.0, None)
    return PipelineGraph(width=width, height=height, nodes=drawn.nodes, edges=drawn.edges)


class _Drawing:
    def __init__(self, spec: PipelineSpec, expand: set[str]) -> None:
        self.spec = spec
        self.expand = expand
        self.nodes: list[GraphNode] = []
        self.edges: list[GraphEdge] = []
        self.inner_width: dict[str, float] = {}  # a group's drawing, centred in its box

    def dag(
        self, dag: DagSpec, prefix: str, left: float, top: float, parent: str | None
    ) -> tuple[float, float]:
        """Draw ``dag`` with its top-left corner at (left, top); returns its size."""
        sizes = {name: self._size(f"{prefix}{name}", task) for name, task in dag.tasks.items()}
        pairs: list[tuple[str, str]] = []
        data: set[tuple[str, str]] = set()
        for name, task in dag.tasks.items():
            data_sources = _data_sources(task)
            for source in task_dependencies(task):
                if source in dag.tasks:
                    pairs.append((source, name))
                    if source in data_sources:
                        data.add((source, name))
        drawn = layered_layout(sizes, pairs)
        for name, task in dag.tasks.items():
            box = drawn.nodes[name]
            path = f"{prefix}{name}"
            x, y = left + box.x, top + box.y
            node = self._node(path, name, task, parent, x, y, box.width, box.height)
            self.nodes.append(node)
            inner = self.spec.components[task.component].dag
            if inner is not None and not node.folded:
                slack = box.width - 2 * _PAD - self.inner_width[path]
                self.dag(inner, f"{path}/", x + _PAD + slack / 2, y + _HEADER, path)
        for edge in drawn.edges:
            self.edges.append(
                GraphEdge(
                    source=f"{prefix}{edge.source}",
                    target=f"{prefix}{edge.target}",
                    points=[(left + px, top + py) for px, py in edge.points],
                    ordering=(edge.source, edge.target) not in data,
                )
            )
        return drawn.width, drawn.height

    def _size(self, path: str, task: TaskSpec) -> tuple[float, float]:
        inner = self.spec.components[task.component].dag
        if inner is None:
            return TASK_SIZE
        if task.loop is not None and path not in self.expand:
            return FOLDED_SIZE
        probe = _Drawing(self.spec, self.expand)
        width, height = probe.dag(inner, f"{path}/", 0.0, 0.0, None)
        self.inner_width[path] = width
        caption = 12 + _CHAR * len(self._node(path, path, task, None, 0, 0, 0, 0).detail)
        return (
            max(width + 2 * _PAD, FOLDED_SIZE[0], min(caption + 150, _MAX_TITLE)),
            height + _HEADER + _PAD,
        )

    def _node(
        self,
        path: str,
        name: str,
        task: TaskSpec,
        parent: str | None,
        x: float,
        y: float,
        width: float,
        height: float,
    ) -> GraphNode:
        component = self.spec.components[task.component]
        kind: NodeKind = "task"
        detail = ""
        items: int | None = None
        if component.dag is not None:
            if task.loop is not None:
                kind = "loop"
                detail = f"for each of {_binding_text(task.loop.items)}"
                if isinstance(task.loop.items, ConstantBinding) and isinstance(
                    task.loop.items.constant, list
                ):
                    items = len(task.loop.items.constant)
                if task.loop.parallelism:
                    detail += f", {task.loop.parallelism} at a time"
            elif task.condition is not None:
                kind, detail = "condition", _condition_text(task.condition)
            elif name.startswith("exit-handler-"):  # the compiler's name for the block
                kind = "exit-handler"
            else:
                kind = "pipeline"
        return GraphNode(
            id=path,
            label=task.display_name or name,
            kind=kind,
            parent=parent,
            x=x,
            y=y,
            width=width,
            height=height,
            component=task.component,
            detail=detail,
            folded=kind == "loop" and path not in self.expand,
            items=items,
            exit_task=task.trigger == "all_done",
            options=task.options.model_dump(
                mode="json", exclude_defaults=True, include=_SHOWN_OPTIONS
            ),
        )


def _data_sources(task: TaskSpec) -> set[str]:
    from raypipe.spec.graph import task_bindings

    return {b.task_output.task for b in task_bindings(task) if isinstance(b, TaskOutputBinding)}


def _binding_text(binding: object) -> str:
    if isinstance(binding, ConstantBinding):
        text = json.dumps(binding.constant)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(binding, PipelineInputBinding):
        name = binding.pipeline_input.removeprefix("pipelinechannel--")
        return name + "".join(f"[{f}]" for f in binding.field)
    if isinstance(binding, TaskOutputBinding):
        return f"{binding.task_output.task}.{binding.task_output.output}"
    return "a value"


def _condition_text(expr: ConditionExpr) -> str:
    if isinstance(expr, Negation):
        return f"not ({_condition_text(expr.not_)})"
    if isinstance(expr, Conjunction):
        return " and ".join(f"({_condition_text(e)})" for e in expr.all)
    assert isinstance(expr, Comparison)
    return f"{_binding_text(expr.left)} {expr.op} {_binding_text(expr.right)}"
