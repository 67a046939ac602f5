"""The graph drawing: no overlapping boxes and no edge through a box, at 100 steps and with
groups; a 1,000-item loop is one box until unfolded."""

from __future__ import annotations

import random

from raypipe.api.ui.graph import GraphNode, PipelineGraph, pipeline_graph
from raypipe.api.ui.layout import Box, layered_layout
from raypipe.spec.compiler import compile_pipeline
from tests.ui import pipelines

Point = tuple[float, float]


def _overlap(a: Box | GraphNode, b: Box | GraphNode) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def _crosses(start: Point, end: Point, box: Box | GraphNode, margin: float = 0.5) -> bool:
    """Whether the segment runs through the inside of ``box`` (Liang-Barsky clipping)."""
    left, right = box.x + margin, box.x + box.width - margin
    top, bottom = box.y + margin, box.y + box.height - margin
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for p, q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - top), (dy, bottom - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def _random_dag(
    seed: int, size: int
) -> tuple[dict[str, tuple[float, float]], list[tuple[str, str]]]:
    rng = random.Random(seed)
    names = [f"step-{i}" for i in range(size)]
    sizes = {n: (rng.choice([120.0, 190.0, 260.0]), rng.choice([40.0, 46.0, 90.0])) for n in names}
    edges = []
    for i, name in enumerate(names[1:], start=1):
        for source in rng.sample(names[max(0, i - 30) : i], k=min(i, rng.randint(1, 3))):
            edges.append((source, name))
    return sizes, edges


def test_a_hundred_steps_have_no_overlapping_boxes_and_no_edge_through_a_box() -> None:
    for seed in range(3):
        sizes, edges = _random_dag(seed, 100)
        drawn = layered_layout(sizes, edges)
        boxes = list(drawn.nodes.items())
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1 :]:
                assert not _overlap(box_a, box_b), (seed, a, b)
        assert len(drawn.edges) == len(set(edges))
        for edge in drawn.edges:
            source, target = drawn.nodes[edge.source], drawn.nodes[edge.target]
            assert edge.points[0] == (source.x + source.width / 2, source.y + source.height)
            assert edge.points[-1] == (target.x + target.width / 2, target.y)
            for start, end in zip(edge.points, edge.points[1:], strict=False):
                for name, box in boxes:
                    if name in (edge.source, edge.target):
                        continue
                    assert not _crosses(start, end, box), (seed, edge.source, edge.target, name)


def test_edges_point_down_and_a_cycle_is_refused() -> None:
    drawn = layered_layout(
        {"a": (100, 40), "b": (100, 40), "c": (100, 40)}, [("a", "b"), ("b", "c"), ("a", "c")]
    )
    assert drawn.nodes["a"].y < drawn.nodes["b"].y < drawn.nodes["c"].y
    try:
        layered_layout({"a": (1, 1), "b": (1, 1)}, [("a", "b"), ("b", "a")])
    except ValueError as exc:
        assert "cycle" in str(exc) and "a, b" in str(exc)
    else:
        raise AssertionError("a cycle was laid out")


def _check(drawing: PipelineGraph) -> None:
    nodes = {n.id: n for n in drawing.nodes}
    for node in drawing.nodes:
        if node.parent is not None:  # inside its group
            group = nodes[node.parent]
            assert group.x <= node.x and node.x + node.width <= group.x + group.width
            assert group.y <= node.y and node.y + node.height <= group.y + group.height
    siblings: dict[str | None, list[GraphNode]] = {}
    for node in drawing.nodes:
        siblings.setdefault(node.parent, []).append(node)
    for group in siblings.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                assert not _overlap(a, b), (a.id, b.id)
    for edge in drawing.edges:
        ends = {edge.source, edge.target}
        for start, end in zip(edge.points, edge.points[1:], strict=False):
            for node in drawing.nodes:
                if node.id in ends or any(e.startswith(node.id + "/") for e in ends):
                    continue  # its own boxes, and the groups holding them
                assert not _crosses(start, end, node), (edge.source, edge.target, node.id)


def test_a_hundred_step_pipeline_with_conditions_draws_cleanly() -> None:
    drawing = pipeline_graph(compile_pipeline(pipelines.hundred_steps()))
    assert sum(n.kind == "task" for n in drawing.nodes) == 103
    assert sum(n.kind == "condition" for n in drawing.nodes) == 3
    _check(drawing)


def test_groups_hold_their_steps_and_a_thousand_item_loop_is_one_box() -> None:
    stepwise = compile_pipeline(pipelines.stepwise)
    drawing = pipeline_graph(stepwise)
    kinds = {n.id: n.kind for n in drawing.nodes}
    assert kinds["exit-handler-1"] == "exit-handler"
    assert kinds["exit-handler-1/condition-3"] == "condition"
    assert kinds["exit-handler-1/for-loop-2"] == "loop"
    assert "exit-handler-1/for-loop-2/square" not in kinds  # folded
    farewell = next(e for e in drawing.edges if e.target == "farewell")
    assert farewell.ordering and next(n for n in drawing.nodes if n.id == "farewell").exit_task
    _check(drawing)
    unfolded = pipeline_graph(stepwise, expand={"exit-handler-1/for-loop-2"})
    assert "exit-handler-1/for-loop-2/square" in {n.id for n in unfolded.nodes}
    _check(unfolded)

    wide = pipeline_graph(compile_pipeline(pipelines.wide))
    assert [(n.id, n.kind, n.folded, n.items) for n in wide.nodes] == [
        ("for-loop-1", "loop", True, 1000)
    ]
    assert len(pipeline_graph(compile_pipeline(pipelines.wide), expand={"for-loop-1"}).nodes) == 2
