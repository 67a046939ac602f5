"""Notice nodes lost during a run, and the waiting steps that no alive node can run any more.

Ray runs again a task whose worker died with its node (``max_retries``), but a retry that
only the lost node could hold (its label selector, resources) waits in Ray's queue
forever, and so would the run. While a run waits, the runner asks a :class:`NodeWatch`
every few seconds (``ray.nodes()``, under a millisecond) whether nodes alive at its start
have gone, and if so which of its waiting steps no alive node can hold; it fails those
with a :class:`~raypipe.runtime.failures.NodeLostError` naming the lost nodes.

Runs that skip the resource check (``check_resources=False``, ``RAYPIPE_SKIP_FEASIBILITY=1``:
an autoscaler will add nodes) are not watched: a new node may yet take the step.

Example:
    >>> watch = NodeWatch(AliveNodes([{"CPU": 1.0}] * 2, [{}, {}], ["a", "b"], ["ip", "ip"]))
    >>> now = AliveNodes([{"CPU": 1.0}], [{}], ["a"], ["ip"])
    >>> watch.lost(now)
    {'b': 'ip'}
    >>> from raypipe.dsl.options import TaskOptions
    >>> request = ResourceRequest.from_options(TaskOptions(num_cpus=2))
    >>> watch.stranded(request, now)
    'needs 2 CPUs; the largest node has 1'
"""

from __future__ import annotations

from raypipe.runtime.feasibility import ResourceRequest, request_problem
from raypipe.runtime.placement import AliveNodes

__all__ = ["CHECK_INTERVAL_S", "NodeWatch"]

CHECK_INTERVAL_S = 3.0  # how often a waiting run looks for lost nodes


class NodeWatch:
    """The nodes alive when a run started, to tell which of them were lost since."""

    def __init__(self, start: AliveNodes) -> None:
        self._start = dict(zip(start.ids, start.ips, strict=True))

    def lost(self, now: AliveNodes) -> dict[str, str]:
        """Node id -> address of every node alive at the start and not in ``now``."""
        alive = set(now.ids)
        return {node: ip for node, ip in self._start.items() if node not in alive}

    def stranded(self, request: ResourceRequest, now: AliveNodes) -> str | None:
        """Why no node alive ``now`` can hold ``request`` (None if one can)."""
        found = request_problem(request, now.resources, now.labels)
        return None if found is None else found[1]
