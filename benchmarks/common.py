"""Harness shared by the benchmarks: time raypipe against raw Ray, interleaved, on one Ray.

Each benchmark script defines a :class:`Case`: one callable that runs the workload through
``raypipe.run`` and one that runs the same workload written by hand with ``@ray.remote``.
:func:`compare` starts Ray once for the process, runs each callable untimed ``warmup`` times
(the first raypipe run compiles and caches the pipeline; the rounds also warm the workers
and the object store), then times ``reps`` rounds. Every round runs both systems,
alternating which goes first, so drift (thermal, page cache, background load) affects both
alike. It reports the median and spread (interquartile range
and min/max) of each system and the ratio of medians raypipe / raw Ray.

Nothing here fails on a slow result: the targets are printed next to the measured ratio.

Run a benchmark script on its own (``python benchmarks/bench_chain.py --reps 7``) or all of
them with ``python benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "RUN_OPTIONS",
    "Case",
    "Comparison",
    "Stats",
    "compare",
    "format_table",
    "main",
    "prepare_environment",
    "start_ray",
]

T = TypeVar("T")
U = TypeVar("U")

# Execution overhead only: raw Ray has no cache and no tracking. With cache=False every
# step runs, and still stores its cache entry (in the background), so that cost is counted.
# Tracking has its own benchmark (bench_tracking.py).
RUN_OPTIONS: dict[str, Any] = {"cache": False, "tracking": False}

RAYPIPE = "raypipe"
RAW_RAY = "raw Ray"


@dataclass(frozen=True)
class Stats:
    """Summary of one system's wall-clock samples, in seconds."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    samples: list[float]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        values = sorted(samples)
        if len(values) >= 2:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        else:
            q1 = q3 = values[0]
        return cls(
            median=statistics.median(values),
            q1=q1,
            q3=q3,
            min=values[0],
            max=values[-1],
            samples=list(samples),
        )


@dataclass(frozen=True)
class Comparison:
    """What one benchmark measured: both systems' statistics and the target ratio."""

    name: str
    description: str
    target: float  # the raypipe / raw-Ray ratio of medians the issue asks for
    reps: int
    raypipe: Stats
    raw: Stats
    pair_ratios: list[float] = field(default_factory=list)  # per round, raypipe / raw Ray
    labels: tuple[str, str] = (RAYPIPE, RAW_RAY)  # what the two systems are called

    @property
    def ratio(self) -> float:
        """raypipe median / raw Ray median."""
        return self.raypipe.median / self.raw.median

    @property
    def meets_target(self) -> bool:
        return self.ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["meets_target"] = self.meets_target
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        return cls(
            name=data["name"],
            description=data["description"],
            target=data["target"],
            reps=data["reps"],
            raypipe=Stats(**data["raypipe"]),
            raw=Stats(**data["raw"]),
            pair_ratios=list(data.get("pair_ratios", [])),
            labels=tuple(data.get("labels", (RAYPIPE, RAW_RAY))),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Case(Generic[T, U]):
    """One workload, written for both systems.

    ``raypipe`` and ``raw`` are what gets timed; ``check_raypipe`` and ``check_raw`` run
    after each call, untimed, and raise if the result is wrong. ``warmup`` untimed rounds
    of each system come first (the first compiles and caches the pipeline).
    """

    name: str
    description: str
    target: float
    raypipe: Callable[[], T]
    raw: Callable[[], U]
    check_raypipe: Callable[[T], None]
    check_raw: Callable[[U], None]
    warmup: int = 1  # untimed rounds of each system before timing
    labels: tuple[str, str] = (RAYPIPE, RAW_RAY)  # names of ``raypipe`` and ``raw`` in tables


_HOME: str | None = None


def prepare_environment() -> str:
    """Point ``RAYPIPE_HOME`` at a fresh temporary directory (removed at exit).

    Call before any run so artifacts and run files never land in ``~/.raypipe``; a
    ``RAYPIPE_ARTIFACT_ROOT`` set by the caller is ignored so every run writes locally.
    """
    global _HOME
    if _HOME is None:
        _HOME = tempfile.mkdtemp(prefix="raypipe-bench-")
        atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
    os.environ["RAYPIPE_HOME"] = _HOME
    os.environ.pop("RAYPIPE_ARTIFACT_ROOT", None)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Raw Ray shows no progress either: measure both without a display.
    os.environ["RAYPIPE_QUIET"] = "1"
    return _HOME


def start_ray() -> None:
    """Start a local Ray once per process (what ``raypipe.run`` would do on first use)."""
    import ray

    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)

        @ray.remote
        def _noop() -> None:
            return None

        # wait for the worker pool to come up before anything is timed
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        ray.get([_noop.remote() for _ in range(cpus)])


