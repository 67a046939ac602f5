"""Dagster: the workloads as ``@job``s of ``@op``s run with ``execute_in_process``.

The in-process executor (every op in the calling process, one after another) with its
in-memory IO manager, on an ephemeral instance: Dagster's way to run a job locally
without a deployment. Its console logger is set to WARNING (no line per event; the
events are still stored in the instance). Fan-outs over data use ``DynamicOut`` with ``.map`` and
``.collect()``; the chain is 100 aliased invocations of one op.

Example:
    >>> system = Dagster(); system.setup("/tmp/x")  # doctest: +SKIP
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

__all__ = ["Dagster"]


class Dagster:
    name = "Dagster"
    packages = ("dagster", "numpy", "scikit-learn")

    def setup(self, workdir: str) -> None:
        self.workdir = workdir
        self.runs = 0
        os.environ["DAGSTER_HOME"] = os.path.join(workdir, "dagster-home")
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        import dagster as dg

        self.dg = dg
        self.instance = dg.DagsterInstance.ephemeral()

    def teardown(self) -> None:
        self.instance.dispose()

    def _execute(self, job: Any, config: dict[str, Any] | None = None) -> Any:
        # the console logger at WARNING: no progress lines, as for every system here
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = job.execute_in_process(
            instance=self.instance, run_config={**quiet, **(config or {})}
        )
        if not result.success:
            raise RuntimeError(f"Dagster job {job.name} failed")
        return result.output_for_node(self._last[job.name])

    def build(self, workload: str, size: Size) -> Runnable:
        dg = self.dg
        self._last: dict[str, str] = getattr(self, "_last", {})

        @dg.op
        def first() -> int:
            return 1

        @dg.op
        def inc(x: int) -> int:
            return x + 1

        if workload == "w1":

            @dg.job(name="w1_chain")
            def chain() -> None:
                value = first()
                for i in range(1, size.steps):
                    value = inc.alias(f"inc_{i}")(value)

            self._last["w1_chain"] = f"inc_{size.steps - 1}"
            return Runnable(lambda: self._execute(chain), lambda v: v)
        if workload == "w2":

            @dg.op(out=dg.DynamicOut(int))
            def items() -> Any:
                for i in range(size.steps):
                    yield dg.DynamicOutput(i, mapping_key=str(i))

            @dg.op
            def total(values: list[int]) -> int:
                return sum(values)

            @dg.job(name="w2_fanout")
            def fanout() -> None:
                total(items().map(inc).collect())

            self._last["w2_fanout"] = "total"
            return Runnable(lambda: self._execute(fanout), lambda v: v)
        if workload == "w3":

            @dg.op
            def produce() -> np.ndarray:
                return np.ones(size.elements)

            @dg.op
            def reduce_sum(a: np.ndarray) -> float:
                return float(a.sum())

            @dg.job(name="w3_handoff")
            def handoff() -> None:
                reduce_sum(produce())

            self._last["w3_handoff"] = "reduce_sum"
            return Runnable(lambda: self._execute(handoff), lambda v: v)
        if workload == "w4":
            return self._digits()
        raise ValueError(f"Dagster: no workload {workload!r} (w5 compares raypipe and raw Ray)")

    def _digits(self) -> Runnable:
        dg = self.dg

        @dg.op
        def load() -> Any:
            return wl.load_digits_data()

        @dg.op
        def split(data: Any) -> Any:
            return wl.split_data(*data)

        @dg.op(out=dg.DynamicOut())
        def variants() -> Any:
            for i, params in enumerate(wl.variants()):
                yield dg.DynamicOutput(params, mapping_key=f"v{i}")

        @dg.op
        def train(params: dict, data: Any) -> Any:
            return wl.train_variant(data, params)

        @dg.op
        def pick(scored: list) -> Any:
            return wl.pick_best(scored)

        @dg.op
        def evaluate(model: Any, data: Any) -> dict:
            return wl.evaluate(model, data)

        @dg.op(config_schema={"out": str})
        def save(context, model: Any, metrics: dict) -> tuple:  # type: ignore[no-untyped-def]
            out = context.op_config["out"]
            paths = (f"{out}/model.pkl", f"{out}/metrics.json")
            wl.write_artifacts(model, metrics, *paths)
            return paths

        @dg.job(name="w4_digits")
        def digits() -> None:
            data = split(load())
            scored = variants().map(lambda params: train(params, data)).collect()
            best = pick(scored)
            save(best, evaluate(best, data))

        self._last["w4_digits"] = "save"

        def run() -> Any:
            self.runs += 1
            out = os.path.join(self.workdir, f"w4-{self.runs}")
            return self._execute(digits, {"ops": {"save": {"config": {"out": out}}}})

        return Runnable(run, lambda paths: wl.check_w4_files(*paths))
