"""Pipelines the service's reliability tests send to a ``raypipe server`` subprocess.

The server's workers load a step's function by module, so the components live in an
importable module (the server runs with the repository as working directory).
"""

from __future__ import annotations

import time

from raypipe import dsl


@dsl.component(num_cpus=0.1)
def slow_add(a: int, b: int, seconds: float) -> int:
    """``a + b`` after ``seconds``: long enough to be in flight when the server dies, and a
    tenth of a CPU so that many runs are in flight at once on two cores."""
    time.sleep(seconds)
    return a + b


@dsl.pipeline(name="slow-sum")
def slow_sum(a: int, b: int, seconds: float = 1.0) -> int:
    """Two slow steps in a chain: ``(a + b) + b``."""
    first = slow_add(a=a, b=b, seconds=seconds)
    return slow_add(a=first.output, b=b, seconds=seconds).output


@dsl.component(num_cpus=0.1)
def add_one(value: int) -> int:
    """A step that ends at once."""
    return value + 1


@dsl.pipeline(name="tiny")
def tiny(value: int = 1) -> int:
    """One quick step: the load test's run."""
    return add_one(value=value).output
