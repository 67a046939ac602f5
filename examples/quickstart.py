"""Quickstart: three components, one pipeline, run on a local Ray.

Run it with ``make demo`` or ``python examples/quickstart.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import raypipe
from raypipe import dsl
from raypipe.dsl import Dataset, Input, Output


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.component
def make_matrix(n: int) -> np.ndarray:  # any Python object passes in memory
    return np.ones((n, n))


@dsl.component
def total(m: np.ndarray, out: Output[Dataset]) -> float:
    with open(out.path, "w") as f:  # file artifacts get a path
        f.write(str(m.sum()))
    out.metadata["rows"] = m.shape[0]
    return float(m.sum())


@dsl.component
def describe(report: Input[Dataset], value: float) -> str:
    with open(report.path) as f:
        stored = f.read()
    return f"{report.metadata['rows']} rows, sum {value} (file says {stored})"


@dsl.pipeline(name="addition")
def addition(a: int, b: int, c: int = 10) -> int:
    t1 = add(a=a, b=b)
    t2 = add(a=t1.output, b=c)
    return t2.output


class Summary(NamedTuple):
    sum: int
    description: str


@dsl.pipeline(name="quickstart", description="Numbers, an in-memory matrix and a file artifact.")
def quickstart(a: int = 1, b: int = 2, n: int = 1000) -> Summary:
    s = addition(a=a, b=b)  # a pipeline used as a component
    m = make_matrix(n=n)
    t = total(m=m.output)
    d = describe(report=t.outputs["out"], value=t.outputs["Output"])
    return Summary(sum=s.output, description=d.output)


def main() -> None:
    result = raypipe.run(addition, arguments={"a": 1, "b": 2})
    assert result.status == "SUCCEEDED" and result.output == 13
    print(f"addition(1, 2) + 10 = {result.output}")

    result = raypipe.run(quickstart, raise_on_failure=True)
    print(result.summary())


if __name__ == "__main__":
    main()
