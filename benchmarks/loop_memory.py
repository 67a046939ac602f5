"""Driver memory of a very large loop: raypipe's ``ParallelFor`` vs raw Ray with back-pressure.

Each system runs in its own process (so peak RSS is its own): a loop over ``--items``
trivial steps (default 100,000). raypipe runs a ``ParallelFor`` whose outputs nobody reads
and returns a RunResult with one entry per step. Raw Ray submits the same tasks in windows
of 1,024 with ``ray.wait`` and keeps nothing but a count, which is the floor. Both report
the growth of the driver's resident memory over a warm baseline, its peak, and the time.

Not part of ``run_all.py``: at 100,000 items it takes a few minutes on 2 cores.

Usage: ``python benchmarks/loop_memory.py [--items 100000]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

WINDOW = 1024


def _rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(system: str, items: int) -> dict[str, float]:
    from common import RUN_OPTIONS, prepare_environment, start_ray

    prepare_environment()
    start_ray()
    import ray

    import raypipe
    from raypipe import dsl

    @dsl.component
    def inc(x: int) -> int:
        return x + 1

    @dsl.pipeline(name="loop-memory")
    def loop(items: list) -> None:
        with dsl.ParallelFor(items) as item:
            inc(x=item)

    @ray.remote
    def raw_inc(x: int) -> int:
        return x + 1

    def run_raypipe(values: list[int]) -> int:
        result = raypipe.run(loop, {"items": values}, **RUN_OPTIONS)
        assert result.ok, result.error
        return len(result.tasks)

    def run_raw(values: list[int]) -> int:
        in_flight: list[ray.ObjectRef] = []
        done = 0
        for x in values:
            if len(in_flight) >= WINDOW:
                ready, in_flight = ray.wait(in_flight, num_returns=1)
                done += len(ray.get(ready))
            in_flight.append(raw_inc.remote(x))
        done += len(ray.get(in_flight))
        return done

    run = run_raypipe if system == "raypipe" else run_raw
    run(list(range(1000)))  # warm: workers, imports, caches
    baseline = _rss()
    start = time.perf_counter()
    count = run(list(range(items)))
    seconds = time.perf_counter() - start
    grown = _rss() - baseline
    assert count == items, count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "rss_growth": grown, "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--system", choices=["raypipe", "raw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:  # a child: measure one system, print JSON
        print(json.dumps(_measure(args.system, args.items)))
        return
    rows = []
    for system in ("raw", "raypipe"):
        out = subprocess.run(
            [sys.executable, __file__, "--items", str(args.items), "--system", system],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        rows.append((system, figures))
    print(f"ParallelFor over {args.items:,} trivial items, driver memory\n")
    print("| system | time (s) | steps/s | RSS growth (MiB) | per step (bytes) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for system, f in rows:
        name = "raw Ray (windows of 1,024, nothing kept)" if system == "raw" else "raypipe"
        print(
            f"| {name} | {f['seconds']:.1f} | {args.items / f['seconds']:,.0f} | "
            f"{f['rss_growth'] / 2**20:.0f} | {f['rss_growth'] / args.items:,.0f} | "
            f"{f['peak_rss'] / 2**20:.0f} |"
        )


if __name__ == "__main__":
    main()
