"""A step's ``packages`` (KFP's ``packages_to_install``): checked here, installed if missing.

KFP pip-installs a component's packages in its container at every step. raypipe checks the
requirements against the Python environment the run is started from (which local Ray
workers share); when each is already satisfied, the step runs as it is. Otherwise the step
gets a Ray runtime environment that pip-installs them once per node and set of packages
(Ray caches it), on top of the packages already there.

Example:
    >>> runtime_env(["pip>=1"], [])  is None
    True
    >>> runtime_env(["surely-not-installed-pkg==0.1"], [])["pip"]["packages"]
    ['surely-not-installed-pkg==0.1']
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

__all__ = ["missing_requirements", "runtime_env"]


def runtime_env(packages: Sequence[str], index_urls: Sequence[str]) -> dict[str, Any] | None:
    """The Ray ``runtime_env`` a step with ``packages`` needs; None when all are installed."""
    if not packages or not missing_requirements(tuple(packages)):
        return None
    pip: dict[str, Any] = {"packages": list(packages), "pip_check": False}
    if index_urls:
        options = ["--index-url", index_urls[0]]
        for extra in index_urls[1:]:
            options += ["--extra-index-url", extra]
        pip["pip_install_options"] = options
    return {"pip": pip}


@functools.lru_cache(maxsize=256)
def missing_requirements(packages: tuple[str, ...]) -> list[str]:
    """The requirements of ``packages`` this environment does not satisfy.

    A requirement that is not a plain ``name[extras] specifier; marker`` (a URL, a path)
    counts as missing: only pip can tell.
    """
    return [p for p in packages if not _satisfied(p)]


def _satisfied(text: str) -> bool:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return False
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True  # not meant for this Python or platform
    if requirement.url:
        return False
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)
