"""What a running step knows about where its files go: ``dsl.get_uri`` and local paths.

KFP's pythonic artifacts build their output inside the function and return it:

    def gen_data() -> Dataset:
        data = Dataset(uri=dsl.get_uri())
        with open(data.path, "w") as f: ...
        return data

The runtime opens a :class:`StepFiles` for each call; ``get_uri`` asks it for the step's
output location and :attr:`Artifact.path` asks it for a local path to a URI it made.
Outside a step neither exists and ``path`` is the URI itself.

Example:
    >>> get_uri()
    Traceback (most recent call last):
    ...
    RuntimeError: dsl.get_uri() is called inside a running step
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol

__all__ = ["StepFiles", "get_uri", "local_path_of", "step_files"]


class StepFiles(Protocol):
    """The runtime's side: the step's output location and local paths for its URIs."""

    def task_uri(self, suffix: str) -> str:
        """A URI under the step's output location, unique to the step's run."""
        ...

    def local_path(self, uri: str) -> str | None:
        """A local path the step may write for ``uri`` (its parent exists), or None."""
        ...


_CURRENT: contextvars.ContextVar[StepFiles | None] = contextvars.ContextVar(
    "raypipe_step_files", default=None
)


def get_uri(suffix: str = "") -> str:
    """A fresh URI for an artifact the running step returns (KFP's ``dsl.get_uri``).

    ``suffix`` names a file under the step's output location (``get_uri("model")``); the
    default is the location of the step's ``Output``.

    Raises:
        RuntimeError: called outside a running step.
    """
    files = _CURRENT.get()
    if files is None:
        raise RuntimeError("dsl.get_uri() is called inside a running step")
    return files.task_uri(suffix)


def local_path_of(uri: str) -> str | None:
    """The local path of ``uri`` in the running step, or None (no step, or unknown URI)."""
    files = _CURRENT.get()
    return files.local_path(uri) if files is not None and uri else None


@contextlib.contextmanager
def step_files(files: StepFiles) -> Iterator[None]:
    """Make ``files`` the running step's for the duration of the block."""
    token = _CURRENT.set(files)
    try:
        yield
    finally:
        _CURRENT.reset(token)
