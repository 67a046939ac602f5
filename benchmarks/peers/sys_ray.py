"""Raw Ray: the workloads written by hand with ``@ray.remote`` tasks and ObjectRefs.

The floor for anything built on Ray: tasks chained through ObjectRefs, results fetched
with ``ray.get``. Files (w4's model and metrics) are written by the last task.

Example:
    >>> system = RawRay(); system.setup("/tmp/x")  # doctest: +SKIP
    >>> r = system.build("w1", Size(steps=100)); r.value(r.run())  # doctest: +SKIP
    100
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray

from peers import workloads as wl
from peers.system import Runnable, start_local_ray
from peers.workloads import Size

__all__ = ["RawRay"]


@ray.remote
def inc(x: int) -> int:
    return x + 1


@ray.remote
def total(*values: int) -> int:
    return sum(values)


@ray.remote
def produce(n: int) -> np.ndarray:
    return np.ones(n)


@ray.remote
def reduce_sum(a: np.ndarray) -> float:
    return float(a.sum())


@ray.remote
def load() -> tuple[np.ndarray, np.ndarray]:
    return wl.load_digits_data()


@ray.remote
def split(data: tuple[np.ndarray, np.ndarray]) -> wl.Split:
    return wl.split_data(*data)


@ray.remote
def train(data: wl.Split, params: dict[str, float]) -> tuple[float, Any]:
    return wl.train_variant(data, params)


@ray.remote
def pick(*scored: tuple[float, Any]) -> Any:
    return wl.pick_best(list(scored))


@ray.remote
def evaluate(model: Any, data: wl.Split) -> dict[str, float]:
    return wl.evaluate(model, data)


@ray.remote
def save(model: Any, metrics: dict[str, float], model_path: str, metrics_path: str) -> str:
    wl.write_artifacts(model, metrics, model_path, metrics_path)
    return metrics_path


class RawRay:
    name = "raw Ray"
    packages = ("ray", "numpy", "scikit-learn")

    def setup(self, workdir: str) -> None:
        self.workdir = workdir
        self.runs = 0
        start_local_ray()

    def teardown(self) -> None:
        ray.shutdown()

    def build(self, workload: str, size: Size) -> Runnable:
        if workload == "w1":

            def chain() -> int:
                ref = inc.remote(0)
                for _ in range(size.steps - 1):
                    ref = inc.remote(ref)
                return int(ray.get(ref))

            return Runnable(chain, lambda v: v)
        if workload == "w2":
            return Runnable(
                lambda: ray.get(total.remote(*[inc.remote(i) for i in range(size.steps)])),
                lambda v: v,
            )
        if workload == "w3":
            return Runnable(
                lambda: ray.get(reduce_sum.remote(produce.remote(size.elements))), lambda v: v
            )
        if workload == "w4":
            return Runnable(self._digits, lambda paths: wl.check_w4_files(*paths))
        if workload == "w5":

            def chains() -> list[int]:
                ends = []
                for j in range(size.width):
                    ref = inc.remote(j)
                    for _ in range(size.steps - 1):
                        ref = inc.remote(ref)
                    ends.append(ref)
                return list(ray.get(ends))

            return Runnable(chains, lambda v: v)
        raise ValueError(f"raw Ray: unknown workload {workload!r}")

    def _digits(self) -> tuple[str, str]:
        self.runs += 1
        out = os.path.join(self.workdir, f"w4-{self.runs}")
        data = split.remote(load.remote())
        scored = [train.remote(data, params) for params in wl.variants()]
        best = pick.remote(*scored)
        metrics = evaluate.remote(best, data)
        model_path, metrics_path = f"{out}/model.pkl", f"{out}/metrics.json"
        ray.get(save.remote(best, metrics, model_path, metrics_path))
        return model_path, metrics_path
