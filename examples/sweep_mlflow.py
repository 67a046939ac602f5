"""A two-run learning-rate sweep logged to MLflow, to compare in the MLflow UI.

Run it with ``python examples/sweep_mlflow.py`` (a few seconds on a CPU), then open the
UI on raypipe's local MLflow store and compare the two runs of experiment ``lr-sweep``:

    mlflow ui --backend-store-uri sqlite:///$HOME/.raypipe/mlflow.db

Each run's nested ``fit`` run holds the learning curve (metric ``loss`` by epoch), the
``curve`` metrics and the ``notes`` Markdown page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import raypipe
import raypipe.tracking
from raypipe import dsl
from raypipe.dsl import Markdown, Metrics, Output


@dsl.component
def fit(lr: float, epochs: int, curve: Output[Metrics], notes: Output[Markdown]) -> float:
    """Gradient descent on (w - 3)² from w = 0: a learning curve in a few microseconds."""
    w = 0.0
    for epoch in range(epochs):
        w -= lr * 2 * (w - 3)
        raypipe.log_metric("loss", (w - 3) ** 2, step=epoch)  # one point per epoch
    loss = (w - 3) ** 2
    curve.log_metric("final_loss", loss)
    with open(notes.path, "w") as f:
        f.write(f"# lr = {lr}\n\nw = {w:.4f} after {epochs} epochs; loss {loss:.3g}\n")
    return loss


@dsl.component
def score(loss: float) -> float:
    return round(1 / (1 + loss), 6)


@dsl.pipeline(name="lr-sweep", description="Fit a toy model and score it.")
def lr_sweep(lr: float = 0.1, epochs: int = 20) -> float:
    fitted = fit(lr=lr, epochs=epochs)
    return score(loss=fitted.outputs["Output"]).output


def run_sweep(
    lrs: Sequence[float] = (0.05, 0.3), *, experiment: str = "lr-sweep", **options: Any
) -> list[raypipe.RunResult]:
    """One run per learning rate, all in one MLflow experiment; returns when MLflow has them.

    ``options`` go to ``raypipe.run`` (``address=``, ``artifact_root=``, ...).
    """
    results = [
        raypipe.run(
            lr_sweep,
            {"lr": lr},
            run_name=f"lr-{lr}",
            experiment=experiment,
            raise_on_failure=True,
            **options,
        )
        for lr in lrs
    ]
    raypipe.tracking.flush(timeout=60)  # MLflow is written in the background
    return results


def main() -> None:
    from raypipe.runtime.config import RuntimeConfig

    for result in run_sweep():
        print(f"{result.run_name}: score {result.output}")
    uri = RuntimeConfig.from_env().mlflow_tracking_uri
    print(f"compare them: mlflow ui --backend-store-uri {uri}  (experiment 'lr-sweep')")


if __name__ == "__main__":
    main()
