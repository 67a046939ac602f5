"""A layered (Sugiyama-style) drawing of a DAG: nodes in rows, edges routed between them.

Four steps, the classic ones:

1. **Layers**: each node one row below the lowest of its predecessors (longest path).
2. **Dummies**: an edge that spans several rows gets a small invisible node in each row it
   crosses, so every edge runs between adjacent rows and can bend around nodes.
3. **Order**: nodes in each row are sorted by the mean position of their neighbours in the
   row above (then below), sweeping up and down a few times and keeping the order with the
   fewest edge crossings.
4. **Coordinates**: each row is placed as close as possible to where its neighbours want
   it (the mean x of their centres), without overlapping: a least-squares problem under
   "keep this spacing" constraints, solved exactly by pool-adjacent-violators.

Edges leave a node at its bottom centre, run straight down to the bottom of its row, cross
the gap to the next row, and so on; inside a row an edge only runs through its own column
(the node's or its dummy's), so no edge crosses a node and no nodes overlap, whatever the
sizes.

Example:
    >>> drawn = layered_layout({"a": (100, 40), "b": (100, 40)}, [("a", "b")])
    >>> drawn.nodes["b"].y > drawn.nodes["a"].y
    True
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import pairwise

from pydantic import BaseModel

__all__ = ["Box", "Layout", "RoutedEdge", "layered_layout"]

_SWEEPS = 12  # up-and-down ordering passes; more rarely removes another crossing
_DUMMY_WIDTH = 14.0  # the column an edge reserves in a row it crosses


class Box(BaseModel):
    """A placed node: ``x``, ``y`` are its top-left corner."""

    x: float
    y: float
    width: float
    height: float


class RoutedEdge(BaseModel):
    """An edge as a polyline, from the source's bottom centre to the target's top centre."""

    source: str
    target: str
    points: list[tuple[float, float]]


class Layout(BaseModel):
    """A drawing: the size of its canvas, where each node is, and how each edge runs."""

    width: float
    height: float
    nodes: dict[str, Box]
    edges: list[RoutedEdge]


def layered_layout(
    sizes: Mapping[str, tuple[float, float]],
    edges: Sequence[tuple[str, str]],
    *,
    node_gap: float = 28.0,
    rank_gap: float = 48.0,
) -> Layout:
    """Lay out a DAG top to bottom.

    Args:
        sizes: width and height of each node; their order breaks ties (keep it stable,
            e.g. the order tasks were declared, and the drawing is stable too).
        edges: (source, target) pairs between nodes of ``sizes``; repeats are drawn once.
        node_gap: horizontal space between neighbours in a row.
        rank_gap: vertical space between rows.

    Raises:
        ValueError: an edge names an unknown node, or the edges make a cycle.
    """
    unique = list(dict.fromkeys(edges))
    for source, target in unique:
        for end in (source, target):
            if end not in sizes:
                raise ValueError(f"layout: edge {source} -> {target} names unknown node {end!r}")
    rank = _ranks(list(sizes), unique)
    graph = _Chained(sizes, unique, rank)
    rows = _order(graph)
    xs = _x_positions(graph, rows, node_gap)
    tops, heights = _row_tops(graph, rows, rank_gap)
    width = max((xs[n] + graph.width[n] / 2 for row in rows for n in row), default=0.0)
    boxes = {
        name: Box(
            x=xs[name] - w / 2,
            y=tops[rank[name]],
            width=w,
            height=h,
        )
        for name, (w, h) in sizes.items()
    }
    routed = [_route(graph, chain, xs, tops, heights, boxes) for chain in graph.chains.values()]
    height = tops[-1] + heights[-1] if tops else 0.0
    return Layout(width=width, height=height, nodes=boxes, edges=routed)


# -- 1. layers ------------------------------------------------------------------------------


def _ranks(names: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering in topological order (Kahn's algorithm, stable)."""
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for s, t in edges:
        preds[t].append(s)
        succs[s].append(t)
    waiting = {n: len(preds[n]) for n in names}
    ready = [n for n in names if waiting[n] == 0]
    rank: dict[str, int] = {}
    while ready:
        name = ready.pop(0)
        rank[name] = max((rank[p] + 1 for p in preds[name]), default=0)
        for nxt in succs[name]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    if len(rank) != len(names):
        stuck = sorted(n for n in names if n not in rank)
        raise ValueError(f"layout: the edges make a cycle through {', '.join(stuck)}")
    return rank


