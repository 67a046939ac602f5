"""Make a component's function portable: readable source plus a by-value payload.

Components may use their module's imports and helpers as ordinary Python does. The
payload is the function pickled with cloudpickle, with every *user* module (one that is
neither the standard library nor an installed distribution) pickled by value, so helpers,
constants and classes defined next to the component travel with it and the defining
module need not be importable where the step runs. Installed packages (numpy, pandas,
raypipe) are imported by name on the worker.

Example:
    >>> spec = package_function(add.python_func, component="add")  # doctest: +SKIP
    >>> spec.source.splitlines()[0]                                  # doctest: +SKIP
    'def add(a: int, b: int) -> int:'
"""

from __future__ import annotations

import ast
import base64
import contextlib
import functools
import importlib.metadata
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle

from raypipe.errors import ComponentDefinitionError
from raypipe.spec.models import PythonFunctionSpec

__all__ = ["PYTHON_VERSION", "decode_payload", "package_function"]

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def package_function(
    func: Callable[..., Any], *, component: str, call: Callable[..., Any] | None = None
) -> PythonFunctionSpec:
    """Source of ``func`` and a portable payload of ``call`` (default: ``func`` itself),
    what a step calls (a :class:`~raypipe.dsl.calling.PathCall` around ``func``, say).

    Raises:
        ComponentDefinitionError: the function (or a global it uses) cannot be serialised.
    """
    try:
        with _user_modules_by_value():
            payload = cloudpickle.dumps(func if call is None else call)
    except Exception as exc:  # pickling raises many types; all mean "not portable"
        reason = _unpicklable_global(func) or f"{type(exc).__name__}: {exc}"
        raise ComponentDefinitionError(
            f"cannot be made portable: {reason}", component=component
        ) from exc
    source, line = readable_source(func)
    return PythonFunctionSpec(
        name=func.__qualname__,
        module=func.__module__,
        filename=_source_file(func),
        line=line,
        source=source,
        payload=base64.b64encode(payload).decode("ascii"),
        python=PYTHON_VERSION,
    )


def _source_file(func: Callable[..., Any]) -> str | None:
    """The file a function (or an actor component's class) was defined in."""
    code = getattr(func, "__code__", None)
    if code is not None:
        return str(code.co_filename)
    try:
        return inspect.getsourcefile(func)
    except TypeError:
        return None


def decode_payload(spec: PythonFunctionSpec) -> bytes:
    """The pickled bytes of a packaged function."""
    return base64.b64decode(spec.payload)


def readable_source(func: Callable[..., Any]) -> tuple[str | None, int | None]:
    """The function's source without decorators and the line it starts on in its file
    (None, None when Python cannot find it)."""
    try:
        lines, first = inspect.getsourcelines(func)
    except (OSError, TypeError):
        return None, None
    source = textwrap.dedent("".join(lines))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, first
    node = tree.body[0] if tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
        node.decorator_list
    ):
        skipped = node.lineno - 1
        return "".join(source.splitlines(keepends=True)[skipped:]), first + skipped
    return source, first


@functools.lru_cache(maxsize=1)
def _installed_top_level_names() -> frozenset[str]:
    names = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    names.update(importlib.metadata.packages_distributions())
    return frozenset(names)


def _is_user_module(name: str) -> bool:
    top = name.partition(".")[0]
    return name != "__main__" and top not in _installed_top_level_names()


@contextlib.contextmanager
def _user_modules_by_value() -> Iterator[None]:
    already = set(cloudpickle.list_registry_pickle_by_value())
    registered = []
    for name, module in list(sys.modules.items()):
        # Top-level modules only: cloudpickle treats submodules of a registered one alike.
        if module is None or "." in name or name in already or not _is_user_module(name):
            continue
        cloudpickle.register_pickle_by_value(module)
        registered.append(module)
    try:
        yield
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _unpicklable_global(func: Callable[..., Any]) -> str | None:
    """Name the global or closure variable that cannot be pickled, for a better error."""
    code_names = set(func.__code__.co_names)
    candidates: dict[str, Any] = {
        k: v for k, v in getattr(func, "__globals__", {}).items() if k in code_names
    }
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):
            candidates[name] = cell.cell_contents
    with _user_modules_by_value():
        for name, value in candidates.items():
            try:
                cloudpickle.dumps(value)
            except Exception as exc:
                return (
                    f"it uses {name!r} ({type(value).__name__}), which cannot be serialised "
                    f"({exc}); create it inside the function instead"
                )
    return None
