"""Run the raypipe-vs-raw-Ray benchmarks, print the tables, write ``results_raw.md``.

Each benchmark runs in its own Python process with its own local Ray, so one cannot slow
the next through leftover workers or object-store memory. (``make bench`` runs the
peer suite, ``suite.py``, instead.)

Usage: ``python benchmarks/run_all.py [--only chain fanout ...] [--output PATH]``; any
other options (``--reps N``, ``--warmup N``) are passed to every benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Comparison, format_table

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "chain": HERE / "bench_chain.py",
    "fanout": HERE / "bench_fanout.py",
    "handoff": HERE / "bench_handoff.py",
    "loop": HERE / "bench_loop.py",
    "tracking": HERE / "bench_tracking.py",
    "train": HERE / "bench_train.py",
}
TIMEOUT_S = 900  # per benchmark; the training one takes about 5 minutes on 2 cores


def _machine() -> str:
    import ray

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.machine()}; Python {platform.python_version()}; Ray {ray.__version__}"
    )


def _revision() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_benchmark(name: str, extra_args: list[str], json_path: Path) -> list[Comparison] | None:
    """Run one benchmark script in a subprocess; None if it failed.

    A script writes one comparison as a JSON object, or several as a list.
    """
    command = [sys.executable, str(BENCHMARKS[name]), "--json", str(json_path), *extra_args]
    print(f"=== {name}: {' '.join(command[1:])}", flush=True)
    try:
        completed = subprocess.run(command, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        print(f"=== {name}: timed out after {TIMEOUT_S} s", flush=True)
        return None
    if completed.returncode != 0 or not json_path.exists():
        print(f"=== {name}: failed (exit code {completed.returncode})", flush=True)
        return None
    data = json.loads(json_path.read_text())
    return [Comparison.from_json(item) for item in (data if isinstance(data, list) else [data])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--output", type=Path, default=HERE / "results_raw.md")
    args, extra = parser.parse_known_args()

    started = time.perf_counter()
    results: list[Comparison] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="raypipe-bench-results-") as tmp:
        for name in args.only:
            result = run_benchmark(name, extra, Path(tmp) / f"{name}.json")
            if result is None:
                failed.append(name)
            else:
                results.extend(result)
    elapsed = time.perf_counter() - started

    table = format_table(results)
    lines = [
        "# raypipe benchmark results",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {_machine()}",
        f"- raypipe revision: {_revision()}",
        f"- suite wall time: {elapsed:.0f} s",
        "",
        "Wall-clock time of one warm run, end to end (`raypipe.run(...)` for raypipe; submit "
        "and `ray.get` for raw Ray), interleaved rounds. Ratio = raypipe median / raw Ray "
        "median.",
        "",
        *(f"- **{r.name}**: {r.description}" for r in results),
        "",
        table,
        "",
    ]
    if failed:
        lines += [f"Failed: {', '.join(failed)}", ""]
    report = "\n".join(lines)
    print("\n" + report)
    args.output.write_text(report)
    print(f"written to {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
