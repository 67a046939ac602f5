"""A learning-rate sweep of a distributed training step, to compare in MLflow.

The digits pipeline's components (``examples/digits_training.py``) in a ``dsl.ParallelFor``
over learning rates: each trial trains the MLP on two Ray Train workers and scores it on
the test set, and the best trial is picked at the end. ``parallelism=1`` runs the trials
one at a time, so each gets both of a 2-CPU machine's cores; on a bigger cluster raise it.

Run it (about two minutes on 2 CPUs):

    python examples/lr_sweep_training.py

then open the MLflow UI on raypipe's store (the script prints the command). In experiment
``digits-lr-sweep``, expand the run (**+**): each trial's nested ``train`` run has its
``lr`` param and its ``loss`` curve by epoch, and each ``evaluate`` run its accuracy and
confusion matrix. Tick the three ``train`` runs and press **Compare** to overlay the
curves.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import raypipe
import raypipe.tracking
from raypipe import dsl

try:  # one definition of the components, shared with the digits example
    from examples.digits_training import (
        evaluate,
        load_data,
        preprocess,
        raypipe_tracking_uri,
        train,
    )
except ModuleNotFoundError as exc:  # run as a script: examples/ is on sys.path, not the root
    if exc.name != "examples":
        raise
    from digits_training import evaluate, load_data, preprocess, raypipe_tracking_uri, train

LEARNING_RATES: list[float] = [0.001, 0.01, 0.1]


class Best(NamedTuple):
    lr: float
    accuracy: float


@dsl.component
def pick_best(lrs: list[float], accuracies: list[float]) -> Best:
    """The learning rate with the highest test accuracy (the first, on a tie)."""
    best = max(range(len(accuracies)), key=accuracies.__getitem__)
    return Best(lr=lrs[best], accuracy=accuracies[best])


@dsl.pipeline(name="digits-lr-sweep", description="The digits MLP at several learning rates.")
def lr_sweep(lrs: list[float] = LEARNING_RATES, epochs: int = 10, batch_size: int = 32) -> Best:
    data = load_data()
    split = preprocess(x=data.outputs["x"], y=data.outputs["y"], test_size=0.2, seed=0)
    with dsl.ParallelFor(lrs, parallelism=1) as lr:  # one trial at a time: 2 workers each
        trained = train(
            x=split.outputs["x_train"],
            y=split.outputs["y_train"],
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
        )
        scored = evaluate(
            model=trained.outputs["model"], x=split.outputs["x_test"], y=split.outputs["y_test"]
        )
    best = pick_best(lrs=lrs, accuracies=dsl.Collected(scored.outputs["Output"]))
    return Best(lr=best.outputs["lr"], accuracy=best.outputs["accuracy"])


def run_lr_sweep(arguments: Mapping[str, Any] | None = None, **options: Any) -> raypipe.RunResult:
    """Run the sweep (``options`` go to ``raypipe.run``); returns when MLflow has it all."""
    result = raypipe.run(lr_sweep, dict(arguments or {}), raise_on_failure=True, **options)
    raypipe.tracking.flush(timeout=60)  # MLflow is written in the background
    return result


def main() -> None:
    started = time.perf_counter()
    result = run_lr_sweep()
    seconds = time.perf_counter() - started
    print(f"best: lr {result.outputs['lr']} with test accuracy {result.outputs['accuracy']:.3f}")
    print(f"wall time: {seconds:.1f} s, starting Ray included")
    print(f"compare the trials: mlflow ui --backend-store-uri {raypipe_tracking_uri()}")


if __name__ == "__main__":
    main()
