"""The training examples run as documented: digits with 2 workers reaches the accuracy the
docs promise and registers its model in MLflow's registry."""

from __future__ import annotations

import os

import pytest
from mlflow import MlflowClient

pytest.importorskip("torch", reason="the training examples need raypipe[torch]")
pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn")

from examples.digits_training import run_digits  # noqa: E402 - after the skips


def test_digits_training_reaches_090_and_registers_its_model() -> None:
    result = run_digits({"epochs": 8, "model_name": "digits-test"}, quiet=True)

    assert result.ok, result.error
    assert result.output >= 0.90
    registered = result.tasks["condition-1/register-model"].outputs["Output"]
    assert registered.startswith("models:/digits-test/")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions("name = 'digits-test'")
    assert version.run_id  # the registered version points at the MLflow run that logged it
