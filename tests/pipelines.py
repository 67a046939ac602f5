"""Components and pipelines shared by the tests (module-level, as users write them)."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from raypipe import dsl
from raypipe.dsl import Dataset, Input, Metrics, Model, Output

SCALE = 3  # a module constant used by a component: it must travel with the payload


def _triple(x: int) -> int:  # a module helper used by a component
    return x * SCALE


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.component
def triple(x: int) -> int:
    return _triple(x)


@dsl.component
def echo(text: str) -> str:
    return text


@dsl.component
def make_matrix(n: int) -> np.ndarray:
    return np.ones((n, n))


@dsl.component
def matrix_facts(m: np.ndarray) -> dict:
    return {
        "sum": float(m.sum()),
        "writeable": bool(m.flags.writeable),
        "owndata": bool(m.flags.owndata),
        "base": type(m.base).__name__ if m.base is not None else None,
    }


@dsl.component
def total(m: np.ndarray, out: Output[Dataset]) -> float:
    with open(out.path, "w") as f:
        f.write(str(m.sum()))
    out.metadata["rows"] = m.shape[0]
    return float(m.sum())


@dsl.component
def read_dataset(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f"{f.read()}|rows={data.metadata['rows']}"


class DivMod(NamedTuple):
    quotient: int
    remainder: int


@dsl.component
def divmod_(a: int, b: int) -> DivMod:
    return DivMod(a // b, a % b)


@dsl.component
def train(lr: float, model: Output[Model], metrics: Output[Metrics]) -> None:
    os.makedirs(model.path)
    with open(os.path.join(model.path, "weights.txt"), "w") as f:
        f.write(str(lr))
    metrics.log_metric("accuracy", 0.5 + lr)


@dsl.component
def fail(message: str) -> int:
    raise ValueError(message)


@dsl.component
def read_env(name: str) -> str:
    return os.environ.get(name, "<unset>")


@dsl.component
def append_line(path: str, line: str) -> str:
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@dsl.component
def flaky(marker: str, failures: int) -> int:
    """Fail the first `failures` calls, counted in the marker file."""
    count = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(count + 1))
    if count < failures:
        raise RuntimeError(f"flaky failure {count + 1}")
    return count + 1


@dsl.pipeline(name="addition")
def addition(a: int, b: int, c: int = 10) -> int:
    t1 = add(a=a, b=b)
    t2 = add(a=t1.output, b=c)
    return t2.output


@dsl.component
def make_table(n: int) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.float64)})


@dsl.component
def table_facts(t: pa.Table) -> dict:
    buffer = t.column("x").chunks[0].buffers()[1]
    return {"sum": float(t.column("x").to_numpy().sum()), "mutable": buffer.is_mutable}


# Lineage and OpenLineage tests: artifacts, an in-memory object, a collected list ---------


@dsl.component
def make_data(rows: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write("\n".join(str(i) for i in range(rows)))
    data.metadata["rows"] = rows


@dsl.component
def scale(data: Input[Dataset], factor: int, out: Output[Dataset]) -> float:
    with open(data.path) as f:
        values = [int(line) * factor for line in f.read().split()]
    with open(out.path, "w") as f:
        f.write("\n".join(map(str, values)))
    return float(sum(values))


@dsl.component
def to_array(x: float) -> np.ndarray:
    return np.full(4, x)


@dsl.component
def keep(data: Input[Dataset], total: float) -> float:
    return total


@dsl.component
def count_files(files: list) -> int:
    return len(files)
