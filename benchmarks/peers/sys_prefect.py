"""Prefect 3: the workloads as ``@flow``s of ``@task``s, its defaults otherwise.

The default task runner (a thread pool in the flow's process) and in-process results
(nothing persisted: Prefect's default). Sequential steps call the task, as Prefect's
docs do; fan-outs use ``task.map`` and pass the futures on. Prefect records every run in
its API: with nothing configured, an ephemeral server on SQLite under ``PREFECT_HOME``
(a temporary directory here), started by the first flow run, which is a warm-up.

Example:
    >>> system = Prefect(); system.setup("/tmp/x")  # doctest: +SKIP
    >>> r = system.build("w1", Size(steps=100)); r.value(r.run())  # doctest: +SKIP
    100
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from peers import workloads as wl
from peers.system import Runnable
from peers.workloads import Size

__all__ = ["Prefect"]


class Prefect:
    name = "Prefect"
    packages = ("prefect", "numpy", "scikit-learn")

    def setup(self, workdir: str) -> None:
        self.workdir = workdir
        self.runs = 0
        os.environ["PREFECT_HOME"] = os.path.join(workdir, "prefect-home")
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        from prefect import flow, task, unmapped

        @task
        def inc(x: int) -> int:
            return x + 1

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        @task
        def produce(n: int) -> np.ndarray:
            return np.ones(n)

        @task
        def reduce_sum(a: np.ndarray) -> float:
            return float(a.sum())

        @task
        def load() -> tuple[np.ndarray, np.ndarray]:
            return wl.load_digits_data()

        @task
        def split(data: tuple[np.ndarray, np.ndarray]) -> wl.Split:
            return wl.split_data(*data)

        @task
        def train(data: wl.Split, params: dict[str, float]) -> tuple[float, Any]:
            return wl.train_variant(data, params)

        @task
        def pick(scored: list[tuple[float, Any]]) -> Any:
            return wl.pick_best(scored)

        @task
        def evaluate(model: Any, data: wl.Split) -> dict[str, float]:
            return wl.evaluate(model, data)

        @task
        def save(model: Any, metrics: dict[str, float], model_path: str, metrics_path: str) -> None:
            wl.write_artifacts(model, metrics, model_path, metrics_path)

        @flow
        def chain(steps: int) -> int:
            value = 0
            for _ in range(steps):
                value = inc(value)
            return value

        @flow
        def fanout(steps: int) -> int:
            return total(inc.map(range(steps)))

        @flow
        def handoff(n: int) -> float:
            return reduce_sum(produce(n))

        @flow
        def digits(out: str) -> tuple[str, str]:
            data = split(load())
            scored = train.map(unmapped(data), wl.variants())
            best = pick(scored)
            metrics = evaluate(best, data)
            paths = (f"{out}/model.pkl", f"{out}/metrics.json")
            save(best, metrics, *paths)
            return paths

        self.flows = {"w1": chain, "w2": fanout, "w3": handoff, "w4": digits}

    def teardown(self) -> None:
        pass  # the ephemeral server ends with the process

    def build(self, workload: str, size: Size) -> Runnable:
        flows = self.flows
        if workload == "w1":
            return Runnable(lambda: flows["w1"](size.steps), lambda v: v)
        if workload == "w2":
            return Runnable(lambda: flows["w2"](size.steps), lambda v: v)
        if workload == "w3":
            return Runnable(lambda: flows["w3"](size.elements), lambda v: v)
        if workload == "w4":

            def digits() -> tuple[str, str]:
                self.runs += 1
                return flows["w4"](os.path.join(self.workdir, f"w4-{self.runs}"))  # type: ignore[no-any-return]

            return Runnable(digits, lambda paths: wl.check_w4_files(*paths))
        raise ValueError(f"Prefect: no workload {workload!r} (w5 compares raypipe and raw Ray)")
