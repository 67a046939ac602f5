"""Time one system's workloads in this process: ``python -m peers.worker --system NAME ...``.

Started by the suite (``benchmarks/suite.py``) once per system and round, with
``benchmarks/`` as the working directory; Ray Workflows' and Prefect's workers run in
their own environments, so this module needs only the standard library, numpy and psutil.
It sets the system up (untimed), then for each workload: ``--warmup`` untimed runs, then
``--reps`` timed runs (w3: one more warm-up, for fresh memory pages), each checked
(untimed) against :func:`peers.workloads.check`. For w5 the warm-up is a 4-step run
(2 chains of 2), and the first full run is the memory measurement: the driver's resident
memory is sampled every 2 ms during it, and its peak growth over the resident memory just
before it is reported. Everything is
written as JSON to ``--out`` (read by the suite as :class:`peers.models.WorkerResult`).

Example:
    python -m peers.worker --system raw-ray --workloads w1 --sizes '{"w1": {"steps": 100}}' \\
        --warmup 1 --reps 1 --out /tmp/raw.json
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil

from peers.system import Runnable, System
from peers.workloads import Size, check

# system name on the command line -> (module, class, keyword arguments)
SYSTEMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "raypipe": ("peers.sys_raypipe", "Raypipe", {"tracking": True}),
    "raypipe-untracked": ("peers.sys_raypipe", "Raypipe", {"tracking": False}),
    "raw-ray": ("peers.sys_ray", "RawRay", {}),
    "prefect": ("peers.sys_prefect", "Prefect", {}),
    "dagster": ("peers.sys_dagster", "Dagster", {}),
    "kfp": ("peers.sys_kfp", "KfpLocal", {}),
    "ray-workflows": ("peers.sys_workflows", "RayWorkflows", {}),
}


def make_system(key: str) -> System:
    module, cls, kwargs = SYSTEMS[key]
    system: System = getattr(importlib.import_module(module), cls)(**kwargs)
    return system


class PeakMemory:
    """Sample this process's resident memory in a thread; the peak above the start value."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.baseline = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _timed(runnable: Runnable) -> tuple[float, Any]:
    gc.collect()  # garbage of the previous run is collected outside the timing
    start = time.perf_counter()
    out = runnable.run()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=list(SYSTEMS), required=True)
    parser.add_argument("--workloads", nargs="+", required=True)
    parser.add_argument("--sizes", required=True, help="JSON: workload -> Size fields")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=1, help="timed runs of each workload")
    parser.add_argument(
        "--max-reps",
        type=int,
        default=1,
        help="more timed runs, up to this many, while the budget lasts",
    )
    parser.add_argument("--rep-budget", type=float, default=0.0,
                        help="seconds: time one more run while a workload's timed runs "
                        "took less than this in all")  # fmt: skip
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sizes = {name: Size(**fields) for name, fields in json.loads(args.sizes).items()}

    system = make_system(args.system)
    result: dict[str, Any] = {
        "system": system.name,
        "key": args.system,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": _versions(system.packages),
        "samples": [],
        "memory": [],
        "error": None,
    }
    with tempfile.TemporaryDirectory(prefix=f"raypipe-bench-{args.system}-") as workdir:
        started = time.perf_counter()
        try:
            system.setup(workdir)
            result["setup_seconds"] = time.perf_counter() - started
            for workload in args.workloads:
                size = sizes[workload]
                runnable = system.build(workload, size)
                if workload == "w5":
                    # a 4-step run first: imports and lazy set-up (raypipe loads its runner
                    # and tracking on first use) are not per-step memory
                    if args.warmup:
                        small = Size(width=2, steps=2)
                        warm = system.build(workload, small)
                        check(workload, warm.value(warm.run()), small)
                    with PeakMemory() as memory:
                        seconds, out = _timed(runnable)
                    check(workload, runnable.value(out), size)
                    result["memory"].append(
                        {
                            "workload": workload,
                            "steps": size.step_count(workload),
                            "seconds": seconds,
                            "baseline_bytes": memory.baseline,
                            "peak_bytes": memory.peak,
                        }
                    )
                    del out
                else:
                    # w3's first runs touch fresh pages (seconds on this VM): one more warm-up
                    warmups = args.warmup + 1 if workload == "w3" and args.warmup else args.warmup
                    for _ in range(warmups):
                        check(workload, runnable.value(runnable.run()), size)
                timed = 0.0
                for rep in range(max(args.reps, args.max_reps)):
                    if rep >= args.reps and timed >= args.rep_budget:
                        break  # the same rule for every system: fast runs get more samples
                    load = os.getloadavg()[0]
                    seconds, out = _timed(runnable)
                    timed += seconds
                    check(workload, runnable.value(out), size)
                    del out
                    result["samples"].append(
                        {
                            "workload": workload,
                            "size": size.__dict__,
                            "steps": size.step_count(workload),
                            "seconds": seconds,
                            "load1": load,
                        }
                    )
                    print(f"[{args.system}] {workload}: {seconds:.3f} s (load {load:.1f})",
                          file=sys.stderr, flush=True)  # fmt: skip
        except Exception:  # reported to the suite, which prints it and marks the system
            result["error"] = traceback.format_exc()
            print(result["error"], file=sys.stderr, flush=True)
        finally:
            try:
                system.teardown()
            finally:
                with open(args.out, "w") as f:
                    json.dump(result, f)
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
