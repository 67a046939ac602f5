"""Profile the driver side of ``raypipe.run`` on the chain or fan-out workload with cProfile.

Prints the wall time of a few warm runs, then the functions where the driver spends its
time (own time and cumulative), so an overhead in ``raypipe/`` shows up by file and line.
Worker-side costs (what each step's Ray task does) do not appear here: the driver only
waits for them inside ``ray.wait``; see ``README.md`` for how they were measured.

Usage: ``python benchmarks/profile_raypipe.py chain|fanout [--runs N] [--top N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from typing import Any

import bench_chain
import bench_fanout
from common import RUN_OPTIONS, prepare_environment, start_ray

import raypipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["chain", "fanout"])
    parser.add_argument("--runs", type=int, default=3, help="profiled warm runs")
    parser.add_argument("--top", type=int, default=30, help="functions to list")
    args = parser.parse_args()

    prepare_environment()
    start_ray()
    pipeline: Any
    if args.workload == "chain":
        pipeline, arguments = bench_chain.chain_pipeline(bench_chain.STEPS), {"start": 0}
    else:
        pipeline, arguments = bench_fanout.fanout_pipeline(bench_fanout.STEPS), {}
    raypipe.run(pipeline, arguments, **RUN_OPTIONS)  # compile, cache, warm the workers

    for _ in range(args.runs):
        start = time.perf_counter()
        raypipe.run(pipeline, arguments, **RUN_OPTIONS)
        print(f"warm run, unprofiled: {time.perf_counter() - start:.3f} s")

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.runs):
        raypipe.run(pipeline, arguments, **RUN_OPTIONS)
    profile.disable()

    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(f"\n{args.runs} profiled runs of {args.workload}:\n{out.getvalue()}")


if __name__ == "__main__":
    main()
