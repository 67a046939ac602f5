"""The git commit of the code a run comes from, for the run's records.

Example:
    >>> git_commit()  # doctest: +SKIP
    '2578795c0f...'
"""

from __future__ import annotations

import functools
import os
import subprocess

__all__ = ["git_commit"]


@functools.cache
def git_commit(directory: str | None = None) -> str | None:
    """The commit checked out where the process runs (or in ``directory``); None outside
    a git work tree or without git. Asked once per process and directory."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory or os.getcwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None
