"""Kubeflow Pipelines' local runner: the workloads as ``kfp.dsl`` pipelines on ``kfp.local``.

``kfp.local.init(runner=SubprocessRunner(use_venv=False))``: every step runs the
compiled component command in a new Python process, in this environment (its ``pip
install kfp`` finds kfp installed). Steps run one after another. Parameters pass as JSON,
data as artifact files under the pipeline root: the w3 array is ``np.save``d by one step
and ``np.load``ed by the next; w4's data split and models are files. Fan-outs are
``dsl.ParallelFor`` with ``dsl.Collected``. The suite starts one process per workload
and runs it once, without a warm-up: kfp.local carries state from one pipeline run into
the next in a process (see ``benchmarks/bench_kfp.py``), and each step is a new process
anyway. The workers' ``PYTHONPATH`` gets ``benchmarks/`` so steps can import the shared
workload code (``peers.workloads``).

Example:
    >>> system = KfpLocal(); system.setup("/tmp/x")  # doctest: +SKIP
    >>> r = system.build("w1", Size(steps=10)); r.value(r.run())  # doctest: +SKIP
    10
"""

# no "from __future__ import annotations": kfp reads the components' annotations as types

import os
from pathlib import Path
from typing import Any

from peers.system import Runnable
from peers.workloads import Size

__all__ = ["KfpLocal"]

BENCHMARKS = str(Path(__file__).resolve().parent.parent)


def _components() -> dict[str, Any]:
    """The kfp components (defined on first use: importing kfp takes a second)."""
    from typing import List  # noqa: UP035  kfp reads typing.List annotations

    from kfp import dsl
    from kfp.dsl import Dataset, Input, Metrics, Model, Output

    @dsl.component
    def inc(x: int) -> int:
        return x + 1

    @dsl.component
    def total(values: List[int]) -> int:  # noqa: UP006
        return int(sum(values))  # kfp.local hands collected ints over as floats

    @dsl.component
    def produce(n: int, array: Output[Dataset]) -> None:
        import numpy as np

        with open(array.path, "wb") as f:
            np.save(f, np.ones(n))

    @dsl.component
    def reduce_sum(array: Input[Dataset]) -> float:
        import numpy as np

        with open(array.path, "rb") as f:
            return float(np.load(f).sum())

    @dsl.component
    def load_split(data: Output[Dataset]) -> None:
        import pickle

        from peers import workloads as wl

        with open(data.path, "wb") as f:
            pickle.dump(wl.split_data(*wl.load_digits_data()), f)

    @dsl.component
    def train(data: Input[Dataset], params: dict, model: Output[Model]) -> float:
        import pickle

        from peers import workloads as wl

        with open(data.path, "rb") as f:
            score, fitted = wl.train_variant(pickle.load(f), params)
        with open(model.path, "wb") as f:
            pickle.dump(fitted, f)
        return score

    @dsl.component
    def pick(models: Input[List[Model]], scores: List[float], best: Output[Model]) -> None:  # noqa: UP006
        import shutil

        index = max(range(len(scores)), key=lambda i: scores[i])
        shutil.copyfile(models[index].path, best.path)

    @dsl.component
    def evaluate(model: Input[Model], data: Input[Dataset], metrics: Output[Metrics]) -> float:
        import pickle

        from peers import workloads as wl

        with open(model.path, "rb") as f:
            fitted = pickle.load(f)
        with open(data.path, "rb") as f:
            scores = wl.evaluate(fitted, pickle.load(f))
        for name, value in scores.items():
            metrics.log_metric(name, value)
        return scores["test_accuracy"]

    return locals()


class KfpLocal:
    name = "kfp.local"
    packages = ("kfp", "numpy", "scikit-learn")

    def setup(self, workdir: str) -> None:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (BENCHMARKS, os.environ.get("PYTHONPATH")) if p
        )
        # what kfp.local imports on first use, imported here, untimed (as in bench_kfp.py)
        import kfp.local.orchestrator.dag_orchestrator  # noqa: F401
        import kfp.local.subprocess_task_handler  # noqa: F401
        from kfp import local

        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=os.path.join(workdir, "kfp-outputs"),
            raise_on_error=True,
        )
        self.c = _components()

    def teardown(self) -> None:
        pass

    def build(self, workload: str, size: Size) -> Runnable:
        from kfp import dsl

        c = self.c
        if workload == "w1":

            @dsl.pipeline(name="w1-chain")
            def chain() -> int:
                value: Any = 0
                for _ in range(size.steps):
                    value = c["inc"](x=value).output
                return value  # type: ignore[no-any-return]

            return Runnable(lambda: chain().output, lambda v: v)
        if workload == "w2":

            @dsl.pipeline(name="w2-fanout")
            def fanout(items: list) -> int:
                with dsl.ParallelFor(items) as item:
                    step = c["inc"](x=item)
                return c["total"](values=dsl.Collected(step.output)).output  # type: ignore[no-any-return]

            items = list(range(size.steps))
            return Runnable(lambda: fanout(items=items).output, lambda v: v)
        if workload == "w3":

            @dsl.pipeline(name="w3-handoff")
            def handoff(n: int) -> float:
                return c["reduce_sum"](array=c["produce"](n=n).outputs["array"]).output  # type: ignore[no-any-return]

            return Runnable(lambda: handoff(n=size.elements).output, lambda v: v)
        if workload == "w4":
            from peers import workloads as wl

            @dsl.pipeline(name="w4-digits")
            def digits(variants: list) -> float:
                data = c["load_split"]().outputs["data"]
                with dsl.ParallelFor(variants) as params:
                    fitted = c["train"](data=data, params=params)
                best = c["pick"](
                    models=dsl.Collected(fitted.outputs["model"]),
                    scores=dsl.Collected(fitted.outputs["Output"]),
                )
                return c["evaluate"](model=best.outputs["best"], data=data).outputs["Output"]  # type: ignore[no-any-return]

            return Runnable(lambda: digits(variants=wl.variants()).output, lambda v: v)
        raise ValueError(f"kfp.local: no workload {workload!r} (w5 compares raypipe and raw Ray)")
