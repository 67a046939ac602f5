"""Distributed PyTorch training in a pipeline: digits in, a registered model out.

The pipeline loads scikit-learn's bundled digits (1,797 8x8 images, no download),
standardises and splits them, trains a small MLP on two Ray Train workers (DDP on CPU,
each worker reading its shard through a ``DistributedSampler``), scores it on the test
set (an ``Output[Metrics]`` and an ``Output[ClassificationMetrics]`` confusion matrix),
and, inside ``dsl.If(accuracy >= threshold)``, registers it in the MLflow model registry.

Run it (about a minute on 2 CPUs, most of it starting Ray and the training workers):

    python examples/digits_training.py

then look at it in the MLflow UI on raypipe's local store (``$RAYPIPE_HOME/mlflow.db``,
``~/.raypipe`` by default; the script prints the exact command):

    mlflow ui --backend-store-uri sqlite:///$HOME/.raypipe/mlflow.db

In experiment ``digits-training``, the nested ``train`` run holds the learning curve
(``loss`` by epoch, one point per ``raypipe.train.report``), the nested ``evaluate`` run
the accuracy and the confusion matrix, and **Models** the registered ``digits-mlp``.
``examples/lr_sweep_training.py`` sweeps the same training component over learning rates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import mlflow
import mlflow.pytorch
import numpy as np
import sklearn.datasets
import sklearn.metrics
import sklearn.model_selection
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import raypipe
import raypipe.tracking
import raypipe.train
from raypipe import dsl
from raypipe.dsl import ClassificationMetrics, Input, Metrics, Model, Output
from raypipe.runtime.config import RuntimeConfig

CLASSES = [str(digit) for digit in range(10)]
STATE_FILE = raypipe.train.STATE_FILE  # the file a checkpoint dict is saved to


def make_mlp(hidden: int = 64) -> nn.Module:
    """64 pixels in, 10 digit scores out."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def load_mlp(model: Model) -> nn.Module:
    """The trained MLP from a model artifact (the last checkpoint of the training step)."""
    state = torch.load(os.path.join(model.path, STATE_FILE))
    net = make_mlp(state["hidden"])
    net.load_state_dict(state["model"])
    return net.eval()


def raypipe_tracking_uri() -> str:
    """Where raypipe tracks runs: ``MLFLOW_TRACKING_URI``, else ``$RAYPIPE_HOME/mlflow.db``.

    ``run_digits`` reads it in the driver and passes it to the register step, so the
    model lands in the run's store even when Ray's workers started with another
    environment (a Ray that was already running, a cluster).
    """
    return RuntimeConfig.from_env().mlflow_tracking_uri


class Digits(NamedTuple):
    x: np.ndarray
    y: np.ndarray


class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dsl.component
def load_data() -> Digits:
    """The digits as float32 pixels (0-16) and int64 labels."""
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    return Digits(x=x.astype(np.float32), y=y.astype(np.int64))


