"""Turn the suite's samples into ``results.md`` (tables) and ``results.png`` (a log-scale chart).

Per workload and system: the median, min - max and number of timed runs, the load
average the runs saw, and the ratio to raypipe's median (how many times slower than
raypipe a peer was; for raw Ray, raypipe / raw Ray). Rows measured at a smaller size
(kfp.local's w1 and w2 by default) are also shown projected to full size (time x full
steps / measured steps: kfp.local runs steps one after another, one process each), and
say so.

Example:
    >>> text = markdown(rounds, meta)  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from peers.models import MemorySample, WorkerResult
from peers.workloads import WORKLOADS, full_size

__all__ = ["Row", "chart", "markdown", "rows"]

RAYPIPE = "raypipe"
UNTRACKED = "raypipe (tracking off)"
RAW = "raw Ray"
ORDER = [RAYPIPE, UNTRACKED, RAW, "Ray Workflows", "Prefect", "Dagster", "kfp.local"]
FILE_PEERS = {"kfp.local", "Ray Workflows"}  # peers whose w3 array goes through files


@dataclass(frozen=True)
class Row:
    """One system on one workload."""

    workload: str
    system: str
    seconds: list[float]  # timed runs, as measured
    steps: int  # steps per run, as measured
    full_steps: int  # steps at the size
    loads: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def projected(self) -> float:
        """The median at full size (the median itself when measured at full size)."""
        return self.median * self.full_steps / self.steps

    @property
    def is_projected(self) -> bool:
        return self.steps != self.full_steps


def rows(results: list[WorkerResult]) -> dict[str, dict[str, Row]]:
    """workload -> system -> Row, over every worker's samples."""
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for result in results:
        for sample in result.samples:
            grouped[(sample.workload, result.system)].append(sample)
    table: dict[str, dict[str, Row]] = defaultdict(dict)
    for (workload, system), samples in grouped.items():
        full = full_size(workload).step_count(workload)
        table[workload][system] = Row(
            workload=workload,
            system=system,
            seconds=[s.seconds for s in samples],
            steps=samples[0].steps,
            full_steps=full,
            loads=[s.load1 for s in samples],
        )
    return table


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _target(workload: str, system: str) -> tuple[float | None, str]:
    """(minimum peer / raypipe ratio, text) the issue asks for, or (maximum raypipe / raw)."""
    if system == "kfp.local" and workload in ("w1", "w2"):
        return 100.0, "≥ 100×"
    if system in ("Prefect", "Ray Workflows") and workload in ("w1", "w2"):
        return 5.0, "≥ 5×"
    if system in FILE_PEERS and workload == "w3":
        return 10.0, "≥ 10×"
    if system not in (RAYPIPE, UNTRACKED, RAW) and workload == "w4":
        return 1.0, "> 1×"
    return None, ""


def _workload_table(workload: str, by_system: dict[str, Row]) -> list[str]:
    base = by_system.get(RAYPIPE)
    lines = [
        f"### {workload}: {WORKLOADS[workload]}",
        "",
        "| system | runs | median | min – max | load (1 min) | system / raypipe | target | met |",
        "|---|---:|---:|---|---|---:|---:|---|",
    ]
    for system in [s for s in ORDER if s in by_system]:
        row = by_system[system]
        median = _s(row.median)
        if row.is_projected:
            median = f"{median} at {row.steps} steps; **{_s(row.projected)} projected**"
        ratio = f"{row.projected / base.projected:.1f}×" if base and system != RAYPIPE else ""
        target, text = _target(workload, system)
        met = ""
        if target is not None and base:
            value = row.projected / base.projected
            met = "yes" if (value > target if target == 1.0 else value >= target) else "**no**"
        lines.append(
            f"| {system} | {len(row.seconds)} | {median} | {_s(min(row.seconds))} – "
            f"{_s(max(row.seconds))} | {min(row.loads):.1f} – {max(row.loads):.1f} | {ratio} "
            f"| {text} | {met} |"
        )
    untracked, raw = by_system.get(UNTRACKED), by_system.get(RAW)
    if untracked and raw and workload in ("w1", "w2", "w3"):
        ratio = untracked.median / raw.median
        lines += [
            "",
            f"raypipe with tracking off / raw Ray: **{ratio:.2f}×** (target ≤ 1.3×: "
            f"{'met' if ratio <= 1.3 else 'missed'}).",
        ]
    return [*lines, ""]