# -- 2. dummies -----------------------------------------------------------------------------


class _Chained:
    """The graph with every long edge cut into a chain through dummy nodes."""

    def __init__(
        self,
        sizes: Mapping[str, tuple[float, float]],
        edges: list[tuple[str, str]],
        rank: dict[str, int],
    ) -> None:
        self.rank = dict(rank)
        self.width = {n: w for n, (w, _) in sizes.items()}
        self.height = {n: h for n, (_, h) in sizes.items()}
        self.up: dict[str, list[str]] = defaultdict(list)  # neighbours one row above
        self.down: dict[str, list[str]] = defaultdict(list)  # neighbours one row below
        self.chains: dict[tuple[str, str], list[str]] = {}
        self.declared = list(sizes)
        for number, (source, target) in enumerate(edges):
            chain = [source]
            for row in range(rank[source] + 1, rank[target]):
                dummy = f"\0{number}:{row}"
                self.rank[dummy] = row
                self.width[dummy], self.height[dummy] = _DUMMY_WIDTH, 0.0
                chain.append(dummy)
            chain.append(target)
            for a, b in pairwise(chain):
                self.down[a].append(b)
                self.up[b].append(a)
            self.chains[(source, target)] = chain

    def is_dummy(self, name: str) -> bool:
        return name.startswith("\0")


# -- 3. order -------------------------------------------------------------------------------


