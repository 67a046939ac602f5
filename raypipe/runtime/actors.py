"""Actor pools: the Ray actors of one run that share an actor component's steps.

A component declared with ``@dsl.component(actor=True, actor_pool_size=N)`` on a class
runs in ``N`` actors per run (default 1); each builds the class once and serves the
steps sent to it in turn. The pool exists while the run does.

Example:
    >>> pool = ActorPool(remote_class, component, size=2, num_returns=2)  # doctest: +SKIP
    >>> output_ref, report_ref = pool.remote(context, x=1)                # doctest: +SKIP
    >>> pool.kill()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from typing import Any

from raypipe.runtime.worker import ComponentRuntime

__all__ = ["ActorPool"]


class ActorPool:
    """``size`` actors of one component; ``remote`` sends a step to the next, in turn."""

    def __init__(
        self, remote_class: Any, component: ComponentRuntime, *, size: int, num_returns: int
    ) -> None:
        self._actors = [remote_class.remote(component) for _ in range(size)]
        methods = [a.run.options(num_returns=num_returns) for a in self._actors]
        self._next = itertools.cycle(methods)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit one step to the next actor; returns the refs a task would."""
        return next(self._next).remote(*args, **kwargs)

    def kill(self) -> None:
        """End the pool's actors (after the run; their steps have all ended)."""
        import ray

        for actor in self._actors:
            ray.kill(actor)
