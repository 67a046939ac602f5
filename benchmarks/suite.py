"""raypipe against the alternatives (``make bench``): five workloads, seven systems, rounds.

Systems: raypipe (tracking on, its default), raypipe with tracking off, raw Ray by hand,
Ray Workflows (Ray 2.47, its own environment), Prefect 3 (its own environment), Dagster,
and kfp.local. Workloads (``peers/workloads.py``): w1 a chain of 100 steps, w2 a fan-out
of 1,000 and a fan-in, w3 a 1 GiB array handed from one step to the next, w4 the digits
ML pipeline, w5 10,000 steps (raypipe and raw Ray only: driver memory and time per step).

Each round starts every system in a process of its own (``peers/worker.py``), one system
after another, the order rotated each round so that no system always runs first or last on
this shared machine. A worker sets its system up (untimed), runs each workload once untimed
(warm-up) and then ``--reps`` timed runs, and more, up to ``--max-reps`` (10), while that
workload's timed runs so far took under ``--rep-budget`` (2 s) in all: the same rule for
every system, so that sub-second runs get several samples a round (a 0.2 s run about
10). kfp.local gets a process per workload and no warm-up (see ``peers/sys_kfp.py``); w5 a
process per system and round: a 4-step warm-up, then the first full run measures the
driver's memory. kfp.local runs w1 and
w2 at 10 steps unless ``--full`` (a step costs it about half a second: 1,000 steps would
take 10 minutes), and the report projects them to full size.

Writes ``results.md`` and ``results.png`` beside this file (``--output-dir``); the raw
samples as ``results.json``. Prints package versions and the load average of each run.

Usage: ``python benchmarks/suite.py [--rounds 2] [--reps 1] [--systems raypipe prefect ...]
[--workloads w1 w2 ...] [--full]``.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import report  # noqa: E402
from peers.envs import OWN_ENVS, ensure_env  # noqa: E402
from peers.models import WorkerResult  # noqa: E402
from peers.workloads import WORKLOADS, full_size  # noqa: E402

SYSTEMS = ["raypipe", "raypipe-untracked", "raw-ray", "ray-workflows", "prefect", "dagster", "kfp"]
W5_SYSTEMS = ("raypipe", "raw-ray")
QUICK = {"kfp": {"w1": {"steps": 10}, "w2": {"steps": 10}}}  # measured size unless --full
WORKER_TIMEOUT_S = 1200
# The same for every system's processes (and the Ray workers, step processes and threads
# they start): numpy does not ask the kernel for transparent huge pages. With them, w3's
# `np.ones(2**27)` took 0.11 s or, when the kernel had to compact memory first, 1.5-7 s,
# at random in every system; without them a steady 0.4 s. See README, w3.
WORKER_ENV = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}


def _sizes(system: str, full: bool) -> dict[str, dict[str, int]]:
    sizes = {w: {k: v for k, v in full_size(w).__dict__.items() if v} for w in WORKLOADS}
    if not full:
        sizes.update(QUICK.get(system, {}))
    return sizes


def _plan(system: str, workloads: list[str]) -> list[list[str]]:
    """The worker processes of one system in one round, as lists of workloads."""
    ordinary = [w for w in workloads if w != "w5"]
    if system == "kfp":
        groups = [[w] for w in ordinary]
    else:
        groups = [ordinary] if ordinary else []
    if "w5" in workloads and system in W5_SYSTEMS:
        groups.append(["w5"])
    return groups


def _run_worker(
    python: Path, system: str, workloads: list[str], args: argparse.Namespace, tmp: Path
) -> WorkerResult:
    out = tmp / f"{system}-{'-'.join(workloads)}-{time.monotonic_ns()}.json"
    warmup = 0 if system == "kfp" else args.warmup
    command = [
        str(python), "-m", "peers.worker", "--system", system, "--workloads", *workloads,
        "--sizes", json.dumps(_sizes(system, args.full)), "--warmup", str(warmup),
        "--reps", str(args.reps), "--max-reps", str(args.max_reps),
        "--rep-budget", str(args.rep_budget), "--out", str(out),
    ]  # fmt: skip
    print(f"--- {system} {' '.join(workloads)} (load {os.getloadavg()[0]:.1f})", flush=True)
    log = tmp / (out.stem + ".log")
    try:
        with open(log, "w") as stream:
            subprocess.run(
                command, cwd=HERE, env=WORKER_ENV, stdout=stream, stderr=subprocess.STDOUT,
                timeout=WORKER_TIMEOUT_S, check=False,
            )  # fmt: skip
    except subprocess.TimeoutExpired:
        return WorkerResult(system=system, key=system, python="", versions={},
                            error=f"timed out after {WORKER_TIMEOUT_S} s")  # fmt: skip
    if not out.exists():
        tail = log.read_text()[-3000:]
        return WorkerResult(system=system, key=system, python="", versions={},
                            error=f"worker wrote no result:\n{tail}")  # fmt: skip
    result = WorkerResult.model_validate_json(out.read_text())
    for sample in result.samples:
        print(f"    {sample.workload}: {sample.seconds:.3f} s (load {sample.load1:.1f})")
    for memory in result.memory:
        print(f"    {memory.workload} memory: {memory.bytes_per_step:.0f} B per step")
    if result.error:
        print(f"    FAILED: {result.error.strip().splitlines()[-1]} (log: {log})", flush=True)
    return result


def _revision() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="3+ if time allows")
    parser.add_argument("--reps", type=int, default=1, help="timed runs per worker process")
    parser.add_argument(
        "--max-reps",
        type=int,
        default=10,
        help="more timed runs per worker, up to this many, while a workload's "
        "timed runs so far took under --rep-budget seconds",
    )
    parser.add_argument("--rep-budget", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (not kfp)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=SYSTEMS)
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--full", action="store_true", help="kfp.local at full size too")
    parser.add_argument("--output-dir", type=Path, default=HERE)
    args = parser.parse_args()

    pythons: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for system in args.systems:
        if system in OWN_ENVS:
            try:
                pythons[system] = ensure_env(system)
            except RuntimeError as exc:
                skipped[system] = str(exc).splitlines()[0]
        else:
            pythons[system] = Path(sys.executable)
    for system, why in skipped.items():
        print(f"skipping {system}: {why}", file=sys.stderr)
    systems = [s for s in args.systems if s in pythons]

    started = time.perf_counter()
    loads = [os.getloadavg()[0]]
    results: list[WorkerResult] = []
    with tempfile.TemporaryDirectory(prefix="raypipe-suite-") as tmp:
        for round_ in range(args.rounds):
            order = systems[round_ % len(systems) :] + systems[: round_ % len(systems)]
            print(f"=== round {round_ + 1}/{args.rounds}: {', '.join(order)}", flush=True)
            for system in order:
                for group in _plan(system, args.workloads):
                    results.append(_run_worker(pythons[system], system, group, args, Path(tmp)))
                    loads.append(os.getloadavg()[0])
    elapsed = time.perf_counter() - started

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    header = [
        "# raypipe vs the alternatives",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}; raypipe revision "
        f"{_revision()}",
        f"- machine: {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.machine()}; Python {platform.python_version()} for every system",
        f"- suite: {args.rounds} rounds, {args.warmup} warm-up and {args.reps} timed run(s) per "
        f"worker process, up to {args.max_reps} while a workload's timed runs took under "
        f"{args.rep_budget:g} s in all; wall time {elapsed / 60:.1f} min; 1-minute load average "
        f"{min(loads):.1f} – {max(loads):.1f} (between workers)",
        f"- command: `python benchmarks/suite.py {' '.join(sys.argv[1:])}`",
        "",
        "Wall time of one run of each workload, end to end, in the system's own process. "
        "system / raypipe is the peer's median over raypipe's (tracking on, its default, "
        "cache off): how many times faster raypipe was. See benchmarks/README.md for the "
        "method.",
    ]
    if skipped:
        header += ["", *(f"- skipped {s}: {why}" for s, why in skipped.items())]
    text = report.markdown(results, header)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.md").write_text(text)
    (args.output_dir / "results.json").write_text(
        json.dumps([r.model_dump() for r in results], indent=1)
    )
    report.chart(results, args.output_dir / "results.png")
    print("\n" + text)
    print(f"written: {args.output_dir / 'results.md'}, results.png, results.json")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
