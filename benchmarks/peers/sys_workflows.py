"""Ray Workflows (``ray.workflow``, Ray 2.47): the workloads as DAGs of ``.bind`` calls.

Runs in its own virtual environment (``peers/envs.py``): the library was removed after
Ray 2.47. ``workflow.run(dag)`` with a fresh workflow id per run, as its docs show;
every step's result is checkpointed to the workflow storage (a directory under the
worker's temporary directory, given to ``ray.init(storage=...)``), which is how Ray
Workflows makes runs durable: the 1 GiB array of w3 goes through that storage.

Example:
    >>> system = RayWorkflows(); system.setup("/tmp/x")  # doctest: +SKIP
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

__all__ = ["RayWorkflows"]


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
def load() -> Any:
    return wl.load_digits_data()


@ray.remote
def split(data: Any) -> Any:
    return wl.split_data(*data)


@ray.remote
def train(data: Any, params: dict[str, float]) -> Any:
    return wl.train_variant(data, params)


@ray.remote
def pick(*scored: Any) -> Any:
    return wl.pick_best(list(scored))


@ray.remote
def evaluate(model: Any, data: Any) -> dict[str, float]:
    return wl.evaluate(model, data)


@ray.remote
def save(
    model: Any, metrics: dict[str, float], model_path: str, metrics_path: str
) -> tuple[str, str]:
    wl.write_artifacts(model, metrics, model_path, metrics_path)
    return model_path, metrics_path


class RayWorkflows:
    name = "Ray Workflows"
    packages = ("ray", "numpy", "scikit-learn")

    def setup(self, workdir: str) -> None:
        self.workdir = workdir
        self.runs = 0
        start_local_ray(storage=os.path.join(workdir, "workflow-storage"))
        from ray import workflow

        self.workflow = workflow

    def teardown(self) -> None:
        ray.shutdown()

    def _run(self, dag: Any) -> Any:
        self.runs += 1
        return self.workflow.run(dag, workflow_id=f"bench-{os.getpid()}-{self.runs}")

    def build(self, workload: str, size: Size) -> Runnable:
        if workload == "w1":

            def chain() -> int:
                node = inc.bind(0)
                for _ in range(size.steps - 1):
                    node = inc.bind(node)
                return int(self._run(node))

            return Runnable(chain, lambda v: v)
        if workload == "w2":
            return Runnable(
                lambda: self._run(total.bind(*[inc.bind(i) for i in range(size.steps)])),
                lambda v: v,
            )
        if workload == "w3":
            return Runnable(
                lambda: self._run(reduce_sum.bind(produce.bind(size.elements))), lambda v: v
            )
        if workload == "w4":

            def digits() -> Any:
                out = os.path.join(self.workdir, f"w4-{self.runs + 1}")
                data = split.bind(load.bind())
                best = pick.bind(*[train.bind(data, p) for p in wl.variants()])
                metrics = evaluate.bind(best, data)
                return self._run(
                    save.bind(best, metrics, f"{out}/model.pkl", f"{out}/metrics.json")
                )

            return Runnable(digits, lambda paths: wl.check_w4_files(*paths))
        raise ValueError(
            f"Ray Workflows: no workload {workload!r} (w5 compares raypipe and raw Ray)"
        )
