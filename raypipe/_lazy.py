"""Names a package exports but imports only when first used (PEP 562).

``import raypipe`` happens in every Ray worker that runs a step or a training loop, and
a worker needs little of it: importing the runner, MLflow's tracker and the lineage
writer up front cost a training worker about 0.4 s of its start. A package lists its
exports by the module that defines them; the first access imports that module.

Example:
    >>> exports = {"run": "raypipe.runtime.runner"}
    >>> __getattr__, __dir__ = lazy_exports(__name__, exports)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each name to the module it is imported from. Other attributes are
    the package's submodules (``raypipe.spec``), imported on first access as an
    ``import raypipe.spec`` would.
    """

    # A name that is also a submodule would be replaced by the module as soon as anything
    # imports that submodule (the import system sets the package attribute).
    clashes = sorted(name for name, source in exports.items() if source == f"{package}.{name}")
    if clashes:
        raise ValueError(f"{package}: exported names are also submodules: {clashes}")

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists and failed to import something
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[package], name, value)  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