def _order(graph: _Chained) -> list[list[str]]:
    """Rows of nodes, ordered to cross few edges (barycentre sweeps, best kept)."""
    depth = max(graph.rank.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    for name in _dfs_order(graph):
        rows[graph.rank[name]].append(name)
    best, best_crossings = [list(r) for r in rows], _crossings(graph, rows)
    for sweep in range(_SWEEPS):
        if best_crossings == 0:
            break
        downward = sweep % 2 == 0
        indices = range(1, depth) if downward else range(depth - 2, -1, -1)
        for i in indices:
            fixed = rows[i - 1] if downward else rows[i + 1]
            position = {n: p for p, n in enumerate(fixed)}
            neighbours = graph.up if downward else graph.down
            rows[i] = _by_barycentre(rows[i], neighbours, position)
        crossings = _crossings(graph, rows)
        if crossings < best_crossings:
            best, best_crossings = [list(r) for r in rows], crossings
    return best


def _dfs_order(graph: _Chained) -> list[str]:
    """Nodes in depth-first order from the sources: a start that keeps chains together."""
    seen: set[str] = set()
    found: list[str] = []
    starts = [n for n in graph.declared if not graph.up[n]]
    for start in starts:
        stack = [start]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            found.append(name)
            stack.extend(reversed(graph.down[name]))
    return found


def _by_barycentre(
    row: list[str], neighbours: Mapping[str, list[str]], position: dict[str, int]
) -> list[str]:
    def key(item: tuple[int, str]) -> float:
        index, name = item
        around = [position[n] for n in neighbours[name] if n in position]
        return sum(around) / len(around) if around else float(index)

    return [name for _, name in sorted(enumerate(row), key=key)]


def _crossings(graph: _Chained, rows: list[list[str]]) -> int:
    """Edge crossings between adjacent rows (inversions of the lower ends, counted simply:
    rows here are tens of nodes, not thousands)."""
    total = 0
    for upper, lower in pairwise(rows):
        position = {n: p for p, n in enumerate(lower)}
        ends = [(i, position[t]) for i, s in enumerate(upper) for t in graph.down[s]]
        ends.sort()
        targets = [t for _, t in ends]
        total += _inversions(targets)
    return total


def _inversions(values: list[int]) -> int:
    """Pairs out of order, by merge sort (O(n log n))."""
    if len(values) < 2:
        return 0
    middle = len(values) // 2
    left, right = values[:middle], values[middle:]
    count = _inversions(left) + _inversions(right)
    left.sort()
    right.sort()
    j = 0
    for value in left:
        while j < len(right) and right[j] < value:
            j += 1
        count += j
    return count


# -- 4. coordinates -------------------------------------------------------------------------


def _x_positions(graph: _Chained, rows: list[list[str]], gap: float) -> dict[str, float]:
    """Centre x of every node: packed first, then pulled towards their neighbours."""
    x: dict[str, float] = {}
    for row in rows:
        cursor = 0.0
        for name in row:
            x[name] = cursor + graph.width[name] / 2
            cursor += graph.width[name] + gap
    for sweep in range(8):
        downward = sweep % 2 == 0
        order = rows[1:] if downward else list(reversed(rows[:-1]))
        for row in order:
            neighbours = graph.up if downward else graph.down
            wanted = []
            for name in row:
                around = [x[n] for n in neighbours[name]]
                wanted.append(sum(around) / len(around) if around else x[name])
            for name, placed in zip(row, _closest_spaced(row, wanted, graph, gap), strict=True):
                x[name] = placed
    left = min((x[n] - graph.width[n] / 2 for n in x), default=0.0)
    return {n: v - left for n, v in x.items()}


def _closest_spaced(
    row: list[str], wanted: list[float], graph: _Chained, gap: float
) -> list[float]:
    """Centres as close to ``wanted`` as possible (least squares) keeping the spacing.

    With ``offset[i]`` the least distance from the first centre to the i-th, the centres
    are ``offset[i] + y[i]`` for a non-decreasing ``y``: isotonic regression of
    ``wanted[i] - offset[i]``, which pool-adjacent-violators solves exactly.
    """
    offsets = [0.0]
    for a, b in pairwise(row):
        offsets.append(offsets[-1] + (graph.width[a] + graph.width[b]) / 2 + gap)
    blocks: list[list[float]] = []  # [mean, count]
    for target in (w - o for w, o in zip(wanted, offsets, strict=True)):
        blocks.append([target, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + count
            previous[0] = (previous[0] * previous[1] + mean * count) / total
            previous[1] = total
    fitted = [mean for mean, count in blocks for _ in range(int(count))]
    return [f + o for f, o in zip(fitted, offsets, strict=True)]


def _row_tops(
    graph: _Chained, rows: list[list[str]], gap: float
) -> tuple[list[float], list[float]]:
    tops: list[float] = []
    heights: list[float] = []
    cursor = 0.0
    for row in rows:
        height = max((graph.height[n] for n in row), default=0.0)
        tops.append(cursor)
        heights.append(height)
        cursor += height + gap
    return tops, heights


def _route(
    graph: _Chained,
    chain: list[str],
    x: dict[str, float],
    tops: list[float],
    heights: list[float],
    boxes: dict[str, Box],
) -> RoutedEdge:
    source, target = chain[0], chain[-1]
    start = boxes[source]
    points = [(x[source], start.y + start.height)]
    row = graph.rank[source]
    points.append((x[source], tops[row] + heights[row]))  # down through its own column
    for dummy in chain[1:-1]:
        row = graph.rank[dummy]
        points.append((x[dummy], tops[row]))
        points.append((x[dummy], tops[row] + heights[row]))
    points.append((x[target], boxes[target].y))
    return RoutedEdge(source=source, target=target, points=_deduplicated(points))


def _deduplicated(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    kept = [points[0]]
    for point in points[1:]:
        if point != kept[-1]:
            kept.append(point)
    return kept
