"""The five workloads every system runs, their sizes, the shared ML code, and result checks.

Imported by every system's module, also inside the Ray 2.47 environment of Ray Workflows,
so it needs only numpy and scikit-learn. A system's module builds each workload from
these sizes; :func:`check` verifies what a run returned (untimed), the same way for all.

Example:
    >>> size = Size(steps=100)
    >>> check("w1", 100, size)
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "C_VALUES",
    "GAMMA_VALUES",
    "WORKLOADS",
    "Size",
    "Split",
    "check",
    "check_w4_files",
    "evaluate",
    "load_digits_data",
    "pick_best",
    "split_data",
    "train_variant",
    "variants",
    "write_artifacts",
]

# name -> one line for the report
WORKLOADS: dict[str, str] = {
    "w1": "chain of 100 trivial steps (x + 1)",
    "w2": "fan-out of 1,000 trivial steps, fan-in that sums them",
    "w3": "1 GiB numpy array made by one step, summed by the next",
    "w4": "digits: load, split, 16 SVCs in parallel, pick best, evaluate, write model + metrics",
    "w5": "10,000 steps: fan-out of 100 x chains of 100",
}


@dataclass(frozen=True)
class Size:
    """How big one workload is: steps (w1, w2), elements (w3), width x steps (w5)."""

    steps: int = 0
    width: int = 0
    elements: int = 0

    def step_count(self, workload: str) -> int:
        """Steps one run executes (for per-step figures)."""
        if workload == "w1":
            return self.steps
        if workload == "w2":
            return self.steps + 1
        if workload == "w3":
            return 2
        if workload == "w4":
            return 5 + len(variants())
        return self.width * self.steps


def full_size(workload: str) -> Size:
    """The size the issue asks for."""
    return {
        "w1": Size(steps=100),
        "w2": Size(steps=1000),
        "w3": Size(elements=2**27),  # float64: 1 GiB
        "w4": Size(),
        "w5": Size(width=100, steps=100),
    }[workload]


def check(workload: str, value: Any, size: Size) -> None:
    """Raise AssertionError if ``value`` is not what ``workload`` of ``size`` must return.

    w1: the chain's last value; w2: the sum; w3: the array's sum; w4: the test accuracy;
    w5: the list of chain ends.
    """
    if workload == "w1":
        expected: Any = size.steps
    elif workload == "w2":
        expected = sum(range(1, size.steps + 1))
    elif workload == "w3":
        expected = float(size.elements)
    elif workload == "w4":
        if not 0.9 <= float(value) <= 1.0:
            raise AssertionError(f"w4: test accuracy {value!r} is not between 0.9 and 1")
        return
    else:
        expected = [j + size.steps for j in range(size.width)]
        value = list(value)
    if value != expected:
        raise AssertionError(f"{workload}: expected {expected!r:.80}, got {value!r:.80}")


# ----------------------------------------------------------------------------- w4


C_VALUES = (0.3, 1.0, 3.0, 10.0)
GAMMA_VALUES = (0.0003, 0.001, 0.003, 0.01)


def variants() -> list[dict[str, float]]:
    """The 16 hyperparameter variants: SVC's C x gamma."""
    return [{"C": c, "gamma": g} for c in C_VALUES for g in GAMMA_VALUES]


@dataclass(frozen=True)
class Split:
    """Train, validation and test parts of the digits (60 / 20 / 20, stratified)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1,797 8x8 images), scaled to 0..1."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data / 16.0, digits.target


def split_data(x: np.ndarray, y: np.ndarray) -> Split:
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.25, random_state=0, stratify=y_rest
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)


def train_variant(split: Split, params: dict[str, float]) -> tuple[float, Any]:
    """Fit one SVC on the training part; (validation accuracy, model)."""
    from sklearn.svm import SVC

    model = SVC(C=params["C"], gamma=params["gamma"]).fit(split.x_train, split.y_train)
    return float(model.score(split.x_val, split.y_val)), model


def pick_best(scored: list[tuple[float, Any]]) -> Any:
    """The model of the highest validation accuracy (the first of equals)."""
    return max(scored, key=lambda item: item[0])[1]


def evaluate(model: Any, split: Split) -> dict[str, float]:
    return {"test_accuracy": float(model.score(split.x_test, split.y_test))}


def write_artifacts(
    model: Any, metrics: dict[str, float], model_path: str, metrics_path: str
) -> None:
    """The model as a pickle and the metrics as JSON, at the paths given."""
    for path in (model_path, metrics_path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(model_path, "wb") as f:
        pickle.dump(model, f)
    with open(metrics_path, "w") as f:
        json.dump(metrics, f)


def check_w4_files(model_path: str, metrics_path: str) -> float:
    """Read back what w4 wrote; its test accuracy."""
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    if not hasattr(model, "predict"):
        raise AssertionError(f"w4: {model_path} holds no model")
    with open(metrics_path) as f:
        return float(json.load(f)["test_accuracy"])
