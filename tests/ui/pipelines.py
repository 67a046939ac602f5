"""Pipelines the UI tests drive: a gated one whose steps end one by one (silently), one
silent gated step, one that fails with a log, one that writes every kind of artifact the
step panel previews, a wide one with a 1,000-item loop, and one of 100 steps."""

from __future__ import annotations

import random

from raypipe import dsl
from raypipe.dsl import (
    HTML,
    ClassificationMetrics,
    Dataset,
    Markdown,
    Metrics,
    Output,
)


@dsl.component
def gate(gates: str, name: str, value: int) -> int:
    """Waits until the file ``{gates}/{name}`` exists: the test opens the gates one by one.
    It prints nothing: its attempt marker alone tells the UI that it runs."""
    import os
    import time

    while not os.path.exists(os.path.join(gates, name)):
        time.sleep(0.05)
    return value + 1


@dsl.pipeline(name="ui-silent")
def silent(gates: str) -> int:
    """One step that waits for the gate ``{gates}/only`` and prints nothing."""
    return gate(gates=gates, name="only", value=0).output


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def total(values: list) -> int:
    return sum(values)


@dsl.component
def announce(text: str) -> str:
    print(f"announcing {text}")
    return text


@dsl.component
def farewell(status: dsl.PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline(name="ui-stepwise", description="steps that end one at a time")
def stepwise(gates: str, start: int = 1, threshold: int = 3) -> int:
    bye = farewell()
    with dsl.ExitHandler(exit_task=bye):
        first = gate(gates=gates, name="first", value=start)
        second = gate(gates=gates, name="second", value=first.output)
        with dsl.ParallelFor([1, 2, 3]) as item:
            sq = square(x=item)
        summed = total(values=dsl.Collected(sq.output))
        with dsl.If(second.output > threshold):
            announce(text="big")
        with dsl.Else():
            announce(text="small")
    return summed.output


@dsl.component
def parse_rows(rows: int) -> int:
    print("reading the input")
    print(f"row {rows} looks wrong")
    raise ValueError(f"bad input row {rows}")


@dsl.component
def never(x: int) -> int:
    return x


@dsl.pipeline(name="ui-failing")
def failing(rows: int = 7) -> int:
    parsed = parse_rows(rows=rows).set_retry(1).set_cpu_limit("1")  # two attempts, both fail
    return never(x=parsed.output).output


@dsl.component
def report(
    notes: Output[Markdown],
    page: Output[HTML],
    scores: Output[Metrics],
    quality: Output[ClassificationMetrics],
    table: Output[Dataset],
    columns: Output[Dataset],
) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(notes.path, "w") as f:
        f.write("# Model report\n\nAccuracy is **high**.\n\n<script>alert(1)</script>\n")
    with open(page.path, "w") as f:
        f.write(
            "<html><body><h1 id='t'>Embedded page</h1>"
            "<script>try { parent.document.title = 'owned' } catch (e) {}</script>"
            "</body></html>"
        )
    scores.log_metric("accuracy", 0.93)
    scores.log_metric("loss", 0.21)
    quality.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
    quality.log_roc_curve([0.0, 0.1, 0.4, 1.0], [0.0, 0.7, 0.9, 1.0], [1.0, 0.8, 0.5, 0.0])
    with open(table.path, "w") as f:
        f.write("id,name,score\n" + "".join(f"{i},row{i},{i / 10}\n" for i in range(50)))
    data = pa.table({"k": list(range(30)), "v": [f"v{i}" for i in range(30)]})
    pq.write_table(data, columns.path)
    return 0.93


@dsl.pipeline(name="ui-artifacts")
def artifacts() -> float:
    return report().outputs["Output"]


@dsl.component
def one(i: int) -> int:
    return i


@dsl.pipeline(name="ui-wide")
def wide() -> None:
    with dsl.ParallelFor(list(range(1000)), parallelism=50) as i:
        one(i=i)


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


def hundred_steps() -> dsl.Pipeline:
    """100 steps, each reading one or two of the 20 before it, and three conditions."""
    rng = random.Random(7)

    @dsl.pipeline(name="ui-hundred")
    def hundred(x: int = 1) -> int:
        made = [add(a=x, b=0)]
        for i in range(1, 100):
            picks = rng.sample(made[max(0, i - 20) :], k=min(i, 2))
            step = add(a=picks[0].output, b=picks[-1].output)
            if i % 25 == 0:
                with dsl.If(step.output > 3):
                    add(a=step.output, b=1)
            made.append(step)
        return made[-1].output

    return hundred
