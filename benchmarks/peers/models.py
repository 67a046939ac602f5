"""What crosses from a worker process to the suite: one worker's samples, as pydantic models.

Example:
    >>> WorkerResult.model_validate_json(open("/tmp/raw.json").read())  # doctest: +SKIP
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["MemorySample", "Sample", "WorkerResult"]


class Sample(BaseModel):
    """One timed run of one workload."""

    model_config = ConfigDict(frozen=True)

    workload: str
    size: dict[str, int]
    steps: int
    seconds: float
    load1: float  # 1-minute load average just before the run


class MemorySample(BaseModel):
    """The driver's resident memory during the first w5 run of a process."""

    model_config = ConfigDict(frozen=True)

    workload: str
    steps: int
    seconds: float
    baseline_bytes: int
    peak_bytes: int

    @property
    def bytes_per_step(self) -> float:
        return (self.peak_bytes - self.baseline_bytes) / self.steps


class WorkerResult(BaseModel):
    """Everything one worker process measured (``peers/worker.py`` writes it as JSON)."""

    model_config = ConfigDict(frozen=True)

    system: str
    key: str
    python: str
    versions: dict[str, str]
    setup_seconds: float | None = None
    samples: list[Sample] = []
    memory: list[MemorySample] = []
    error: str | None = None