@dsl.component
def preprocess(x: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> Split:
    """A stratified split, standardised with the training set's mean and spread."""
    x_train, x_test, y_train, y_test = sklearn.model_selection.train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6  # some pixels are always 0
    return Split((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)


def _mean_over_workers(value: float) -> float:
    """The mean of ``value`` over the training workers (each saw its own shard)."""
    tensor = torch.tensor([value])
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
        tensor /= torch.distributed.get_world_size()
    return float(tensor.item())


@dsl.component(train=dsl.TorchDistributed(num_workers=2, max_failures=1))
def train(
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    epochs: int,
    batch_size: int,
    model: Output[Model],
    hidden: int = 64,
) -> float:
    """Train the MLP with DDP on every worker; returns the last epoch's mean loss."""
    torch.manual_seed(0)  # every worker starts from the same weights
    net = raypipe.train.prepare_model(make_mlp(hidden))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    first_epoch = 0
    if (state := raypipe.train.load_state()) is not None:  # restarted after a failure
        raypipe.train.unwrap(net).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch = state["epoch"] + 1
    data = TensorDataset(torch.tensor(x), torch.tensor(y))  # copies: inputs are read-only
    loader = raypipe.train.prepare_data_loader(
        DataLoader(data, batch_size=batch_size, shuffle=True)  # sharded by rank
    )
    loss = float("nan")
    for epoch in range(first_epoch, epochs):
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)  # a new shuffle each epoch
        total, seen = 0.0, 0
        for features, labels in loader:
            optimizer.zero_grad()
            batch_loss = nn.functional.cross_entropy(net(features), labels)
            batch_loss.backward()
            optimizer.step()
            total, seen = total + batch_loss.item() * len(labels), seen + len(labels)
        loss = _mean_over_workers(total / seen)
        checkpoint = {
            "model": raypipe.train.unwrap(net).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "hidden": hidden,
        }
        raypipe.train.report({"loss": loss, "epoch": epoch}, checkpoint=checkpoint)
    return loss


@dsl.component
def evaluate(
    model: Input[Model],
    x: np.ndarray,
    y: np.ndarray,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> float:
    """Test accuracy, also written as metrics and a confusion matrix."""
    with torch.no_grad():
        predicted = load_mlp(model)(torch.tensor(x)).argmax(dim=1).numpy()
    accuracy = float((predicted == y).mean())
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("test_examples", len(y))
    matrix = sklearn.metrics.confusion_matrix(y, predicted, labels=range(len(CLASSES)))
    confusion.log_confusion_matrix(CLASSES, matrix.tolist())
    return accuracy


@dsl.component
def register_model(
    model: Input[Model],
    accuracy: float,
    model_name: str,
    tracking_uri: str,
    run_id: str,
) -> str:
    """Log the model with MLflow and register it as a new version of ``model_name``.

    ``tracking_uri`` is raypipe's store as the driver sees it (empty: as this worker sees
    it); the registration is filed under the pipeline's MLflow run when it is there.
    """
    tracking_uri = tracking_uri or raypipe_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    parent = raypipe.tracking.find_mlflow_run(run_id, tracking_uri=tracking_uri)
    tags = {"raypipe.run_id": run_id, "raypipe.task": "register-model"}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent.info.run_id
    experiment_id = parent.info.experiment_id if parent is not None else None
    with mlflow.start_run(experiment_id=experiment_id, run_name="register-model", tags=tags):
        mlflow.log_metric("accuracy", accuracy)
        logged = mlflow.pytorch.log_model(
            load_mlp(model),
            name="model",
            input_example=np.zeros((2, 64), dtype=np.float32),  # a batch of two images
            registered_model_name=model_name,
        )
    return f"models:/{model_name}/{logged.registered_model_version}"


@dsl.pipeline(name="digits-training", description="Train a digit classifier with DDP.")
def digits_training(
    lr: float = 0.01,
    epochs: int = 10,
    batch_size: int = 32,
    threshold: float = 0.9,
    model_name: str = "digits-mlp",
    tracking_uri: str = "",
) -> float:
    data = load_data()
    split = preprocess(x=data.outputs["x"], y=data.outputs["y"], test_size=0.2, seed=0)
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
    accuracy = scored.outputs["Output"]
    with dsl.If(accuracy >= threshold):
        register_model(
            model=trained.outputs["model"],
            accuracy=accuracy,
            model_name=model_name,
            tracking_uri=tracking_uri,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
    return accuracy


def run_digits(arguments: Mapping[str, Any] | None = None, **options: Any) -> raypipe.RunResult:
    """Run the pipeline (``options`` go to ``raypipe.run``); returns when MLflow has it all."""
    result = raypipe.run(
        digits_training,
        {"tracking_uri": raypipe_tracking_uri(), **(arguments or {})},
        raise_on_failure=True,
        **options,
    )
    raypipe.tracking.flush(timeout=60)  # MLflow is written in the background
    return result


def main() -> None:
    started = time.perf_counter()
    result = run_digits()
    seconds = time.perf_counter() - started
    registered = result.tasks["condition-1/register-model"].outputs.get("Output", "nothing")
    print(f"test accuracy: {result.output:.3f}; registered: {registered}")
    print(f"wall time: {seconds:.1f} s, starting Ray included")
    print(f"look at it: mlflow ui --backend-store-uri {raypipe_tracking_uri()}")


if __name__ == "__main__":
    main()
