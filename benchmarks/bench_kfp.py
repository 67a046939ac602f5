"""KFP corpus: raypipe running KFP-compiled YAML vs KFP's own local runner (``kfp.local``).

Two measurements.

1. **Corpus.** Every case of ``tests/data/kfp/cases.json`` (40 KFP v2 pipelines compiled by
   the kfp SDK 2.17.3) runs once per round on each system, each system in its own fresh
   Python processes, the two systems alternating which goes first, ``--repeat`` rounds:

   - ``kfp.local``: ``kfp.local.init(runner=SubprocessRunner(use_venv=False))``, the YAML
     loaded with ``kfp.components.load_component_from_file`` and called with the case's
     arguments. Every step is a fresh Python subprocess (the compiled command, whose
     ``pip install kfp`` finds kfp installed). One process per case: kfp.local leaks state
     from one pipeline into the next (see ``run_pass``).
   - raypipe: ``spec = raypipe.load(path)`` then ``raypipe.run(spec, arguments=...,
     cache=False, tracking=False, quiet=True)``, all cases in one process on one local Ray,
     started (untimed, but reported) when the process starts, then one untimed warm-up
     run (``--warmup-case``), as in the other benchmarks.

   Timed per case: loading the YAML plus the run, wall clock. Untimed: ``{tmpdir}`` in the
   arguments becomes a fresh directory per run, and the result is checked against the
   case's expected status, outputs and files. Executed steps are counted (attempts, so a
   retried step counts twice): subprocesses started by ``kfp.local``, attempts in
   raypipe's ``RunResult``. Only cases that match their expectations on both systems in
   every round are compared (kfp.local fails nine of the corpus by its own gaps, listed in
   ``tests/data/kfp/README.md``); the others are listed with the reason. Reported: per
   case median and min - max, and the per-round total over the compared cases, whose
   median ratio kfp.local / raypipe is the speed-up (target: at least 20x).

2. **Per-step overhead of the KFP path.** A chain of ``--chain-steps`` (50) trivial steps
   (``x + 1``), compiled by the real kfp compiler from a ``kfp.dsl`` pipeline into a
   temporary YAML and run by raypipe from that YAML, against the same chain written with
   raypipe's native DSL; both in one process on one Ray, interleaved, with
   ``common.compare`` (``--chain-reps`` rounds). Target: YAML / native <= 1.5x.

Run: ``.venv/bin/python benchmarks/bench_kfp.py [--repeat 3] [--cases add_numbers ...]
[--chain-steps 50] [--chain-reps 15] [--no-chain] [--no-corpus] [--json PATH]``. It prints
a Markdown report and writes it to ``benchmarks/results_kfp.md`` (``--output``). Needs the
``bench`` extra (kfp 2.17.3). About 9.5 minutes on 2 cores with the defaults, nearly all of
it kfp.local.
"""

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import importlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = REPO / "tests" / "data" / "kfp"
DEFAULT_OUTPUT = HERE / "results_kfp.md"

KFP_LOCAL = "kfp.local"
RAYPIPE = "raypipe"
SYSTEMS = (KFP_LOCAL, RAYPIPE)
CORPUS_TARGET = 20.0  # kfp.local total / raypipe total, at least
CHAIN_TARGET = 1.5  # raypipe from KFP YAML / raypipe native DSL, at most
CASE_TIMEOUT_S = 180  # one case on one system
WORKER_TIMEOUT_S = 1800  # one system's pass over the corpus
CHAIN_TIMEOUT_S = 900


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class CorpusCase:
    """One entry of cases.json."""

    name: str
    path: Path
    arguments: dict[str, Any]
    expect_status: str
    expect_outputs: dict[str, Any] | None
    expect_files: dict[str, str | None]

    @classmethod
    def read_all(cls, corpus: Path = CORPUS) -> list["CorpusCase"]:
        cases = []
        for entry in json.loads((corpus / "cases.json").read_text()):
            path = corpus / entry["file"]
            cases.append(
                cls(
                    name=path.stem,
                    path=path,
                    arguments=entry.get("arguments") or {},
                    expect_status=entry["expect_status"],
                    expect_outputs=entry.get("expect_outputs"),
                    expect_files=entry.get("expect_files") or {},
                )
            )
        return cases


