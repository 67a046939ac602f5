"""Edges and order of a DAG of tasks: what each task waits for, and a topological order.

Example:
    >>> topological_order(dag)  # doctest: +SKIP
    ['add', 'add-2']
"""

from __future__ import annotations

from raypipe.spec.models import DagSpec, TaskOutputBinding, TaskSpec

__all__ = ["CycleError", "task_dependencies", "topological_order"]


class CycleError(ValueError):
    """The DAG has a cycle; ``cycle`` lists its tasks, first repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(" -> ".join(cycle))


def task_dependencies(task: TaskSpec) -> list[str]:
    """Tasks this task waits for: its data edges, then ``after``, without repeats."""
    seen: dict[str, None] = {}
    for binding in task.inputs.values():
        if isinstance(binding, TaskOutputBinding):
            seen[binding.task_output.task] = None
    for name in task.after:
        seen[name] = None
    return list(seen)


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
