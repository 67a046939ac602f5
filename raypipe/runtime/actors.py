"""Actor pools: the Ray actors of one run that share an actor component's steps.

A component declared with ``@dsl.component(actor=True, actor_pool_size=N)`` on a class
runs in ``N`` actors per run (default 1); each builds the class once and serves the
steps sent to it. A step goes to the actor with the fewest steps in flight (the first
such, in turn), so a slow step does not hold up the steps queued behind it while another
actor is idle. An actor whose process dies is restarted by Ray (``actor_restarts``). The
pool exists while the run does.

Example:
    >>> pool = ActorPool(remote_class, component, size=2, num_returns=2)  # doctest: +SKIP
    >>> output_ref, report_ref = pool.remote(context, x=1)                # doctest: +SKIP
    >>> pool.step_ended(report_ref)                                       # doctest: +SKIP
    >>> pool.kill()                                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from raypipe.runtime.worker import ComponentRuntime

__all__ = ["ActorPool"]


class ActorPool:
    """``size`` actors of one component; ``remote`` sends a step to the least busy one."""

    def __init__(
        self, remote_class: Any, component: ComponentRuntime, *, size: int, num_returns: int
    ) -> None:
        self._actors = [remote_class.remote(component) for _ in range(size)]
        self._methods = [a.run.options(num_returns=num_returns) for a in self._actors]
        self._in_flight = [0] * size  # steps sent to each actor whose report is not in
        self._served_by: dict[Any, int] = {}  # report ref -> actor index
        self._last = -1

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit one step to the least busy actor; returns the refs a task would."""
        size = len(self._actors)
        # Least busy; among equals, the next one after the last used (round-robin).
        index = min(range(size), key=lambda i: (self._in_flight[i], (i - self._last - 1) % size))
        refs = self._methods[index].remote(*args, **kwargs)
        report = refs[-1] if isinstance(refs, list) else refs
        self._in_flight[index] += 1
        self._served_by[report] = index
        self._last = index
        return refs

    def step_ended(self, report: Any) -> None:
        """Tell the pool that the step whose report is ``report`` has ended."""
        index = self._served_by.pop(report, None)
        if index is not None:
            self._in_flight[index] -= 1

    def kill(self) -> None:
        """End the pool's actors (after the run; their steps have all ended)."""
        import ray

        for actor in self._actors:
            ray.kill(actor)