def substitute(value: Any, tmpdir: str) -> Any:
    """``value`` with ``{tmpdir}`` replaced in every string inside it."""
    if isinstance(value, str):
        return value.replace("{tmpdir}", tmpdir)
    if isinstance(value, list):
        return [substitute(v, tmpdir) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, tmpdir) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- checking


def _artifact_location(actual: Any) -> str | None:
    """The local path or URI of an artifact: a kfp ``dsl.Artifact`` or raypipe record."""
    if isinstance(actual, Mapping):
        uri = actual.get("uri")
        return str(uri) if uri else None
    path = getattr(actual, "path", None)  # kfp.dsl.Artifact: a local path
    if isinstance(path, str) and path:
        return path
    uri = getattr(actual, "uri", None)
    return str(uri) if uri else None


def _artifact_metadata(actual: Any) -> Any:
    if isinstance(actual, Mapping):
        return actual.get("metadata") or {}
    return getattr(actual, "metadata", None) or {}


def _read_artifact(location: str) -> tuple[str | None, list[str] | None]:
    """The text of a file artifact, or the sorted relative paths of a directory one."""
    import pyarrow.fs as pafs

    if "://" in location:
        fs, path = pafs.FileSystem.from_uri(location)
    else:
        fs, path = pafs.LocalFileSystem(), location
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(
            e.path[len(path) :].lstrip("/") for e in entries if e.type == pafs.FileType.File
        )
        return None, files
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(location)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode(), None