def _memory_table(memory: dict[str, list[MemorySample]], table: dict[str, Row]) -> list[str]:
    lines = [
        f"### w5: {WORKLOADS['w5']}",
        "",
        "Driver memory: peak resident memory of the driver process during its first w5 run, "
        "above its resident memory just before it (a fresh process; sampled every 2 ms). "
        "Time: the next runs in the same process.",
        "",
        "| system | runs | median | per step | min – max | load (1 min) | peak growth | per step |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for system in (RAYPIPE, UNTRACKED, RAW):
        if system not in table and not memory.get(system):
            continue
        row = table.get(system)
        mem = memory.get(system, [])
        growth = statistics.median([m.peak_bytes - m.baseline_bytes for m in mem]) if mem else 0
        per_step = statistics.median([m.bytes_per_step for m in mem]) if mem else 0
        lines.append(
            f"| {system} | {len(row.seconds) if row else 0} | {_s(row.median) if row else ''} | "
            f"{row.median / row.steps * 1e6:.0f} µs | "
            f"{_s(min(row.seconds))} – {_s(max(row.seconds))} | "
            f"{min(row.loads):.1f} – {max(row.loads):.1f} | {growth / 2**20:.0f} MiB | "
            f"{per_step / 1000:.1f} KB |"
            if row
            else f"| {system} | 0 | | | | | {growth / 2**20:.0f} MiB | {per_step / 1000:.1f} KB |"
        )
    raw, ours = table.get(RAW), table.get(RAYPIPE)
    if raw and ours:
        ratio = ours.median / raw.median
        lines += [
            "",
            f"Time per step, raypipe / raw Ray: **{ratio:.2f}×** (target ≤ 1.5×: "
            f"{'met' if ratio <= 1.5 else 'missed'}).",
        ]
    if memory.get(RAYPIPE):
        per_step = statistics.median([m.bytes_per_step for m in memory[RAYPIPE]])
        lines.append(
            f"raypipe driver memory: **{per_step / 1000:.1f} KB per step** (target ≤ 2 KB: "
            f"{'met' if per_step <= 2000 else 'missed'})."
        )
    return [*lines, ""]


def markdown(results: list[WorkerResult], header: list[str]) -> str:
    """The whole ``results.md``: ``header`` lines, versions, one table per workload."""
    table = rows(results)
    memory: dict[str, list[MemorySample]] = defaultdict(list)
    for result in results:
        memory[result.system].extend(result.memory)
    versions: dict[str, dict[str, str]] = {}
    for result in results:
        versions.setdefault(result.system, {**result.versions, "Python": result.python})
    lines = [*header, "", "## Versions", ""]
    for system in [s for s in ORDER if s in versions]:
        packages = ", ".join(f"{k} {v}" for k, v in versions[system].items())
        lines.append(f"- **{system}**: {packages}")
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines.append(f"- {r.system}: `{r.error.strip().splitlines()[-1]}`")
    lines += ["", "## Results", ""]
    for workload in WORKLOADS:
        if workload == "w5":
            if memory.get(RAYPIPE) or "w5" in table:
                lines += _memory_table(memory, table.get("w5", {}))
        elif workload in table:
            lines += _workload_table(workload, table[workload])
    return "\n".join(lines) + "\n"


def chart(results: list[WorkerResult], path: Path) -> None:
    """Grouped bars: per workload, each system's median (log scale), whiskers min - max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(results)
    workloads = [w for w in WORKLOADS if w in table]
    systems = [s for s in ORDER if any(s in table[w] for w in workloads)]
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    for i, system in enumerate(systems):
        xs, heights, low, high, hatches = [], [], [], [], []
        for j, workload in enumerate(workloads):
            row = table[workload].get(system)
            if row is None:
                continue
            scale = row.full_steps / row.steps
            xs.append(j + (i - (len(systems) - 1) / 2) * width)
            heights.append(row.projected)
            low.append(row.projected - min(row.seconds) * scale)
            high.append(max(row.seconds) * scale - row.projected)
            hatches.append("//" if row.is_projected else "")
        bars = ax.bar(xs, heights, width, yerr=[low, high], capsize=2, label=system)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([f"{w}\n{WORKLOADS[w][:38]}" for w in workloads], fontsize=8)
    ax.set_ylabel("wall time of one run, s (log scale)")
    ax.set_title("raypipe vs alternatives: median of timed runs (hatched: projected to full size)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
