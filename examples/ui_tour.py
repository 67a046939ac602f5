"""Fill a raypipe server with something to look at in its web UI.

Start a server in one terminal, then run this in another:

    raypipe server                      # http://127.0.0.1:8888 (with tokens: RAYPIPE_TOKEN)
    python examples/ui_tour.py          # or: python examples/ui_tour.py http://host:8888

It uploads the pipeline ``tour`` (a loop, a condition, an exit handler, Markdown and
Metrics artifacts) and starts three runs: two that succeed with different arguments (tick
both in the runs list and press **Compare**) and one that fails (open its red step to
read the error, the traceback and the log). Open http://127.0.0.1:8888/ while they run
to watch the graph change colour.
"""

from __future__ import annotations

import os
import sys

import raypipe
from raypipe import dsl
from raypipe.dsl import Markdown, Metrics, Output


@dsl.component
def train(lr: float, fail: bool) -> float:
    import time

    print(f"training with lr={lr}")
    time.sleep(1.0)
    if fail and lr > 0.05:
        raise ValueError(f"the loss diverged at lr={lr}")
    return round(1.0 - abs(lr - 0.03) * 5, 4)


@dsl.component
def pick_best(scores: list, summary: Output[Metrics], notes: Output[Markdown]) -> float:
    best = max(scores)
    summary.log_metric("best", best)
    summary.log_metric("trials", len(scores))
    with open(notes.path, "w") as f:
        f.write("# Sweep\n\n" + "\n".join(f"* trial {i}: {s}" for i, s in enumerate(scores)))
    return best


@dsl.component
def deploy(score: float) -> str:
    print(f"deploying a model scoring {score}")
    return "deployed"


@dsl.component
def notify(status: dsl.PipelineTaskFinalStatus) -> str:
    print(f"the sweep ended {status.state}")
    return status.state


@dsl.pipeline(name="tour", description="a small sweep for the web UI's tour")
def tour(threshold: float = 0.8, fail: bool = False) -> float:
    done = notify()
    with dsl.ExitHandler(exit_task=done):
        with dsl.ParallelFor([0.01, 0.03, 0.1], parallelism=2) as lr:
            trial = train(lr=lr, fail=fail)
        best = pick_best(scores=dsl.Collected(trial.output))
        with dsl.If(best.outputs["Output"] > threshold):
            deploy(score=best.outputs["Output"])
    return best.outputs["Output"]


def main(host: str) -> None:
    with raypipe.Client(host, token=os.environ.get("RAYPIPE_TOKEN")) as client:
        pipeline_id = client.get_pipeline_id("tour")
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline_from_pipeline_func(tour).pipeline_id
        for name, arguments in (
            ("tour strict", {"threshold": 0.99}),
            ("tour lenient", {"threshold": 0.5}),
            ("tour failing", {"fail": True}),
        ):
            run = client.run_pipeline(None, name, params=arguments, pipeline_id=pipeline_id)
            print(f"{name}: {host}/#/runs/{run.run_id}")


if __name__ == "__main__":
    default = os.environ.get("RAYPIPE_HOST", "http://127.0.0.1:8888")
    main(sys.argv[1] if len(sys.argv) > 1 else default)
