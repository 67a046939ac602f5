"""``dsl.TorchDistributed``: a component whose function is a distributed PyTorch training loop.

``@dsl.component(train=dsl.TorchDistributed(num_workers=2))`` makes the step run the
function on every worker of a Ray Train ``TorchTrainer`` (one process per worker, joined
in a torch.distributed process group), on the same Ray cluster as the rest of the run.
The step itself only drives the trainer, so it reserves no CPU of its own.

This module only describes the training; :mod:`raypipe.train` runs it.

Example:
    >>> options = TorchDistributed(num_workers=2)
    >>> options.worker_resources(), options.resolved_backend()
    ({'CPU': 1.0}, 'gloo')
    >>> TorchDistributed(num_workers=4, use_gpu=True, accelerator="H100").worker_resources()
    {'CPU': 1.0, 'GPU': 1.0}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt

__all__ = ["TorchDistributed"]


class TorchDistributed(BaseModel):
    """How a training step is spread over workers; stored with the task in the IR.

    Attributes:
        num_workers: training processes (Ray Train workers), one per GPU with ``use_gpu``.
        use_gpu: give each worker a GPU (and use ``nccl``).
        resources_per_worker: what each worker reserves, in Ray's resource names
            (``{"CPU": 4, "GPU": 1, "memory": 8e9}``); default one CPU, plus a GPU with
            ``use_gpu``.
        accelerator: the GPU type workers need, e.g. ``"H100"`` (Ray's accelerator type).
        backend: ``"gloo"`` or ``"nccl"``; default ``nccl`` with GPUs, else ``gloo``.
        max_failures: times the whole worker group is restarted after a worker dies; the
            loop resumes from the last reported checkpoint
            (``raypipe.train.latest_checkpoint()``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_workers: PositiveInt = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, NonNegativeFloat] | None = None
    accelerator: str | None = Field(default=None, description="accelerator type, e.g. 'H100'")
    backend: Literal["gloo", "nccl"] | None = None
    max_failures: NonNegativeInt = 0

    def worker_resources(self) -> dict[str, float]:
        """What one worker reserves (Ray resource names)."""
        if self.resources_per_worker is not None:
            resources = {k: float(v) for k, v in self.resources_per_worker.items()}
            if self.use_gpu and "GPU" not in resources:
                resources["GPU"] = 1.0
            return resources
        return {"CPU": 1.0, "GPU": 1.0} if self.use_gpu else {"CPU": 1.0}

    def resolved_backend(self) -> str:
        """The torch.distributed backend the workers join."""
        if self.backend is not None:
            return self.backend
        return "nccl" if self.use_gpu else "gloo"
