"""Task options: resources, retries, caching, environment, timeout; and quantity parsing.

``@dsl.component(num_cpus=2, retries=3)`` sets defaults for every task of a component;
KFP-style setters on a task (``task.set_cpu_limit("500m")``) override them for that task.

Example:
    >>> TaskOptions(num_cpus=2).model_copy(update={"memory": parse_memory("512Mi")}).memory
    536870912
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    field_validator,
)

from raypipe.dsl.train import TorchDistributed

__all__ = [
    "TaskOptions",
    "label_key_problem",
    "label_selector_problem",
    "label_selector_value_problem",
    "parse_cpu",
    "parse_duration",
    "parse_memory",
]


class TaskOptions(BaseModel):
    """How and where one step runs. Unset fields take Ray's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: NonNegativeFloat | None = None
    num_gpus: NonNegativeFloat | None = None
    memory: NonNegativeInt | None = Field(default=None, description="bytes of memory to reserve")
    resources: dict[str, NonNegativeFloat] = Field(default_factory=dict)
    accelerator: str | None = Field(default=None, description="accelerator type, e.g. 'A100'")
    retries: NonNegativeInt = 0
    backoff_seconds: NonNegativeFloat = 0.0
    backoff_factor: float = Field(default=2.0, ge=1.0)
    backoff_max: NonNegativeFloat = 3600.0
    cache: bool = True
    persist: dict[str, Literal["none", "background", "sync"]] = Field(
        default_factory=dict,
        description="output name (or '*' for all) -> when it is written for the cache: "
        "none, background (default) or sync (before downstream steps start)",
    )
    track: bool = Field(
        default=False, description="give the step its own MLflow run even with nothing to compare"
    )
    image: str | None = Field(default=None, description="container image (KubeRay placement)")
    label_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Ray node labels the step's node must have: {key: value}, where a value "
        "may be 'v', '!v', 'in(a,b)' or '!in(a,b)'",
    )
    packages: list[str] = Field(
        default_factory=list,
        description="pip requirements; installed in a Ray runtime environment when missing",
    )
    pip_index_urls: list[str] = Field(
        default_factory=list, description="package indexes for packages (the first is the main)"
    )
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="environment variable of the step -> the variable of the starting "
        "process's environment its value is read from when the run starts (dsl.Secret; "
        "the value is never in the IR)",
    )
    timeout: NonNegativeFloat | None = Field(default=None, description="seconds")
    actor: bool = Field(default=False, description="run in a long-lived Ray actor (a class)")
    actor_pool_size: PositiveInt | None = Field(
        default=None, description="actors per run that share the component's steps (1)"
    )
    actor_restarts: NonNegativeInt = Field(
        default=3, description="times a pool's actor whose process died is started again"
    )
    train: TorchDistributed | None = Field(
        default=None, description="run the function as a distributed PyTorch training loop"
    )

    @field_validator("resources")
    @classmethod
    def _custom_resources_only(cls, value: dict[str, float]) -> dict[str, float]:
        reserved = sorted(set(value) & {"CPU", "GPU", "memory", "object_store_memory"})
        if reserved:
            raise ValueError(
                f"resources holds custom resources only; use num_cpus, num_gpus or memory "
                f"instead of {', '.join(reserved)}"
            )
        return value

    @field_validator("label_selector")
    @classmethod
    def _ray_label_selector(cls, value: dict[str, str]) -> dict[str, str]:
        problem = label_selector_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


# Ray's label syntax (Kubernetes': ray/_private/label_utils.py), checked here so that a bad
# selector fails when the pipeline is written, not when Ray gets the task.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?"
_LABEL_NAME = re.compile(_LABEL)
_LABEL_PREFIX = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LABEL_SELECTOR_VALUE = re.compile(rf"!?(?:in\({_LABEL}(?:, ?{_LABEL})*\)|{_LABEL})")


def label_selector_problem(selector: Mapping[str, str]) -> str | None:
    """What is wrong with a label selector ``{key: value}``, or None (the first problem).

    Example:
        >>> label_selector_problem({"raypipe.io/pool": "!in(gpu, tpu)"}) is None
        True
    """
    for key, value in selector.items():
        problem = label_key_problem(key) or label_selector_value_problem(value)
        if problem is not None:
            return problem
    return None


def label_key_problem(key: str) -> str | None:
    """What is wrong with a Ray node label key (``[prefix/]name``), or None.

    Example:
        >>> label_key_problem("raypipe.io/pool") is None
        True
        >>> label_key_problem("pool/") is not None
        True
    """
    prefix, _, name = key.rpartition("/")
    if "/" in key and (len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return f"label key {key!r}: the prefix must be a DNS subdomain (e.g. example.com)"
    if not _LABEL_NAME.fullmatch(name):
        return (
            f"label key {key!r}: the name must be 1-63 letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit"
        )
    return None


def label_selector_value_problem(value: str) -> str | None:
    """What is wrong with a label selector value (``v``, ``!v``, ``in(a,b)``, ``!in(a,b)``).

    Example:
        >>> label_selector_value_problem("in(A100, H100)") is None
        True
    """
    if not _LABEL_SELECTOR_VALUE.fullmatch(value):
        return (
            f"label selector value {value!r}: expected 'value', '!value', 'in(a,b)' or "
            "'!in(a,b)', each value 1-63 letters, digits, '-', '_' or '.'"
        )
    return None


_MEMORY_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_memory(value: str | int | float) -> int:
    """Bytes from a Kubernetes memory quantity (``"4Gi"``, ``"512M"``) or a number of bytes.

    Example:
        >>> parse_memory("1.5Gi"), parse_memory("2G"), parse_memory(1024)
        (1610612736, 2000000000, 1024)
    """
    if isinstance(value, bool):
        raise ValueError(f"memory must be a quantity such as '4Gi', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"memory must not be negative, got {value!r}")
        return int(value)
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _MEMORY_SUFFIXES:
        raise ValueError(
            f"memory must be a quantity such as '512Mi', '4G' or a number of bytes, got {value!r}"
        )
    return int(float(match.group(1)) * _MEMORY_SUFFIXES[match.group(2)])


def parse_cpu(value: str | int | float) -> float:
    """CPUs from a Kubernetes CPU quantity (``"500m"``, ``"2"``) or a number.

    Example:
        >>> parse_cpu("500m"), parse_cpu("2"), parse_cpu(1.5)
        (0.5, 2.0, 1.5)
    """
    if isinstance(value, bool):
        raise ValueError(f"cpu must be a quantity such as '500m' or '2', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"cpu must not be negative, got {value!r}")
        return float(value)
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in ("", "m"):
        raise ValueError(f"cpu must be a quantity such as '500m' or '2', got {value!r}")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "m" else number


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "ms": 0.001}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a duration such as ``"30s"``, ``"5m"``, ``"1h"`` or a number of seconds.

    Example:
        >>> parse_duration("5m"), parse_duration(3)
        (300.0, 3.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"duration must be like '30s' or '5m', got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return float(value)
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"duration must be like '30s', '5m' or '1h', got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
