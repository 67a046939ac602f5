"""Pipelines for the KubeRay manifest tests: plain, GPU training, images, loops."""

from __future__ import annotations

from raypipe import dsl
from raypipe.dsl import Dataset, Input, Output

TRAINER = "ghcr.io/acme/trainer:1.4"
TOOLS = "ghcr.io/acme/tools:2.0"


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline(name="Addition Pipeline")
def plain(a: int, b: int = 2) -> int:
    return add(a=add(a=a, b=b).output, b=b).output


@dsl.component(train=dsl.TorchDistributed(num_workers=3, use_gpu=True, accelerator="H100"))
def fit(lr: float) -> float:
    return lr


@dsl.component(image=TRAINER, accelerator="A100", num_gpus=2, memory="20Gi", num_cpus=6)
def finetune(lr: float) -> float:
    return lr


@dsl.component(image=TOOLS, resources={"fast_disk": 1})
def prepare(rows: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write(str(rows))


@dsl.component(image=TOOLS, num_cpus=3)
def count(data: Input[Dataset]) -> int:
    with open(data.path) as f:
        return int(f.read())


@dsl.pipeline(name="gpu-training")
def gpu_training(lr: float = 0.1) -> float:
    return fit(lr=lr).output


@dsl.pipeline(name="images")
def images(rows: int = 3) -> int:
    data = prepare(rows=rows)
    return count(data=data.outputs["data"]).output


@dsl.pipeline(name="inner")
def inner(lr: float) -> float:
    return finetune(lr=lr).output


@dsl.pipeline(name="sweep")
def loops(lrs: list = [0.1, 0.01], threshold: float = 0.5) -> None:  # noqa: B006
    with dsl.ParallelFor(lrs) as lr:
        with dsl.ParallelFor([1, 2]):
            add(a=1, b=2)
        with dsl.If(threshold > 0.1):
            inner(lr=lr)
    fit(lr=0.1)
