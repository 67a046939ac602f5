"""Step caching on a real Ray: what hits, what misses and why, and how outputs persist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, Output
from raypipe.runtime.cache import CACHE_DIR

_WAIT_S = 60.0  # background persistence is waited for, never timed


def entries(home: Path) -> list[Path]:
    return sorted((home / "artifacts" / CACHE_DIR).glob("*/*.json"))


def wait_for_entries(home: Path, count: int) -> None:
    """Wait until ``count`` cache entries exist (background persistence has finished)."""
    deadline = time.monotonic() + _WAIT_S
    while len(entries(home)) < count:
        assert time.monotonic() < deadline, f"{len(entries(home))} of {count} entries written"
        time.sleep(0.05)


def states(result: raypipe.RunResult) -> dict[str, str]:
    return {name: task.state.value for name, task in result.tasks.items()}


@dsl.component
def make_array(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@dsl.component
def make_table(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


@dsl.component
def make_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"y": [i * 2 for i in range(n)]}, index=[f"r{i}" for i in range(n)])


@dsl.component
def make_blob(n: int) -> dict:
    return {"n": n, "items": {i for i in range(n)}}  # a set: not JSON, pickled


@dsl.component
def write_file(n: int, out: Output[Dataset]) -> None:
    Path(out.path).write_text(",".join(str(i) for i in range(n)))


@dsl.component
def summarise(a: np.ndarray, t: pa.Table, f: pd.DataFrame, b: dict, d: Input[Dataset]) -> str:
    frame = f"{f['y'].sum()}{''.join(f.index)}"  # the index survives too
    return f"{a.sum()}|{t.num_rows}|{frame}|{len(b['items'])}|{Path(d.path).read_text()}"


@dsl.pipeline(name="cached")
def cached(n: int = 4) -> str:
    return summarise(
        a=make_array(n=n).output,
        t=make_table(n=n).output,
        f=make_frame(n=n).output,
        b=make_blob(n=n).output,
        d=write_file(n=n).outputs["out"],
    ).output


def test_a_second_run_is_served_from_the_cache_with_equal_outputs(raypipe_home: Path) -> None:
    first = raypipe.run(cached, tracking=False)
    assert first.ok and set(states(first).values()) == {"SUCCEEDED"}
    wait_for_entries(raypipe_home, 6)

    second = raypipe.run(cached, tracking=False)
    assert set(states(second).values()) == {"CACHED"}
    assert second.output == first.output == "6.0|4|12r0r1r2r3|4|0,1,2,3"
    assert all(not t.attempts for t in second.tasks.values())  # nothing ran


def test_changing_an_input_misses_that_step_and_what_reads_it(raypipe_home: Path) -> None:
    @dsl.pipeline(name="partial")
    def partial(n: int = 4, m: int = 2) -> str:
        return summarise(
            a=make_array(n=m).output,
            t=make_table(n=n).output,
            f=make_frame(n=n).output,
            b=make_blob(n=n).output,
            d=write_file(n=n).outputs["out"],
        ).output

    raypipe.run(partial, tracking=False)
    wait_for_entries(raypipe_home, 6)
    changed = raypipe.run(partial, {"m": 3}, tracking=False)
    assert states(changed) == {
        "make-array": "SUCCEEDED",  # its input changed
        "make-table": "CACHED",
        "make-frame": "CACHED",
        "make-blob": "CACHED",
        "write-file": "CACHED",
        "summarise": "SUCCEEDED",  # it reads make-array's new output
    }
    assert changed.output == "3.0|4|12r0r1r2r3|4|0,1,2,3"


def test_changing_the_code_misses(raypipe_home: Path) -> None:
    def build(factor: int) -> Any:
        @dsl.component(persist="sync")
        def scale(x: int) -> int:
            return x * factor

        @dsl.pipeline(name="code")
        def code(x: int = 2) -> int:
            return scale(x=x).output

        return code

    assert raypipe.run(build(10), tracking=False).output == 20
    assert states(raypipe.run(build(10), tracking=False)) == {"scale": "CACHED"}
    changed = raypipe.run(build(11), tracking=False)  # same name, other code
    assert states(changed) == {"scale": "SUCCEEDED"} and changed.output == 22


def test_cache_off_per_step_and_per_run(raypipe_home: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.txt"

    @dsl.component(persist="sync")
    def counted(path: str, x: int) -> int:
        with open(path, "a") as f:
            f.write(f"{x}\n")
        return x

    @dsl.pipeline(name="switches")
    def switches(path: str) -> int:
        a = counted(path=path, x=1)
        b = counted(path=path, x=2).set_caching_options(False)
        return counted(path=path, x=3).after(a, b).output

    args = {"path": str(log)}
    assert raypipe.run(switches, args, tracking=False).ok
    second = raypipe.run(switches, args, tracking=False)
    assert states(second) == {"counted": "CACHED", "counted-2": "SUCCEEDED", "counted-3": "CACHED"}
    third = raypipe.run(switches, args, tracking=False, cache=False)
    assert set(states(third).values()) == {"SUCCEEDED"}
    assert sorted(log.read_text().split()) == ["1", "1", "2", "2", "2", "3", "3"]


def test_a_run_without_the_cache_stores_nothing(raypipe_home: Path) -> None:
    @dsl.component(persist="sync")
    def plain(x: int) -> int:
        return x

    @dsl.pipeline(name="nothing-stored")
    def nothing_stored() -> int:
        return plain(x=1).output

    raypipe.run(nothing_stored, tracking=False, cache=False)
    assert entries(raypipe_home) == []
    assert states(raypipe.run(nothing_stored, tracking=False)) == {"plain": "SUCCEEDED"}


def test_a_step_reading_an_uncached_step_misses(raypipe_home: Path) -> None:
    @dsl.component(cache=False)
    def now() -> float:
        return time.time()

    @dsl.component(persist="sync")
    def later(t: float) -> float:
        return t + 1

    @dsl.pipeline(name="fresh")
    def fresh() -> float:
        return later(t=now().output).output

    raypipe.run(fresh, tracking=False)
    again = raypipe.run(fresh, tracking=False)
    assert states(again) == {"now": "SUCCEEDED", "later": "SUCCEEDED"}


def test_persist_none_is_never_a_hit_and_sync_is_stored_before_downstream(
    raypipe_home: Path,
) -> None:
    @dsl.component(persist="none")
    def volatile(n: int) -> np.ndarray:
        return np.zeros(n)

    @dsl.component(persist="sync")
    def stored(n: int) -> np.ndarray:
        return np.ones(n)

    @dsl.component(persist="sync")
    def entries_seen(x: np.ndarray, root: str) -> int:
        return len(list(Path(root).glob("*/*.json")))

    @dsl.pipeline(name="modes")
    def modes(root: str) -> int:
        volatile(n=2)
        return entries_seen(x=stored(n=2).output, root=root).output

    root = str(raypipe_home / "artifacts" / CACHE_DIR)
    first = raypipe.run(modes, {"root": root}, tracking=False)
    assert first.output == 1  # `stored`'s entry was written before its reader started
    second = raypipe.run(modes, {"root": root}, tracking=False)
    assert states(second) == {"volatile": "SUCCEEDED", "stored": "CACHED", "entries-seen": "CACHED"}


def test_a_hit_whose_artifact_has_gone_runs_again(raypipe_home: Path) -> None:
    @dsl.pipeline(name="files")
    def files(n: int = 3) -> None:
        write_file(n=n)

    first = raypipe.run(files, tracking=False)
    wait_for_entries(raypipe_home, 1)
    Path(first.tasks["write-file"].outputs["out"].uri).unlink()
    assert states(raypipe.run(files, tracking=False)) == {"write-file": "SUCCEEDED"}


def test_persist_names_an_unknown_output() -> None:
    with pytest.raises(raypipe.ComponentDefinitionError, match=r"bad\.persist: .*nope"):

        @dsl.component(persist={"nope": "sync"})
        def bad(x: int) -> int:
            return x
