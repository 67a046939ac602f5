"""Inside a distributed training step: report metrics and checkpoints, resume after a failure.

A component declared with ``@dsl.component(train=dsl.TorchDistributed(num_workers=2))``
runs its function on every training worker. These helpers wrap Ray Train's, so the loop
needs no Ray import:

    @dsl.component(train=dsl.TorchDistributed(num_workers=2, max_failures=2))
    def fit(data: np.ndarray, epochs: int, model: Output[Model]) -> float:
        net = raypipe.train.prepare_model(MLP())               # DDP with 2+ workers
        start = 0
        if (state := raypipe.train.load_state()) is not None:   # after a worker died
            raypipe.train.unwrap(net).load_state_dict(state["model"])
            start = state["epoch"] + 1
        for epoch in range(start, epochs):
            loss = ...
            raypipe.train.report(
                {"loss": loss, "epoch": epoch},
                checkpoint={"model": raypipe.train.unwrap(net).state_dict(), "epoch": epoch},
            )
        return loss

Each ``report`` is one point of the step's learning curves in MLflow (``step`` is the
metrics' ``epoch`` or ``step`` when they have one, else the report's number), sent as
it is reported: the curves grow while the step trains. The last checkpoint reported
becomes the step's ``Output[Model]`` unless rank 0 writes its files to ``model.path``
itself.

Importing this module imports neither torch nor Ray Train; calling a helper does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from raypipe.dsl.train import TorchDistributed

__all__ = [
    "STATE_FILE",
    "TorchDistributed",
    "TrainContext",
    "context",
    "latest_checkpoint",
    "load_state",
    "prepare_data_loader",
    "prepare_model",
    "report",
    "unwrap",
]

STATE_FILE = "state.pt"
"""The file a checkpoint given as a dict is saved to (with ``torch.save``)."""


class TrainContext:
    """Where this worker stands: its rank among the workers, and how many there are."""

    def __init__(self, world_rank: int, world_size: int, local_rank: int) -> None:
        self.world_rank, self.world_size, self.local_rank = world_rank, world_size, local_rank

    def __repr__(self) -> str:
        return f"TrainContext(world_rank={self.world_rank}, world_size={self.world_size})"


def context() -> TrainContext:
    """This worker's rank and the number of workers.

    Raises:
        RuntimeError: called outside a training step's loop.
    """
    ray_train = _ray_train("raypipe.train.context()")
    found = ray_train.get_context()
    return TrainContext(found.get_world_rank(), found.get_world_size(), found.get_local_rank())


def report(
    metrics: Mapping[str, Any],
    checkpoint: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> None:
    """Report one point of the training (every worker calls it, as Ray Train requires).

    Args:
        metrics: numbers to log (rank 0's reach MLflow), e.g. ``{"loss": 0.3, "epoch": 2}``.
        checkpoint: a directory to keep, or a dict saved with ``torch.save`` to
            :data:`STATE_FILE`; only rank 0's is kept (the workers hold the same model),
            so other ranks may pass it too or leave it out. The metrics reported so far
            are written into it as well (``raypipe-metrics.json``).
    """
    from raypipe.train.step import record_report

    ray_train = _ray_train("raypipe.train.report()")
    plain = dict(metrics)
    rank0 = ray_train.get_context().get_world_rank() == 0
    if checkpoint is None:
        if rank0:
            record_report(plain, None)
        ray_train.report(plain)
        return
    if not rank0:  # one copy of the model is enough: rank 0's
        ray_train.report(plain)
        return
    if isinstance(checkpoint, Mapping):
        import torch

        with tempfile.TemporaryDirectory(prefix="raypipe-checkpoint-") as folder:
            torch.save(dict(checkpoint), os.path.join(folder, STATE_FILE))
            record_report(plain, folder)
            ray_train.report(plain, checkpoint=ray_train.Checkpoint.from_directory(folder))
        return
    folder = os.fspath(checkpoint)
    record_report(plain, folder)  # the history so far goes into the checkpoint
    ray_train.report(plain, checkpoint=ray_train.Checkpoint.from_directory(folder))


def latest_checkpoint() -> str | None:
    """A local directory with the last checkpoint reported before a restart, else None."""
    ray_train = _ray_train("raypipe.train.latest_checkpoint()")
    checkpoint = ray_train.get_checkpoint()
    if checkpoint is None:
        return None
    # a folder of this worker's own: workers of one node must not write the same one
    path: str = checkpoint.to_directory(tempfile.mkdtemp(prefix="raypipe-restored-"))
    return path


def load_state() -> dict[str, Any] | None:
    """The dict last reported as a checkpoint (loaded with ``torch.load``), else None."""
    folder = latest_checkpoint()
    if folder is None or not os.path.exists(os.path.join(folder, STATE_FILE)):
        return None
    import torch

    state: dict[str, Any] = torch.load(os.path.join(folder, STATE_FILE), weights_only=False)
    return state


def prepare_model(model: Any, **options: Any) -> Any:
    """``ray.train.torch.prepare_model``: move to the worker's device, wrap in DDP."""
    _ray_train("raypipe.train.prepare_model()")
    import ray.train.torch

    return ray.train.torch.prepare_model(model, **options)


def unwrap(model: Any) -> Any:
    """The model inside what ``prepare_model`` returned (DDP wraps it with 2+ workers).

    Save and load the unwrapped model's ``state_dict``: its keys have no ``module.``
    prefix, so a later step loads it into the plain model.
    """
    import torch

    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def prepare_data_loader(loader: Any, **options: Any) -> Any:
    """``ray.train.torch.prepare_data_loader``: shard a DataLoader across the workers."""
    _ray_train("raypipe.train.prepare_data_loader()")
    import ray.train.torch

    return ray.train.torch.prepare_data_loader(loader, **options)


def _ray_train(what: str) -> Any:
    try:
        import ray.train
    except ImportError as exc:
        raise ImportError(
            f"{what} needs PyTorch and Ray Train: pip install 'raypipe[torch]'"
        ) from exc
    try:
        ray.train.get_context()
    except RuntimeError as exc:  # Ray Train's answer outside a training worker
        raise RuntimeError(
            f"{what} is called inside the function of a training step "
            "(@dsl.component(train=dsl.TorchDistributed(...)))"
        ) from exc
    return ray.train
