"""raypipe: the workloads as ``@dsl.pipeline``s run by ``raypipe.run``.

Two configurations: its defaults with tracking on (MLflow's local store and lineage
files, written as every run does) and tracking off; both with ``cache=False`` (a warm
re-run would otherwise be all cache hits, which no peer does by default) and
``quiet=True`` (no progress display, as no peer shows one here). Fan-outs over data are
``dsl.ParallelFor`` with ``dsl.Collected``; in-memory values (the array, the data split,
fitted models) travel as objects through Ray's object store; w4's model and metrics are
``Output[Model]`` and ``Output[Metrics]`` artifacts under the artifact root.

Example:
    >>> system = Raypipe(tracking=False); system.setup("/tmp/x")  # doctest: +SKIP
    >>> r = system.build("w1", Size(steps=100)); r.value(r.run())  # doctest: +SKIP
    100
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

import raypipe
from peers import workloads as wl
from peers.system import Runnable, start_local_ray
from peers.workloads import Size
from raypipe import dsl
from raypipe.dsl import Metrics, Model, Output
from raypipe.runtime.cluster import ray_defaults

__all__ = ["Raypipe"]


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.component
def total(values: list) -> int:
    return sum(values)


@dsl.component
def produce(n: int) -> np.ndarray:
    return np.ones(n)


@dsl.component
def reduce_sum(a: np.ndarray) -> float:
    return float(a.sum())


@dsl.component
def load() -> Any:
    return wl.load_digits_data()


@dsl.component
def split(data: Any) -> Any:
    return wl.split_data(*data)


@dsl.component
def train(data: Any, params: dict) -> Any:
    return wl.train_variant(data, params)


@dsl.component
def pick(scored: list) -> Any:
    return wl.pick_best(scored)


@dsl.component
def evaluate(model: Any, data: Any) -> dict:
    return wl.evaluate(model, data)


@dsl.component
def save(best: Any, scores: dict, model: Output[Model], metrics: Output[Metrics]) -> float:
    with open(model.path, "wb") as f:
        pickle.dump(best, f)
    for name, value in scores.items():
        metrics.log_metric(name, value)
    return float(scores["test_accuracy"])


def chain_pipeline(steps: int) -> Any:
    @dsl.pipeline(name="w1-chain")
    def chain() -> int:
        value: Any = 0
        for _ in range(steps):
            value = inc(x=value).output
        return value  # type: ignore[no-any-return]

    return chain


@dsl.pipeline(name="w2-fanout")
def fanout(items: list) -> int:
    with dsl.ParallelFor(items) as item:
        step = inc(x=item)
    return total(values=dsl.Collected(step.output)).output  # type: ignore[return-value]


@dsl.pipeline(name="w3-handoff")
def handoff(n: int) -> float:
    return reduce_sum(a=produce(n=n).output).output  # type: ignore[return-value]


@dsl.pipeline(name="w4-digits")
def digits(variants: list) -> float:
    data = split(data=load().output)
    with dsl.ParallelFor(variants) as params:
        fitted = train(data=data.output, params=params)
    best = pick(scored=dsl.Collected(fitted.output))
    scores = evaluate(model=best.output, data=data.output)
    return save(best=best.output, scores=scores.output).outputs["Output"]  # type: ignore[return-value]


def chains_pipeline(steps: int) -> Any:
    @dsl.pipeline(name="w5-chains")
    def chains(starts: list) -> list:
        with dsl.ParallelFor(starts) as start:
            value: Any = start
            for _ in range(steps):
                last = inc(x=value)
                value = last.output
        return dsl.Collected(last.output)  # type: ignore[return-value]

    return chains


class Raypipe:
    packages = ("raypipe", "ray", "mlflow", "duckdb", "numpy", "scikit-learn")

    def __init__(self, *, tracking: bool) -> None:
        self.tracking = tracking
        self.name = "raypipe" if tracking else "raypipe (tracking off)"

    def setup(self, workdir: str) -> None:
        os.environ["RAYPIPE_HOME"] = os.path.join(workdir, "raypipe-home")
        os.environ.pop("RAYPIPE_ARTIFACT_ROOT", None)
        os.environ["RAYPIPE_QUIET"] = "1"
        with ray_defaults():  # as raypipe.run does when it starts Ray itself
            start_local_ray()

    def teardown(self) -> None:
        import ray

        if self.tracking:
            import raypipe.tracking

            raypipe.tracking.flush(timeout=120)
        ray.shutdown()

    def _run(self, pipeline: Any, arguments: dict[str, Any]) -> raypipe.RunResult:
        result = raypipe.run(pipeline, arguments, cache=False, tracking=self.tracking, quiet=True)
        if result.status != "SUCCEEDED":
            raise RuntimeError(f"raypipe run of {workload_name(pipeline)}: {result.error}")
        return result

    def build(self, workload: str, size: Size) -> Runnable:
        output = lambda result: result.output  # noqa: E731
        if workload == "w1":
            pipeline = chain_pipeline(size.steps)
            return Runnable(lambda: self._run(pipeline, {}), output)
        if workload == "w2":
            items = list(range(size.steps))
            return Runnable(lambda: self._run(fanout, {"items": items}), output)
        if workload == "w3":
            return Runnable(lambda: self._run(handoff, {"n": size.elements}), output)
        if workload == "w4":
            return Runnable(lambda: self._run(digits, {"variants": wl.variants()}), _w4_value)
        if workload == "w5":
            pipeline = chains_pipeline(size.steps)
            starts = list(range(size.width))
            return Runnable(lambda: self._run(pipeline, {"starts": starts}), output)
        raise ValueError(f"raypipe: unknown workload {workload!r}")


def workload_name(pipeline: Any) -> str:
    return str(getattr(pipeline, "name", pipeline))


def _w4_value(result: raypipe.RunResult) -> float:
    """Read the model artifact back; the test accuracy from the metrics artifact."""
    saved = next(t for name, t in result.tasks.items() if name.startswith("save"))
    with open(saved.outputs["model"].uri.removeprefix("file://"), "rb") as f:
        if not hasattr(pickle.load(f), "predict"):
            raise AssertionError("w4: the model artifact holds no model")
    metrics = saved.outputs["metrics"]
    return float(metrics.metadata.get("test_accuracy", result.output))
