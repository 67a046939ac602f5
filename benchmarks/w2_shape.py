"""What w2's gap to raw Ray is made of: raw Ray, raw Ray in raypipe's task shape, raypipe.

The suite's w2 (a fan-out of 1,000 ``x + 1`` steps and a fan-in that sums them) three
ways in one process on one Ray, alternating each round:

- **raw Ray**: the suite's hand-written version (``peers/sys_ray.py``);
- **raw Ray, raypipe's shape**: the same tasks called as raypipe calls a step, with
  nothing of raypipe's runtime: a context list as the first argument, the input as a
  keyword, a second return value (a report list like raypipe's), and a driver that keeps
  256 steps in flight, refilling when half have ended, and fetches every report;
- **raypipe**: the suite's ``@dsl.pipeline``, tracking off (``peers/sys_raypipe.py``).

It prints each one's median wall time and driver CPU time (every thread of the driver
process: Ray's own included) per run, and the ratios to raw Ray. The shaped version
separates the cost of the task's shape (what Ray does with a bigger call) from raypipe's
own Python (scheduler, submission, reports into the result).

Example:
    cd benchmarks && NUMPY_MADVISE_HUGEPAGE=0 ../.venv/bin/python w2_shape.py --rounds 10
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import ray
from peers.sys_ray import RawRay
from peers.sys_raypipe import Raypipe
from peers.workloads import Size

STEPS = 1000
WINDOW = 256  # raypipe's default step window up to 16 CPUs (DEFAULT_STEP_WINDOW)
EXPECTED = sum(range(1, STEPS + 1))


@ray.remote(num_returns=2)
def shaped_inc(context: list[Any], x: int) -> tuple[int, list[Any]]:
    started = time.time()
    value = x + 1
    report = [context[-3], "SUCCEEDED", [[1, started, time.time(), None]], "n", "ip", None, None]
    return value, report


@ray.remote(num_returns=2)
def shaped_total(context: list[Any], *values: int) -> tuple[int, list[Any]]:
    return sum(values), [context[-3], "SUCCEEDED", [], "n", "ip", None, None]


def shaped_fanout() -> int:
    """w2 with raypipe's call shape and step window, and no raypipe."""
    run = ["0" * 32, "w2-fanout", "run-name", "/tmp/artifacts", "/tmp/run", True, False, []]
    outputs: list[Any] = []
    pending: list[Any] = []
    for i in range(STEPS):
        output, report = shaped_inc.remote([*run, f"inc-{i}", None, None], x=i)
        outputs.append(output)
        pending.append(report)
        if len(pending) >= WINDOW:
            ready, pending = ray.wait(pending, num_returns=len(pending) - WINDOW // 2)
            ray.get(ready)
    if pending:
        ray.get(pending)
    output, report = shaped_total.remote([*run, "total", None, None], *outputs)
    ray.get(report)
    return int(ray.get(output))


def _measure(run: Callable[[], Any]) -> tuple[float, float, Any]:
    gc.collect()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = run()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    raypipe_system = Raypipe(tracking=False)
    with tempfile.TemporaryDirectory(prefix="raypipe-w2-shape-") as workdir:
        raypipe_system.setup(workdir)  # starts Ray for all three, as raypipe.run would
        try:
            raw = RawRay().build("w2", Size(steps=STEPS))
            piped = raypipe_system.build("w2", Size(steps=STEPS))
            systems: dict[str, Callable[[], Any]] = {
                "raw Ray": raw.run,
                "raw Ray, raypipe's shape": shaped_fanout,
                "raypipe (tracking off)": piped.run,
            }
            checks: dict[str, Callable[[Any], Any]] = {
                "raw Ray": raw.value,
                "raw Ray, raypipe's shape": lambda v: v,
                "raypipe (tracking off)": piped.value,
            }
            walls: dict[str, list[float]] = {name: [] for name in systems}
            cpus: dict[str, list[float]] = {name: [] for name in systems}
            for run in systems.values():  # warm-up: workers, imports, compilation
                for _ in range(2):
                    run()
            names = list(systems)
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    seconds, cpu, value = _measure(systems[name])
                    if checks[name](value) != EXPECTED:
                        raise AssertionError(f"{name}: sum {checks[name](value)} != {EXPECTED}")
                    walls[name].append(seconds)
                    cpus[name].append(cpu)
        finally:
            raypipe_system.teardown()
    base_wall = statistics.median(walls["raw Ray"])
    base_cpu = statistics.median(cpus["raw Ray"])
    print(f"w2 ({STEPS} steps + fan-in), {args.rounds} rounds, medians (min-max):")
    for name in systems:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"  {name:26s} wall {wall * 1e3:5.0f} ms ({min(walls[name]) * 1e3:.0f}-"
            f"{max(walls[name]) * 1e3:.0f}) {wall / base_wall:4.2f}x   driver CPU "
            f"{cpu * 1e3:5.0f} ms {cpu / base_cpu:4.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
