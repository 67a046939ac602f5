"""Errors of the KubeRay manifest generator and validator.

```
RaypipeError
 ├── ManifestOptionError      options for a manifest are wrong or break an operator rule
 └── ManifestValidationError  a manifest does not match its schema (every problem, with paths)
```

Example:
    >>> str(ManifestOptionError("needs shutdown_after_job_finishes=True", pipeline="p",
    ...                         field="ttl_seconds_after_finished"))
    'p.ttl_seconds_after_finished: needs shutdown_after_job_finishes=True'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raypipe.errors import RaypipeError

__all__ = ["ManifestOptionError", "ManifestProblem", "ManifestValidationError"]


class ManifestOptionError(RaypipeError):
    """Options for a KubeRay manifest are wrong, or break one of the operator's rules."""

    def __init__(self, problem: str, *, pipeline: str, field: str) -> None:
        self.pipeline, self.field = pipeline, field
        super().__init__(f"{pipeline}.{field}: {problem}")


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with one object of a manifest file, located by a field path.

    Example:
        >>> str(ManifestProblem("expected integer", document=1, kind="RayCluster",
        ...                     name="c", path="spec.workerGroupSpecs[0].maxReplicas"))
        'document 1 (RayCluster c): spec.workerGroupSpecs[0].maxReplicas: expected integer'
    """

    message: str
    document: int
    kind: str | None = None
    name: str | None = None
    path: str = ""

    def __str__(self) -> str:
        what = " ".join(p for p in (self.kind, self.name) if p)
        where = f"document {self.document}" + (f" ({what})" if what else "")
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ManifestValidationError(RaypipeError):
    """Objects of a manifest do not match their schemas; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[ManifestProblem], *, source: str) -> None:
        if not problems:
            raise ValueError("ManifestValidationError needs at least one problem")
        self.problems, self.source = list(problems), source
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:
            super().__init__(f"{source}: {lines[0]}")
        else:
            joined = "\n".join(f"  - {line}" for line in lines)
            super().__init__(f"{source}: {len(lines)} problems:\n{joined}")
