"""KFP features the conformance corpus does not cover, written as a KFP user would.

The module imports ``dsl`` from raypipe; the parity test also loads it with
``from kfp import dsl`` and compiles each pipeline with the KFP SDK, then checks that the
raypipe DSL and the compiled YAML give the same results. Components are self-contained
(imports inside the function), as KFP requires.
"""

from typing import NamedTuple

from raypipe import dsl
from raypipe.dsl import (
    ClassificationMetrics,
    Dataset,
    Input,
    InputPath,
    Metrics,
    Model,
    Output,
    OutputPath,
)


@dsl.component
def make_rows(count: int, rows: OutputPath("Dataset"), total: OutputPath(int)):  # noqa: F821
    with open(rows, "w") as f:
        f.write("\n".join(str(i) for i in range(count)))
    with open(total, "w") as f:
        f.write(str(sum(range(count))))


@dsl.component
def summarise(
    rows: InputPath("Dataset"),  # noqa: F821
    total: int,
    label: str,
    metrics: Output[Metrics],
    report: Output[ClassificationMetrics],
) -> NamedTuple("Summary", [("line", str), ("mean", float)]):  # noqa: UP014
    from collections import namedtuple

    with open(rows) as f:
        values = [int(v) for v in f.read().split()]
    mean = total / len(values)
    metrics.log_metric("mean", mean)
    report.log_confusion_matrix(["a", "b"], [[3, 1], [0, 4]])
    report.log_roc_curve([0.0, 0.5, 1.0], [0.0, 0.8, 1.0], [1.0, 0.5, 0.0])
    summary = namedtuple("Summary", ["line", "mean"])
    return summary(f"{label}: {len(values)} rows", mean)


@dsl.component
def shout(text: str) -> str:
    return text.upper()


@dsl.pipeline(name="paths-and-metrics")
def paths_and_metrics(count: int = 4, label: str = "run") -> str:
    made = make_rows(count=count)
    summary = summarise(
        rows=made.outputs["rows"], total=made.outputs["total"], label=f"{label}-{count}"
    )
    return shout(text=summary.outputs["line"]).output


@dsl.component
def build_model(size: int) -> Model:
    model = Model(uri=dsl.get_uri())
    with open(model.path, "w") as f:
        f.write("w" * size)
    model.metadata["size"] = size
    return model


@dsl.component
def weigh(model: Input[Model]) -> int:
    with open(model.path) as f:
        return len(f.read()) + model.metadata["size"]


@dsl.component
def pick(values: list[int]) -> int:
    return max(values)


@dsl.pipeline(name="pythonic-loop")
def pythonic_loop(sizes: list[int] = [1, 3, 2]) -> int:  # noqa: B006 - KFP's default form
    with dsl.ParallelFor(sizes) as size:
        weighed = weigh(model=build_model(size=size).output)
    return pick(values=dsl.Collected(weighed.output)).output


@dsl.component
def coin(heads: bool) -> str:
    return "heads" if heads else "tails"


@dsl.component
def file_for(side: str, out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write(side)


@dsl.component
def read_text(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name="branch-artifacts")
def branch_artifacts_inner(heads: bool = True) -> Dataset:
    side = coin(heads=heads)
    with dsl.If(side.output == "heads"):
        first = file_for(side="H")
    with dsl.Else():
        second = file_for(side="T")
    return dsl.OneOf(first.outputs["out"], second.outputs["out"])


@dsl.pipeline(name="oneof-artifacts")
def oneof_artifacts(heads: bool = False) -> str:
    chosen = branch_artifacts_inner(heads=heads)
    return read_text(data=chosen.output).output


@dsl.component
def job_facts(job: str, task: str, resource: str) -> dict[str, str]:
    return {"job": job, "task": task, "resource": resource}


@dsl.component
def explode(message: str) -> str:
    raise ValueError(message)


@dsl.component
def settle(note: str = "no note") -> str:
    return note


@dsl.component
def final_words(status: dsl.PipelineTaskFinalStatus) -> str:
    return f"{status.state}:{status.pipeline_task_name}"


@dsl.pipeline(name="placeholders-and-failures")
def placeholders_and_failures() -> None:
    words = final_words()
    with dsl.ExitHandler(words, name="guarded"):
        facts = job_facts(
            job=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            task=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            resource=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
        )
        blown = explode(message="on purpose").after(facts)
        settle(note=blown.output).ignore_upstream_failure()


@dsl.container_component
def count_words(text: str, words: OutputPath(int)):
    return dsl.ContainerSpec(
        image="busybox",
        command=["sh", "-c", 'printf "%s" "$0" | wc -w | tr -d " " > "$1"'],
        args=[text, words],
    )


@dsl.container_component
def first_line(source: Input[Dataset], line: Output[Dataset], prefix: str = ""):
    return dsl.ContainerSpec(
        image="busybox",
        command=[
            "sh",
            "-c",
            'mkdir -p "$(dirname "$1")" && printf "%s" "$2$(head -n 1 "$0")" > "$1"',
        ],
        args=[
            source.path,
            line.path,
            dsl.IfPresentPlaceholder(input_name="prefix", then=[prefix], else_=["none: "]),
        ],
    )


@dsl.pipeline(name="containers-and-importer")
def containers_and_importer(uri: str, text: str = "one two three") -> str:
    imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
    line = first_line(source=imported.output, prefix="> ")
    counted = count_words(text=text)
    text_of_line = read_text(data=line.outputs["line"])
    return shout(text=f"{text_of_line.output}|{counted.output}").output


PIPELINES = {
    "paths_and_metrics": (paths_and_metrics, {"count": 5, "label": "five"}),
    "pythonic_loop": (pythonic_loop, {"sizes": [2, 5, 1]}),
    "oneof_artifacts": (oneof_artifacts, {"heads": True}),
    "placeholders_and_failures": (placeholders_and_failures, {}),
    "containers_and_importer": (containers_and_importer, {"uri": __file__}),
}
"""Each pipeline with the arguments the parity test runs it with."""