def _timed(func: Callable[[], T]) -> tuple[float, T]:
    gc.collect()  # collect garbage left by the previous call outside the timed region
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def compare(case: Case[T, U], reps: int, *, verbose: bool = True) -> Comparison:
    """Warm up both systems, then time ``reps`` interleaved rounds of each."""
    prepare_environment()
    start_ray()

    def run_raypipe() -> float:
        seconds, value = _timed(case.raypipe)
        case.check_raypipe(value)
        return seconds

    def run_raw() -> float:
        seconds, value = _timed(case.raw)
        case.check_raw(value)
        return seconds

    for i in range(case.warmup):
        warm_raypipe, warm_raw = run_raypipe(), run_raw()
        if verbose:
            print(
                f"[{case.name}] warm-up {i + 1}/{case.warmup}: {RAYPIPE} {warm_raypipe:.3f} s, "
                f"{RAW_RAY} {warm_raw:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    samples: dict[str, list[float]] = {RAYPIPE: [], RAW_RAY: []}
    for i in range(reps):
        order = [(RAYPIPE, run_raypipe), (RAW_RAY, run_raw)]
        if i % 2:
            order.reverse()
        for label, run in order:
            samples[label].append(run())
        if verbose:
            print(
                f"[{case.name}] round {i + 1}/{reps}: {case.labels[0]} "
                f"{samples[RAYPIPE][-1]:.3f} s, {case.labels[1]} {samples[RAW_RAY][-1]:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    return Comparison(
        name=case.name,
        description=case.description,
        target=case.target,
        reps=reps,
        raypipe=Stats.of(samples[RAYPIPE]),
        raw=Stats.of(samples[RAW_RAY]),
        pair_ratios=[a / b for a, b in zip(samples[RAYPIPE], samples[RAW_RAY], strict=True)],
        labels=case.labels,
    )


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def format_table(comparisons: Sequence[Comparison]) -> str:
    """A Markdown table: one row per system, ratio and target on the raypipe row."""
    lines = [
        "| benchmark | system | reps | median | IQR | min – max | ratio (medians) | "
        "per-round ratios | target | met |",
        "|---|---|---:|---:|---|---|---:|---|---:|---|",
    ]
    for c in comparisons:
        for label, stats in ((c.labels[0], c.raypipe), (c.labels[1], c.raw)):
            first = stats is c.raypipe
            rounds = (
                f"{min(c.pair_ratios):.2f}× – {max(c.pair_ratios):.2f}×"
                if first and c.pair_ratios
                else ""
            )
            lines.append(
                "| "
                + " | ".join(
                    [
                        c.name if first else "",
                        label,
                        str(c.reps),
                        _seconds(stats.median),
                        f"{_seconds(stats.q1)} – {_seconds(stats.q3)}",
                        f"{_seconds(stats.min)} – {_seconds(stats.max)}",
                        f"{c.ratio:.2f}×" if first else "",
                        rounds,
                        f"≤ {c.target:.1f}×" if first else "",
                        ("yes" if c.meets_target else "**no**") if first else "",
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def main(case_factory: Callable[[], Case[Any, Any]], default_reps: int) -> Comparison:
    """Command line of a benchmark script: ``[--reps N] [--warmup N] [--json PATH] [--quiet]``."""
    parser = argparse.ArgumentParser(description=case_factory.__doc__)
    parser.add_argument("--reps", type=int, default=default_reps, help="timed rounds")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default: the case's)")
    parser.add_argument("--json", type=Path, help="also write the result here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-round progress")
    args = parser.parse_args()
    if args.reps < 1 or (args.warmup is not None and args.warmup < 0):
        parser.error("--reps must be at least 1 and --warmup at least 0")
    prepare_environment()
    case = case_factory()
    if args.warmup is not None:
        case = dataclasses.replace(case, warmup=args.warmup)
    result = compare(case, args.reps, verbose=not args.quiet)
    print(f"\n{case.name}: {case.description}\n")
    print(format_table([result]))
    print(
        f"\nraypipe / raw Ray = {result.ratio:.2f}× (target ≤ {result.target:.1f}×: "
        f"{'met' if result.meets_target else 'MISSED'})\n"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
