"""How a training step runs: the step drives a Ray Train ``TorchTrainer`` over its function.

The step's Ray task (which reserves no CPU) builds the trainer from the component's
:class:`~raypipe.dsl.train.TorchDistributed` options and calls ``fit()``. Every worker
receives the step's inputs: parameters and artifacts as they are, in-memory objects
through the object store (each worker reads the same copy), and Ray Data datasets as the
worker's shard (``ray.train.get_dataset_shard``). Rank 0's return value becomes the step's
return value; the metrics rank 0 reported become the step's metrics (MLflow learning
curves); the last checkpoint (or what rank 0 wrote to ``model.path``) becomes the step's
``Output[Model]``.

Example (what ``@dsl.component(train=...)`` sets up; not called directly):
    >>> call = TrainCall(fit, TorchDistributed(num_workers=2), {"model": "Model"})  # doctest: +SKIP
    >>> call(data=array, epochs=3, model=output_artifact)                           # doctest: +SKIP
    0.12
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.step_context import get_uri
from raypipe.dsl.train import TorchDistributed

__all__ = ["HISTORY_FILE", "TrainCall", "TrainingStepError", "scaling_config"]

HISTORY_FILE = "raypipe-metrics.json"
"""Kept in each checkpoint: the metrics reported so far, so a restart loses none."""

_STEP_KEYS = ("epoch", "step")  # a metric with one of these names gives MLflow its step


class TrainingStepError(RuntimeError):
    """The training step could not produce what it declares (a model, say)."""


def scaling_config(options: TorchDistributed) -> dict[str, Any]:
    """The keyword arguments of Ray Train's ``ScalingConfig`` for ``options``.

    Example:
        >>> scaling_config(TorchDistributed(num_workers=2, use_gpu=True, accelerator="H100"))
        {'num_workers': 2, 'use_gpu': True, 'resources_per_worker': {'CPU': 1.0, 'GPU': 1.0}, \
'accelerator_type': 'H100'}
    """
    found: dict[str, Any] = {
        "num_workers": options.num_workers,
        "use_gpu": options.use_gpu,
        "resources_per_worker": options.worker_resources(),
    }
    if options.accelerator is not None:
        found["accelerator_type"] = options.accelerator
    return found


class TrainCall:
    """A training step's entrypoint: called with the step's inputs and output artifacts.

    ``model_outputs`` maps each ``Output[...]`` parameter of the function to its artifact
    class name; the trained model (last checkpoint) is written to it.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        options: TorchDistributed,
        model_outputs: Mapping[str, str],
    ) -> None:
        self.func, self.options, self.model_outputs = func, options, dict(model_outputs)
        self.__name__ = getattr(func, "__name__", "train")
        self.__qualname__ = getattr(func, "__qualname__", self.__name__)
        self.__module__ = getattr(func, "__module__", __name__)
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"TrainCall({self.__qualname__}, num_workers={self.options.num_workers})"

    def __call__(self, **kwargs: Any) -> Any:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        outputs = {name: kwargs.pop(name) for name in self.model_outputs}
        values, refs, datasets = _split_inputs(kwargs)
        storage = _storage_path()
        loop: Any = functools.partial(_run_worker, self.func)  # Ray Train calls loop(config)
        trainer = TorchTrainer(
            loop,
            train_loop_config={
                "values": values,
                "refs": {name: [ref] for name, ref in refs.items()},  # a list: not resolved
                "datasets": sorted(datasets),
                "outputs": {n: (self.model_outputs[n], a.uri) for n, a in outputs.items()},
            },
            scaling_config=ScalingConfig(**scaling_config(self.options)),
            torch_config=TorchConfig(backend=self.options.resolved_backend()),
            run_config=RunConfig(
                name="train",
                storage_path=storage,
                failure_config=FailureConfig(max_failures=self.options.max_failures),
                # the latest to resume from and to hand over; one more while it is written
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
            datasets=datasets or None,
        )
        result: Any = trainer.fit()  # Ray Train v2's Result (its stubs are v1's)
        returned = result.return_value or {}
        _log_history(returned.get("history") or [])
        for name, artifact in outputs.items():
            _fill_output(artifact, result.checkpoint, name)
        return returned.get("value")


def _split_inputs(
    kwargs: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Plain values, in-memory objects (put once in the object store), Ray datasets."""
    import ray

    try:
        from ray.data import Dataset as RayDataset
    except ImportError:  # Ray Data is not installed: no input can be one
        RayDataset = ()  # type: ignore[assignment,misc]  # noqa: N806
    values: dict[str, Any] = {}
    refs: dict[str, Any] = {}
    datasets: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, RayDataset):
            datasets[name] = value
        elif _is_plain(value):
            values[name] = value
        else:
            refs[name] = ray.put(value)
    return values, refs, datasets


def _is_plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None), Artifact)):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) < 1000 and all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return len(value) < 1000 and all(_is_plain(v) for v in value.values())
    return False


def _storage_path() -> str:
    """Where Ray Train keeps this step's checkpoints: next to the step's outputs."""
    output = get_uri()  # {root}/{pipeline}/{run}/{task}/Output
    return output.rpartition("/")[0] + "/.train"


def _run_worker(func: Callable[..., Any], config: dict[str, Any]) -> dict[str, Any]:
    """One training worker: the user's loop with the step's inputs; rank 0 returns."""
    import ray
    import ray.train

    from raypipe.train import context

    kwargs = dict(config["values"])
    for name, (ref,) in config["refs"].items():
        kwargs[name] = ray.get(ref)
    for name in config["datasets"]:
        kwargs[name] = ray.train.get_dataset_shard(name)
    folder = tempfile.mkdtemp(prefix="raypipe-model-")
    for name, (cls_name, uri) in config["outputs"].items():
        kwargs[name] = ARTIFACT_TYPES.get(cls_name, Artifact)(name=name, uri=uri, path=folder)
    rank = context().world_rank
    _HISTORY.clear()
    _HISTORY.extend(_restored_history())
    try:
        value = func(**kwargs)
        if config["outputs"]:
            # every worker reports (Ray Train's rule); rank 0 hands over what it wrote
            wrote = rank == 0 and bool(os.listdir(folder))
            checkpoint = ray.train.Checkpoint.from_directory(folder) if wrote else None
            ray.train.report({}, checkpoint=checkpoint)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"value": value, "history": list(_HISTORY)} if rank == 0 else {}


_HISTORY: list[dict[str, Any]] = []  # rank 0's reported metrics, in this worker process


def record_report(metrics: Mapping[str, Any], checkpoint_folder: str | None) -> None:
    """Remember a report for MLflow; a checkpoint keeps the history so far."""
    point = {k: v for k, v in metrics.items() if _is_number(v)}
    _HISTORY.append(point)
    if checkpoint_folder is not None:
        with open(os.path.join(checkpoint_folder, HISTORY_FILE), "w") as f:
            json.dump(_HISTORY, f)


def _restored_history() -> list[dict[str, Any]]:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as folder:
        path = os.path.join(folder, HISTORY_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            history: list[dict[str, Any]] = json.load(f)
    return history


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _log_history(history: list[dict[str, Any]]) -> None:
    """Each report of rank 0 as one MLflow step of the step's metrics."""
    from raypipe.runtime.metrics import log_metric

    for index, point in enumerate(history):
        step = next(
            (int(point[k]) for k in _STEP_KEYS if k in point and float(point[k]).is_integer()),
            index,
        )
        for name, value in point.items():
            if name not in _STEP_KEYS:
                log_metric(name, float(value), step=step)


def _fill_output(artifact: Artifact, checkpoint: Any, name: str) -> None:
    if checkpoint is None:
        raise TrainingStepError(
            f"output {name!r}: the training reported no checkpoint and rank 0 wrote nothing to "
            f"{name}.path; report one with raypipe.train.report(metrics, checkpoint=...)"
        )
    os.makedirs(artifact.path, exist_ok=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, artifact.path, dirs_exist_ok=True)
