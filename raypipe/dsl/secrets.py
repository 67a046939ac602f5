"""``dsl.Secret``: an environment variable of a step whose value never enters the pipeline.

A secret is named, not given: ``env={"API_TOKEN": dsl.Secret("SERVICE_TOKEN")}`` puts the
*name* ``SERVICE_TOKEN`` in the IR (``TaskOptions.secret_env``); the value is read from the
environment of the process that starts the run when it starts (a missing variable fails
the run before any step runs, naming the step and the variable), travels to the step with
its task, and is set in the step's environment while it runs. It is not in the IR, the
run's manifest, MLflow, lineage or the cache key; what the step prints or raises has it
replaced by ``***`` in its logs and errors.

Example:
    >>> env, secrets = split_env({"MODE": "fast", "API_TOKEN": Secret("SERVICE_TOKEN")})
    >>> env, secrets
    ({'MODE': 'fast'}, {'API_TOKEN': 'SERVICE_TOKEN'})
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EnvValue", "Secret", "split_env"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Secret:
    """The value of a step's environment variable, read by ``name`` from the environment
    of the process that starts the run.

    Example:
        >>> Secret("SERVICE_TOKEN").name
        'SERVICE_TOKEN'
    """

    name: str

    def __post_init__(self) -> None:
        if not _ENV_NAME.fullmatch(self.name):
            raise ValueError(
                f"dsl.Secret names an environment variable (letters, digits, '_'), "
                f"got {self.name!r}"
            )

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"


EnvValue = str | Secret  # what a step's environment variable may be set to


def split_env(env: Mapping[str, EnvValue]) -> tuple[dict[str, str], dict[str, str]]:
    """Plain values, and secrets as ``{variable: name of the driver's variable}``."""
    plain = {k: str(v) for k, v in env.items() if not isinstance(v, Secret)}
    secrets = {k: v.name for k, v in env.items() if isinstance(v, Secret)}
    return plain, secrets