def mismatch(expected: Any, actual: Any, where: str = "") -> str | None:
    """Why ``actual`` is not ``expected`` under the rules of cases.json; None if it is."""
    if isinstance(expected, dict) and set(expected) == {"$artifact"}:
        want = expected["$artifact"]
        location = _artifact_location(actual)
        if location is None:
            return f"{where}: expected an artifact, got {actual!r:.80}"
        try:
            text, files = _read_artifact(location)
        except (OSError, FileNotFoundError) as exc:
            return f"{where}: cannot read artifact {location}: {exc}"
        if "text" in want and text != want["text"]:
            return f"{where}: artifact text {text!r:.80} != {want['text']!r:.80}"
        if "files" in want and files != want["files"]:
            return f"{where}: artifact files {files} != {want['files']}"
        if "metadata" in want:
            metadata = _artifact_metadata(actual)
            for key, value in want["metadata"].items():
                if key not in metadata:
                    return f"{where}: artifact metadata has no {key!r}"
                problem = mismatch(value, metadata[key], f"{where}.metadata.{key}")
                if problem:
                    return problem
        return None
    if isinstance(expected, bool) or isinstance(actual, bool):
        ok = isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
        return None if ok else f"{where}: {actual!r:.80} != {expected!r:.80}"
    if isinstance(expected, int | float):
        if isinstance(actual, int | float) and math.isclose(
            float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-9
        ):
            return None
        return f"{where}: {actual!r:.80} != {expected!r:.80}"
    if isinstance(expected, list):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            return f"{where}: {actual!r:.80} != {expected!r:.80}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            problem = mismatch(e, a, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, Mapping):
            return f"{where}: expected a dict, got {actual!r:.80}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}: no key {key!r}"
            problem = mismatch(value, actual[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    return None if actual == expected else f"{where}: {actual!r:.80} != {expected!r:.80}"


def check(case: CorpusCase, status: str, outputs: Mapping[str, Any], tmpdir: str) -> str | None:
    """Why a run of ``case`` does not meet its expectations; None if it does."""
    if status != case.expect_status:
        return f"status {status}, expected {case.expect_status}"
    if case.expect_outputs is not None:
        for name, value in case.expect_outputs.items():
            if name not in outputs:
                return f"no output {name!r} (outputs: {sorted(outputs)})"
            problem = mismatch(value, outputs[name], name)
            if problem:
                return problem
    for raw_path, content in case.expect_files.items():
        path = Path(substitute(raw_path, tmpdir))
        if content is None:
            if path.exists():
                return f"{path} exists"
        elif not path.is_file() or path.read_text() != content:
            return f"{path}: not {content!r}"
    return None


# --------------------------------------------------------------------------- workers


@dataclass
class CaseResult:
    """One case on one system in one round."""

    case: str
    system: str
    status: str  # SUCCEEDED, FAILED, ERROR (the runner raised), TIMEOUT
    ok: bool  # status, outputs and files as cases.json expects
    seconds: float  # load + run
    load_seconds: float
    steps: int | None
    detail: str = ""


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (kfp.local colours its messages)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


class _CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _CaseTimeout(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _kfp(module: str) -> Any:
    """Import a module of the kfp SDK (untyped, so typed as Any; imported only when used)."""
    return importlib.import_module(module)


class KfpLocalRunner:
    """Runs corpus cases with ``kfp.local`` (SubprocessRunner, no venv)."""

    system = KFP_LOCAL

    def __init__(self, workdir: str) -> None:
        kfp_local = _kfp("kfp.local")
        handler_module = _kfp("kfp.local.subprocess_task_handler")
        _kfp("kfp.components")  # imported here, untimed; and so are the orchestrators that
        _kfp("kfp.local.orchestrator.dag_orchestrator")  # kfp.local imports on first use
        _kfp("kfp.local.orchestrator.enhanced_dag_orchestrator")

        self.steps = 0
        original = handler_module.SubprocessTaskHandler.run

        def counting_run(handler: Any) -> Any:
            self.steps += 1
            return original(handler)

        handler_module.SubprocessTaskHandler.run = counting_run
        kfp_local.init(
            runner=kfp_local.SubprocessRunner(use_venv=False),
            pipeline_root=os.path.join(workdir, "kfp-outputs"),
            raise_on_error=True,
        )

    def run(self, case: CorpusCase, arguments: dict[str, Any]) -> tuple[str, Any, float, str]:
        """Status, outputs, load seconds, failure text."""
        components = _kfp("kfp.components")
        self.steps = 0
        started = time.perf_counter()
        component = components.load_component_from_file(str(case.path))
        loaded = time.perf_counter() - started
        try:
            task = component(**arguments)
        except RuntimeError as exc:
            if "finished with status" in str(exc):
                return "FAILED", {}, loaded, str(exc).splitlines()[0]
            raise
        return "SUCCEEDED", dict(task.outputs), loaded, ""

    def executed_steps(self, outputs: Any) -> int | None:
        return self.steps


class RaypipeRunner:
    """Runs corpus cases with ``raypipe.load`` and ``raypipe.run``."""

    system = RAYPIPE

    def __init__(self, workdir: str) -> None:
        from common import prepare_environment, start_ray

        prepare_environment()
        started = time.perf_counter()
        start_ray()
        self.ray_start_seconds = time.perf_counter() - started
        self.last: Any = None

    def run(self, case: CorpusCase, arguments: dict[str, Any]) -> tuple[str, Any, float, str]:
        from common import RUN_OPTIONS

        import raypipe

        self.last = None
        started = time.perf_counter()
        spec = raypipe.load(case.path)
        loaded = time.perf_counter() - started
        options = {**RUN_OPTIONS, "quiet": True}
        result = raypipe.run(spec, arguments=arguments, **options)
        self.last = result
        detail = ""
        if result.error is not None:
            detail = str(getattr(result.error, "message", result.error)).splitlines()[0]
        return str(result.status), dict(result.outputs), loaded, detail

    def executed_steps(self, outputs: Any) -> int | None:
        if self.last is None:
            return None
        return sum(len(task.attempts) for task in self.last.tasks.values())


def _one(runner: KfpLocalRunner | RaypipeRunner, case: CorpusCase) -> CaseResult:
    tmpdir = tempfile.mkdtemp(prefix=f"bench-kfp-{case.name}-")
    arguments = substitute(case.arguments, tmpdir)
    started = time.perf_counter()
    loaded = 0.0
    try:
        with _deadline(CASE_TIMEOUT_S):
            status, outputs, loaded, detail = runner.run(case, arguments)
        seconds = time.perf_counter() - started
    except _CaseTimeout as exc:
        return CaseResult(
            case.name, runner.system, "TIMEOUT", False, time.perf_counter() - started, 0.0,
            None, str(exc),
        )  # fmt: skip
    except Exception as exc:  # the runner itself gave up: a gap, not a pipeline failure
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return CaseResult(
            case.name, runner.system, "ERROR", False, time.perf_counter() - started, loaded,
            runner.executed_steps(None), _plain(last)[:300],
        )  # fmt: skip
    try:
        problem = check(case, status, outputs, tmpdir)
    except Exception as exc:
        problem = f"check failed: {exc!r}"
    shutil.rmtree(tmpdir, ignore_errors=True)
    steps = runner.executed_steps(outputs)
    return CaseResult(
        case.name, runner.system, status, problem is None, seconds, loaded, steps,
        _plain(problem or detail),
    )  # fmt: skip


def worker_corpus(system: str, names: Sequence[str], out: Path, warmup: str | None) -> int:
    """Run ``names`` on ``system`` in this process, one JSON line per case into ``out``."""
    cases = {c.name: c for c in CorpusCase.read_all()}
    workdir = tempfile.mkdtemp(prefix=f"bench-kfp-{system.replace('.', '-')}-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    runner: KfpLocalRunner | RaypipeRunner = (
        KfpLocalRunner(workdir) if system == KFP_LOCAL else RaypipeRunner(workdir)
    )
    with out.open("a") as sink:
        if isinstance(runner, RaypipeRunner):
            sink.write(json.dumps({"ray_start_seconds": runner.ray_start_seconds}) + "\n")
        if warmup:  # untimed: first-run costs of the process (imports, worker start-up)
            _one(runner, cases[warmup])
        for name in names:
            sink.write(json.dumps({"start": name}) + "\n")
            sink.flush()
            result = _one(runner, cases[name])
            sink.write(json.dumps(dataclasses.asdict(result)) + "\n")
            sink.flush()
    return 0


# --------------------------------------------------------------------------- driver


@dataclass
class Pass:
    """One system's pass over the corpus in one round."""

    system: str
    results: dict[str, CaseResult]
    ray_start_seconds: float | None = None
    wall_seconds: float = 0.0


def _worker_command(system: str, names: Sequence[str], out: Path, warmup: str | None) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", system]
    command += ["--out", str(out), "--cases", *names]
    if warmup:
        command += ["--warmup-case", warmup]
    return command


def run_pass(system: str, names: Sequence[str], warmup: str | None, logdir: Path) -> Pass:
    """Run the corpus on ``system``: raypipe in one process, kfp.local one process per case.

    kfp.local leaks state from one pipeline into the next (its indented ``print`` wrappers
    pile up when loop iterations run in threads, and later runs slow down by minutes), so
    each case gets a fresh process; only the case's load and run are timed either way.
    """
    started = time.perf_counter()
    if system == KFP_LOCAL:
        results: dict[str, CaseResult] = {}
        for name in names:
            results.update(_run_worker(system, [name], None, logdir).results)
    else:
        done = _run_worker(system, names, warmup, logdir)
        results, ray_start = done.results, done.ray_start_seconds
    done = Pass(system, results, None if system == KFP_LOCAL else ray_start)
    done.wall_seconds = time.perf_counter() - started
    return done


def _run_worker(system: str, names: Sequence[str], warmup: str | None, logdir: Path) -> Pass:
    """Run ``names`` on ``system`` in a subprocess; restart it past a case that kills it."""
    logdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, CaseResult] = {}
    ray_start: float | None = None
    remaining = list(names)
    started = time.perf_counter()
    attempt = 0
    while remaining:
        attempt += 1
        out = logdir / f"{system}-{remaining[0]}-{attempt}.jsonl"
        log = logdir / f"{system}-{remaining[0]}-{attempt}.log"
        command = _worker_command(system, remaining, out, warmup)
        with log.open("w") as sink:
            try:
                code: int | str = subprocess.run(
                    command, stdout=sink, stderr=subprocess.STDOUT, timeout=WORKER_TIMEOUT_S,
                    cwd=REPO, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                code = "timeout"
        in_progress: str | None = None
        if out.exists():
            for line in out.read_text().splitlines():
                record = json.loads(line)
                if "ray_start_seconds" in record:
                    ray_start = ray_start or record["ray_start_seconds"]
                elif "start" in record:
                    in_progress = record["start"]
                else:
                    results[record["case"]] = CaseResult(**record)
                    in_progress = None
        remaining = [n for n in remaining if n not in results]
        if not remaining:
            break
        tail = log.read_text()[-400:].strip().replace("\n", " | ")
        victim = in_progress or remaining[0]
        results[victim] = CaseResult(
            victim, system, "ERROR", False, math.nan, math.nan, None,
            f"worker process died ({code}): {tail}",
        )  # fmt: skip
        print(f"  {system}: worker died on {victim} ({code}); restarting", file=sys.stderr)
        remaining.remove(victim)
    return Pass(system, results, ray_start, time.perf_counter() - started)


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        return cls(statistics.median(values), min(values), max(values))


def _s(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "–"
    s = Spread.of(values)
    return f"{_s(s.median)} ({_s(s.min)} – {_s(s.max)})" if len(values) > 1 else _s(s.median)


def corpus_report(names: Sequence[str], passes: Sequence[Pass]) -> tuple[str, dict[str, Any]]:
    """The corpus tables (Markdown) and a JSON summary."""
    by_system = {s: [p for p in passes if p.system == s] for s in SYSTEMS}
    compared: list[str] = []
    excluded: dict[str, list[str]] = {}
    for name in names:
        reasons = []
        for system in SYSTEMS:
            bad = [p.results[name] for p in by_system[system] if not p.results[name].ok]
            if bad:
                first = bad[0]
                count = f" ({len(bad)} of {len(by_system[system])} rounds)"
                reasons.append(f"{system}: {first.status}: {first.detail}"[:240] + count)
        if reasons:
            excluded[name] = reasons
        else:
            compared.append(name)

    lines = [
        "| case | kfp.local: median (min – max) | steps | raypipe: median (min – max) | steps "
        "| kfp.local / raypipe |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    per_case: dict[str, dict[str, Any]] = {}
    for name in names:
        cells = [name if name in compared else f"{name} (excluded)"]
        medians = {}
        for system in SYSTEMS:
            times = [
                p.results[name].seconds
                for p in by_system[system]
                if not math.isnan(p.results[name].seconds)
            ]
            counts = sorted(
                {s for p in by_system[system] if (s := p.results[name].steps) is not None}
            )
            cells += [_spread(times), "/".join(str(c) for c in counts) or "–"]
            medians[system] = statistics.median(times) if times else math.nan
        ratio = medians[KFP_LOCAL] / medians[RAYPIPE] if name in compared else math.nan
        cells.append(f"{ratio:.1f}×" if not math.isnan(ratio) else "")
        lines.append("| " + " | ".join(cells) + " |")
        per_case[name] = {"medians": medians, "compared": name in compared}

    totals = {
        s: [sum(p.results[n].seconds for n in compared) for p in by_system[s]] for s in SYSTEMS
    }
    summary: dict[str, Any] = {
        "compared": compared,
        "excluded": excluded,
        "per_case": per_case,
        "totals": totals,
    }
    out = ["### Per case", "", *lines, ""]
    if compared:
        kfp_total, rp_total = Spread.of(totals[KFP_LOCAL]), Spread.of(totals[RAYPIPE])
        ratio = kfp_total.median / rp_total.median
        rounds = [a / b for a, b in zip(totals[KFP_LOCAL], totals[RAYPIPE], strict=True)]
        summary["ratio"] = ratio
        step_totals = {
            s: sum(max((p.results[n].steps or 0) for p in by_system[s]) for n in compared)
            for s in SYSTEMS
        }
        out += [
            f"### Total over the {len(compared)} compared cases",
            "",
            "| system | rounds | total: median | min – max | executed steps | "
            "kfp.local / raypipe (medians) | per-round ratios | target | met |",
            "|---|---:|---:|---|---:|---:|---|---:|---|",
            f"| kfp.local | {len(totals[KFP_LOCAL])} | {_s(kfp_total.median)} | "
            f"{_s(kfp_total.min)} – {_s(kfp_total.max)} | {step_totals[KFP_LOCAL]} | "
            f"{ratio:.1f}× | "
            f"{min(rounds):.1f}× – {max(rounds):.1f}× | ≥ {CORPUS_TARGET:.0f}× | "
            f"{'yes' if ratio >= CORPUS_TARGET else '**no**'} |",
            f"| raypipe | {len(totals[RAYPIPE])} | {_s(rp_total.median)} | "
            f"{_s(rp_total.min)} – {_s(rp_total.max)} | {step_totals[RAYPIPE]} |  |  |  |  |",
            "",
        ]
    else:
        out += ["No case ran correctly on both systems: nothing to compare.", ""]
    ray_starts = [p.ray_start_seconds for p in by_system[RAYPIPE] if p.ray_start_seconds]
    if ray_starts:
        out += [
            f"Not in the totals: starting Ray in each raypipe process "
            f"({_spread(ray_starts)}), once per process, before any case.",
        ]
        if compared:
            cold = statistics.median(totals[RAYPIPE]) + statistics.median(ray_starts)
            summary["ratio_with_ray_start"] = statistics.median(totals[KFP_LOCAL]) / cold
            out[-1] += (
                f" Counting it once for the whole corpus: raypipe {_s(cold)}, kfp.local / "
                f"raypipe = {summary['ratio_with_ray_start']:.1f}×."
            )
        out.append("")
    if excluded:
        out += ["### Excluded (not as expected on at least one system)", ""]
        out += [f"- `{name}`: " + "; ".join(r) for name, r in excluded.items()]
        out.append("")
    return "\n".join(out), summary


# --------------------------------------------------------------------------- chain


# No ``from __future__ import annotations`` in this module: the kfp SDK reads the
# annotations of ``inc`` and of the pipeline function as types, not strings.
def inc(x: int) -> int:
    return x + 1


def compile_kfp_chain(steps: int, path: Path) -> None:
    """Compile a ``steps``-long chain of ``inc`` with the kfp SDK into ``path``."""
    compiler, kfp_dsl = _kfp("kfp.compiler"), _kfp("kfp.dsl")

    kfp_inc = kfp_dsl.component(inc, base_image="python:3.11")

    def chain(start: int = 0) -> int:
        value: Any = start
        for _ in range(steps):
            value = kfp_inc(x=value).output
        return value  # type: ignore[no-any-return]

    pipeline = kfp_dsl.pipeline(name="bench-kfp-chain")(chain)
    compiler.Compiler().compile(pipeline, str(path))


def worker_chain(steps: int, reps: int, warmup: int, out: Path) -> int:
    """Time the chain from KFP YAML against the native DSL chain; write the comparison."""
    from common import RUN_OPTIONS, Case, compare, prepare_environment

    import raypipe
    from raypipe import dsl

    prepare_environment()
    with tempfile.TemporaryDirectory(prefix="bench-kfp-chain-") as tmp:
        path = Path(tmp) / "chain.yaml"
        compile_kfp_chain(steps, path)
        raypipe.load(path)  # untimed: the first load imports the KFP importer
        started = time.perf_counter()
        spec = raypipe.load(path)
        load_seconds = time.perf_counter() - started

    native_inc = dsl.component(inc)

    @dsl.pipeline(name="bench-native-chain")
    def native(start: int = 0) -> int:
        value: Any = start
        for _ in range(steps):
            value = native_inc(x=value).output
        return value  # type: ignore[no-any-return]

    def check_result(result: Any) -> None:
        assert result.status == "SUCCEEDED", result.error
        assert result.outputs.get("Output") == steps, result.outputs
        assert len(result.tasks) == steps, len(result.tasks)

    options = {**RUN_OPTIONS, "quiet": True}
    case: Case[Any, Any] = Case(
        name=f"chain of {steps}",
        description=f"{steps} chained x + 1 steps: raypipe from kfp-compiled YAML vs native DSL",
        target=CHAIN_TARGET,
        raypipe=lambda: raypipe.run(spec, arguments={"start": 0}, **options),
        raw=lambda: raypipe.run(native, arguments={"start": 0}, **options),
        check_raypipe=check_result,
        check_raw=check_result,
        warmup=warmup,
        labels=("raypipe, KFP YAML", "raypipe, native DSL"),
    )
    result = compare(case, reps)
    data = {**result.to_json(), "yaml_load_seconds": load_seconds}
    out.write_text(json.dumps(data, indent=2) + "\n")
    return 0


def run_chain(steps: int, reps: int, logdir: Path) -> tuple[str, dict[str, Any] | None]:
    from common import Comparison, format_table

    out = logdir / "chain.json"
    log = logdir / "chain.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "chain"]
    command += ["--out", str(out), "--chain-steps", str(steps), "--chain-reps", str(reps)]
    with log.open("w") as sink:
        try:
            code: int | str = subprocess.run(
                command, stdout=sink, stderr=subprocess.STDOUT, timeout=CHAIN_TIMEOUT_S,
                cwd=REPO, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = "timeout"
    if not out.exists():
        tail = log.read_text().strip().splitlines()[-3:]
        return f"Not measured: the chain process failed ({code}): {' | '.join(tail)}\n", None
    data = json.loads(out.read_text())
    comparison = Comparison.from_json(data)
    text = (
        f"{comparison.description}; {comparison.reps} interleaved rounds in one process, "
        f"one warm-up each; the YAML is loaded once (`raypipe.load`: "
        f"{_s(data['yaml_load_seconds'])}, not in the times), as the native pipeline is "
        f"compiled once. Ratio = YAML median / native median.\n\n"
        + format_table([comparison])
        + "\n"
    )
    return text, data


# --------------------------------------------------------------------------- main


def _machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {memory:.0f} GiB RAM, {platform.system()} "
        f"{platform.machine()}; Python {platform.python_version()}"
    )


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("kfp", "ray", "raypipe", "protobuf"))


def _revision() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=HERE, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the corpus per system")
    parser.add_argument("--cases", nargs="+", help="only these cases (names of the YAML files)")
    parser.add_argument("--chain-steps", type=int, default=50)
    parser.add_argument("--chain-reps", type=int, default=15)
    parser.add_argument("--no-chain", action="store_true", help="skip the per-step comparison")
    parser.add_argument("--no-corpus", action="store_true", help="only the per-step comparison")
    parser.add_argument("--warmup-case", default="add_numbers", help="run untimed first")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", choices=[*SYSTEMS, "chain"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # common.py, also when imported from elsewhere

    all_names = [c.name for c in CorpusCase.read_all()]
    names = args.cases or all_names
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    if args.worker == "chain":
        return worker_chain(args.chain_steps, args.chain_reps, 1, args.out)
    if args.worker:
        return worker_corpus(args.worker, names, args.out, args.warmup_case or None)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    sections = [
        "# KFP corpus: raypipe vs kfp.local",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {_machine()}",
        f"- versions: {_versions()}",
        f"- raypipe revision: {_revision()}",
        "",
    ]
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-kfp-") as tmp:
        logdir = Path(tmp)
        if not args.no_corpus:
            passes: list[Pass] = []
            for round_ in range(args.repeat):
                order = list(SYSTEMS) if round_ % 2 == 0 else list(reversed(SYSTEMS))
                for system in order:
                    done = run_pass(system, names, args.warmup_case, logdir / f"r{round_}")
                    passes.append(done)
                    good = sum(r.ok for r in done.results.values())
                    print(
                        f"[corpus] round {round_ + 1}/{args.repeat} {system}: "
                        f"{good}/{len(names)} as expected, "
                        f"{sum(r.seconds for r in done.results.values() if r.ok):.1f} s in "
                        f"those cases, {done.wall_seconds:.1f} s process",
                        file=sys.stderr,
                        flush=True,
                    )
            table, summary["corpus"] = corpus_report(names, passes)
            sections += [
                f"## Corpus: {len(names)} cases, {args.repeat} rounds per system",
                "",
                "Time per case: YAML load + run, wall clock, each system in its own process "
                "(alternating), median of the rounds. Steps: executed step attempts.",
                "",
                table,
            ]
        if not args.no_chain:
            text, summary["chain"] = run_chain(args.chain_steps, args.chain_reps, logdir)
            sections += [f"## Per-step overhead: chain of {args.chain_steps}", "", text]
    sections.append(f"Benchmark wall time: {time.perf_counter() - started:.0f} s.\n")
    report = "\n".join(sections)
    print(report)
    args.output.write_text(report)
    print(f"written to {args.output}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
