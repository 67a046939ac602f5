"""How a training step runs: the step drives a Ray Train ``TorchTrainer`` over its function.

The step's Ray task (which reserves no CPU) builds the trainer from the component's
:class:`~raypipe.dsl.train.TorchDistributed` options and calls ``fit()``. Every worker
receives the step's inputs: parameters and artifacts as they are, in-memory objects
through the object store (each worker reads the same copy), and Ray Data datasets as the
worker's shard (``ray.train.get_dataset_shard``). Rank 0's return value becomes the step's
return value; the metrics rank 0 reports become the step's metrics (MLflow learning
curves), published as they are reported (:mod:`raypipe.runtime.live_metrics`) so the
curves grow while the step runs; the last checkpoint (or what rank 0 wrote to
``model.path``, with the metadata it set) becomes the step's ``Output[Model]``.

Example (what ``@dsl.component(train=...)`` sets up; not called directly):
    >>> call = TrainCall(fit, TorchDistributed(num_workers=2), {"model": "Model"})  # doctest: +SKIP
    >>> call(data=array, epochs=3, model=output_artifact)                           # doctest: +SKIP
    0.12
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.step_context import get_uri
from raypipe.dsl.train import TorchDistributed

__all__ = ["HISTORY_FILE", "TrainCall", "TrainingStepError", "scaling_config"]

HISTORY_FILE = "raypipe-metrics.json"
"""Kept in each checkpoint: the metrics reported so far, so a restart loses none."""

_STEP_KEYS = ("epoch", "step")  # a metric with one of these names gives MLflow its step
_OUTPUTS = "outputs"  # under the trainer's storage: the files rank 0 wrote to Output[...].path

# Ray Train's controller takes one report per poll of its workers, every 2 s by default:
# a step reporting every epoch would wait up to 2 s per epoch. The step polls faster
# unless the environment says otherwise (Ray Train reads the variable in fit()'s process).
_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
_POLL_S = "0.2"


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
        from ray.train import (
            CheckpointConfig,
            FailureConfig,
            LoggingConfig,
            RunConfig,
            ScalingConfig,
        )
        from ray.train.torch import TorchConfig, TorchTrainer

        from raypipe.runtime.metrics import current_step, record_points

        outputs = {name: kwargs.pop(name) for name in self.model_outputs}
        values, refs, datasets = _split_inputs(kwargs)
        storage = _storage_path()
        loop: Any = functools.partial(_run_worker, self.func)  # Ray Train calls loop(config)
        # Ray Train v2's RunConfig; its stubs are v1's (no logging_config)
        run_config: Any = RunConfig
        trainer = TorchTrainer(
            loop,
            train_loop_config={
                "values": values,
                "refs": {name: [ref] for name, ref in refs.items()},  # a list: not resolved
                "datasets": sorted(datasets),
                "outputs": {n: (self.model_outputs[n], a.uri) for n, a in outputs.items()},
                "storage": storage,
                "live": current_step(),  # (run id, task): where rank 0 publishes its reports
            },
            scaling_config=ScalingConfig(**scaling_config(self.options)),
            torch_config=TorchConfig(backend=self.options.resolved_backend()),
            run_config=run_config(
                name="train",
                storage_path=storage,
                failure_config=FailureConfig(max_failures=self.options.max_failures),
                # the latest to resume from and to hand over; one more while it is written
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                # Ray Train's own progress lines (every report of every worker) stay in
                # its log files; the step's log keeps what the loop prints and warnings
                logging_config=LoggingConfig(log_level="WARNING"),
            ),
            datasets=datasets or None,
        )
        with _default_env(_POLL_ENV, _POLL_S):
            result: Any = trainer.fit()  # Ray Train v2's Result (its stubs are v1's)
        returned = result.return_value or {}
        record_points(_points(returned.get("history") or []))
        kept = returned.get("outputs") or {}
        for name, artifact in outputs.items():
            if kept.get(name, {}).get("written"):
                _copy_tree(f"{storage}/{_OUTPUTS}/{name}", artifact.path)
            else:
                _fill_output(artifact, result.checkpoint, name)
            artifact.metadata.update(kept.get(name, {}).get("metadata") or {})
        return returned.get("value")


@contextlib.contextmanager
def _default_env(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment for the block, unless already set."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


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

    global _LIVE
    _quiet_report_lines()
    kwargs = dict(config["values"])
    for name, (ref,) in config["refs"].items():
        kwargs[name] = ray.get(ref)
    for name in config["datasets"]:
        kwargs[name] = ray.train.get_dataset_shard(name)
    folders = {name: tempfile.mkdtemp(prefix=f"raypipe-{name}-") for name in config["outputs"]}
    artifacts = {
        name: ARTIFACT_TYPES.get(cls_name, Artifact)(name=name, uri=uri, path=folders[name])
        for name, (cls_name, uri) in config["outputs"].items()
    }
    rank = context().world_rank
    live = config["live"]
    _LIVE = (live[0], live[1]) if live is not None and rank == 0 else None
    _HISTORY.clear()
    _HISTORY.extend(_restored_history())
    try:
        value = func(**kwargs, **artifacts)
        if rank != 0:
            return {}
        # What rank 0 wrote to an output's path goes to the trainer's storage, where the
        # step (on its own node) picks it up, as it would a checkpoint.
        outputs = {}
        for name, folder in folders.items():
            written = bool(os.listdir(folder))
            if written:
                _upload_tree(folder, f"{config['storage']}/{_OUTPUTS}/{name}")
            outputs[name] = {"written": written, "metadata": dict(artifacts[name].metadata)}
        return {"value": value, "history": list(_HISTORY), "outputs": outputs}
    finally:
        _LIVE = None
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)


def _quiet_report_lines() -> None:
    """Keep Ray Train's line per report per worker (with its checkpoint path) out of the log.

    Ray Train 2.60 logs it at INFO under a logger named by its file's path, which the
    trainer's ``LoggingConfig(log_level=...)`` (for loggers named ``ray.train...``) misses.
    """
    module = sys.modules.get("ray.train.v2._internal.execution.context")
    if module is not None and module.__file__:
        logging.getLogger(module.__file__).setLevel(logging.WARNING)


# Rank 0's reports in this worker process, each {"step": n, "time": t, "metrics": {...}}.
_HISTORY: list[dict[str, Any]] = []
_LIVE: tuple[str, str] | None = None  # rank 0's (run id, task): where reports are published


def record_report(metrics: Mapping[str, Any], checkpoint_folder: str | None) -> None:
    """Remember a report of rank 0 and publish it; a checkpoint keeps the history so far."""
    from raypipe.runtime import live_metrics

    numbers = {k: float(v) for k, v in metrics.items() if _is_number(v)}
    step = next(
        (int(numbers[k]) for k in _STEP_KEYS if k in numbers and numbers[k].is_integer()),
        len(_HISTORY),
    )
    report = {
        "step": step,
        "time": time.time(),
        "metrics": {k: v for k, v in numbers.items() if k not in _STEP_KEYS},
    }
    _HISTORY.append(report)
    if _LIVE is not None:
        live_metrics.publish(*_LIVE, _points([report]))
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


def _points(history: list[dict[str, Any]]) -> list[list[Any]]:
    """Reports as metric points ``[name, value, step, timestamp]`` (``raypipe.log_metric``'s)."""
    return [
        [name, value, report["step"], report["time"]]
        for report in history
        for name, value in report["metrics"].items()
    ]


def _upload_tree(folder: str, uri: str) -> None:
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri if "://" in uri else os.path.abspath(uri))
    filesystem.delete_dir_contents(path, missing_dir_ok=True)  # a restarted rank 0's leftovers
    filesystem.create_dir(path, recursive=True)
    pafs.copy_files(folder, path, destination_filesystem=filesystem)


def _copy_tree(uri: str, folder: str) -> None:
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri if "://" in uri else os.path.abspath(uri))
    os.makedirs(folder, exist_ok=True)
    pafs.copy_files(path, folder, source_filesystem=filesystem)


def _fill_output(artifact: Artifact, checkpoint: Any, name: str) -> None:
    if checkpoint is None:
        raise TrainingStepError(
            f"output {name!r}: the training reported no checkpoint and rank 0 wrote nothing to "
            f"{name}.path; report one with raypipe.train.report(metrics, checkpoint=...)"
        )
    os.makedirs(artifact.path, exist_ok=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, artifact.path, dirs_exist_ok=True)
