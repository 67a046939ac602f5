"""Edges and order of a DAG of tasks: what each task waits for, and a topological order.

Example:
    >>> topological_order(dag)  # doctest: +SKIP
    ['add', 'add-2']
"""

from __future__ import annotations

import re

from raypipe.spec.models import (
    Binding,
    ConditionExpr,
    Conjunction,
    DagSpec,
    Negation,
    PipelineSpec,
    TaskFinalStatusBinding,
    TaskOutputBinding,
    TaskSpec,
    binding_children,
)

__all__ = [
    "CycleError",
    "read_outputs",
    "task_at",
    "without_iterations",
    "task_bindings",
    "task_dependencies",
    "topological_order",
]


class CycleError(ValueError):
    """The DAG has a cycle; ``cycle`` lists its tasks, first repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(" -> ".join(cycle))


def task_bindings(task: TaskSpec) -> list[Binding]:
    """Every binding a task reads: inputs, loop items, condition operands, oneof parts."""
    pending: list[Binding] = list(task.inputs.values())
    if task.loop is not None:
        pending.append(task.loop.items)
    conditions: list[ConditionExpr] = [task.condition] if task.condition is not None else []
    while conditions:
        expr = conditions.pop()
        if isinstance(expr, Negation):
            conditions.append(expr.not_)
        elif isinstance(expr, Conjunction):
            conditions.extend(expr.all)
        else:
            pending.extend((expr.left, expr.right))
    found: list[Binding] = []
    while pending:
        binding = pending.pop(0)
        found.append(binding)
        pending.extend(binding_children(binding))
    return found


def task_dependencies(task: TaskSpec) -> list[str]:
    """Tasks this task waits for: its data edges, then ``after``, without repeats."""
    seen: dict[str, None] = {}
    for binding in task_bindings(task):
        if isinstance(binding, TaskOutputBinding):
            seen[binding.task_output.task] = None
        elif isinstance(binding, TaskFinalStatusBinding):
            seen[binding.task_final_status] = None
    for name in task.after:
        seen[name] = None
    return list(seen)


_ITERATION = re.compile(r"\[\d+\]")


def without_iterations(path: str) -> str:
    """A step's name in results without its loop indexes: the task path in the spec.

    Example:
        >>> without_iterations("for-loop-1[3]/condition-2/train")
        'for-loop-1/condition-2/train'
    """
    return _ITERATION.sub("", path)


def task_at(spec: PipelineSpec, path: str) -> TaskSpec | None:
    """The task a step of a run ran (``"for-loop-1[3]/train"``), or None if there is none."""
    dag: DagSpec | None = spec.root.dag
    found: TaskSpec | None = None
    for part in without_iterations(path).split("/"):
        if dag is None or part not in dag.tasks:
            return None
        found = dag.tasks[part]
        dag = spec.components[found.component].dag
    return found


def read_outputs(dag: DagSpec, task: str) -> set[str]:
    """Outputs of ``task`` that the rest of ``dag`` reads: its other tasks or its outputs.

    Example:
        >>> read_outputs(dag, "for-loop-1")  # doctest: +SKIP
        {'pipelinechannel--train-model'}
    """
    pending: list[Binding] = [b for t in dag.tasks.values() for b in task_bindings(t)]
    pending.extend(dag.outputs.values())
    found: set[str] = set()
    while pending:
        binding = pending.pop()
        if isinstance(binding, TaskOutputBinding) and binding.task_output.task == task:
            found.add(binding.task_output.output)
        pending.extend(binding_children(binding))
    return found


def topological_order(dag: DagSpec) -> list[str]:
    """Task names so that every task comes after the tasks it depends on.

    Ties keep the order of ``dag.tasks`` (the order the pipeline function created them).
    References to unknown tasks are ignored here; validation reports them.

    Raises:
        CycleError: naming the tasks of one cycle.
    """
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in dag.tasks:
        if state.get(start) == 2:
            continue
        stack: list[tuple[str, list[str]]] = [(start, task_dependencies(dag.tasks[start]))]
        state[start] = 1
        while stack:
            name, pending = stack[-1]
            while pending and (pending[0] not in dag.tasks or state.get(pending[0]) == 2):
                pending.pop(0)
            if not pending:
                stack.pop()
                state[name] = 2
                order.append(name)
                continue
            nxt = pending.pop(0)
            if state.get(nxt) == 1:
                path = [n for n, _ in stack]
                raise CycleError([*path[path.index(nxt) :], nxt])
            state[nxt] = 1
            stack.append((nxt, task_dependencies(dag.tasks[nxt])))
    return order
