"""Which step names a run's pipeline has, loop iterations included.

A step's name in a run is its path: ``train`` at the top, ``child/train`` inside a nested
pipeline or a branch, ``for-loop-1[3]/train`` in the fourth iteration of a loop. The API
uses this to answer 404 for a log of a step the run does not have, instead of waiting
for a log that will never be written.

Example:
    >>> has_step(spec, "for-loop-1[3]/train")
    True
    >>> has_step(spec, "no-such-step")
    False
"""

from __future__ import annotations

import re

from raypipe.spec.models import DagSpec, PipelineSpec

__all__ = ["has_step", "step_pattern"]


def step_pattern(spec: PipelineSpec) -> re.Pattern[str]:
    """A pattern that matches exactly the names of the pipeline's steps (its
    Python-function tasks, which are the ones that write logs), any loop index."""
    alternatives = _steps(spec, spec.root.dag, "") if spec.root.dag is not None else []
    return re.compile("|".join(alternatives) or "(?!)")


def has_step(spec: PipelineSpec, name: str) -> bool:
    """Whether some run of ``spec`` can have a step named ``name``."""
    return step_pattern(spec).fullmatch(name) is not None


def _steps(spec: PipelineSpec, dag: DagSpec, prefix: str) -> list[str]:
    found: list[str] = []
    for name, task in dag.tasks.items():
        path = prefix + re.escape(name)
        component = spec.components.get(task.component)
        if component is None or component.dag is None:
            found.append(path)
        elif task.loop is not None:
            found.extend(_steps(spec, component.dag, rf"{path}\[\d+\]/"))
        else:
            found.extend(_steps(spec, component.dag, f"{path}/"))
    return found
