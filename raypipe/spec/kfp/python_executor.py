"""Run a KFP lightweight Python component's embedded function as a raypipe component.

KFP's compiler writes the function's source into the executor's command, under a header
of imports (``import kfp``, ``from kfp.dsl import *``, ...), and runs it in a container
that first pip-installs kfp. raypipe instead:

1. rewrites the program's ``kfp`` imports to ``raypipe`` (whose ``dsl`` has KFP's names
   with KFP's meaning), so no kfp installation is needed anywhere;
2. executes it once, when the pipeline is loaded, and reads the function's interface with
   ``raypipe.dsl.component`` (``InputPath``/``OutputPath``, NamedTuples, artifacts) — it
   must agree with the IR's declared inputs and outputs;
3. packages what a step calls, by value, as any raypipe component's payload.

``packages_to_install`` becomes the task's ``packages`` (installed with a Ray runtime
environment when they are missing where the step runs).

Example:
    >>> function = load_function(program, "add", label="exec-add")   # doctest: +SKIP
    >>> function(a=1, b=2)                                            # doctest: +SKIP
    3
"""

from __future__ import annotations

import ast
import base64
import builtins
import linecache
import re
import shlex
import warnings
from collections.abc import Callable
from typing import Any

import cloudpickle

from raypipe.dsl.component import Component, component
from raypipe.errors import ComponentDefinitionError
from raypipe.spec.models import PythonFunctionSpec
from raypipe.spec.packaging import PYTHON_VERSION

__all__ = [
    "KfpProgramError",
    "load_function",
    "pip_index_urls",
    "pip_packages",
    "python_function_spec",
]


class KfpProgramError(Exception):
    """The embedded program cannot be run by raypipe; the message says why."""


_KFP = "kfp"
_REPLACEMENT = "raypipe"
_KFP_DISTRIBUTIONS = re.compile(r"^(kfp|typing-extensions)\b", re.IGNORECASE)


class _KfpImports(ast.NodeTransformer):
    """``kfp`` and ``kfp.*`` imports become imports of ``raypipe`` and ``raypipe.*``."""

    def visit_Import(self, node: ast.Import) -> ast.AST:
        names = []
        for alias in node.names:
            top, _, rest = alias.name.partition(".")
            if top != _KFP:
                names.append(alias)
            elif alias.asname is None:
                # ``import kfp.dsl`` binds ``kfp``: bind raypipe (its dsl is loaded) to it
                names.append(ast.alias(name=_REPLACEMENT, asname=_KFP))
            else:
                renamed = f"{_REPLACEMENT}.{rest}" if rest else _REPLACEMENT
                names.append(ast.alias(name=renamed, asname=alias.asname))
        node.names = names
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.level == 0 and node.module is not None:
            top, _, rest = node.module.partition(".")
            if top == _KFP:
                node.module = f"{_REPLACEMENT}.{rest}" if rest else _REPLACEMENT
        return node


def load_function(program: str, name: str, *, label: str) -> Callable[..., Any]:
    """Execute a KFP executor's program with raypipe in place of kfp; return ``name``.

    The program's lines keep their numbers, so tracebacks point into it.

    Raises:
        KfpProgramError: it does not parse, raises when executed (an import raypipe does
            not provide, say), or does not define ``name``.
    """
    filename = f"<kfp {label}>"
    try:
        with warnings.catch_warnings():
            # e.g. "\{" in a string: Python runs it as KFP's container would, with a warning
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # its name before 3.12
            tree = _KfpImports().visit(ast.parse(program, filename=filename))
            code = compile(ast.fix_missing_locations(tree), filename, "exec")
    except SyntaxError as exc:
        raise KfpProgramError(f"the embedded program does not parse: {exc}") from exc
    # Not importable by this name: cloudpickle then sends the function by value.
    namespace: dict[str, Any] = {"__name__": f"kfp_component_{label}", "__builtins__": builtins}
    lines = program.splitlines(keepends=True)
    linecache.cache[filename] = (len(program), None, lines, filename)
    try:
        exec(code, namespace)
    except ImportError as exc:
        raise KfpProgramError(
            f"the embedded program imports something raypipe cannot provide: {exc}"
        ) from exc
    except Exception as exc:
        raise KfpProgramError(
            f"the embedded program failed when loaded: {type(exc).__name__}: {exc}"
        ) from exc
    function = namespace.get(name)
    if not callable(function):
        raise KfpProgramError(f"the embedded program defines no function {name!r}")
    return function  # type: ignore[no-any-return]


def python_function_spec(
    program: str, name: str, *, label: str
) -> tuple[PythonFunctionSpec, Component]:
    """The runnable ``python`` part of a KFP Python component, and its raypipe reading.

    The :class:`~raypipe.dsl.component.Component` says how raypipe understood the
    function (inputs, outputs and where each output comes from); the caller checks it
    against the IR.

    Raises:
        KfpProgramError: the program cannot be loaded, read as a component or packaged.
    """
    function = load_function(program, name, label=label)
    try:
        made = component(function)
    except ComponentDefinitionError as exc:
        raise KfpProgramError(str(exc)) from exc
    try:
        payload = cloudpickle.dumps(made.entrypoint)
    except Exception as exc:  # pickling raises many types; all mean "not portable"
        raise KfpProgramError(f"the function cannot be packaged: {exc}") from exc
    spec = PythonFunctionSpec(
        name=name,
        module=f"kfp:{label}",
        filename=f"<kfp {label}>",
        line=1,
        source=program,
        payload=base64.b64encode(payload).decode("ascii"),
        python=PYTHON_VERSION,
    )
    return spec, made


def pip_packages(script: str) -> list[str]:
    """The packages a KFP executor's shell script pip-installs, without kfp itself.

    Example:
        >>> pip_packages("python3 -m pip install --quiet 'numpy>=1.20' 'pandas' && "
        ...              "python3 -m pip install --quiet 'kfp==2.17.3' '--no-deps'")
        ['numpy>=1.20', 'pandas']
    """
    return _pip_arguments(script)[0]


def pip_index_urls(script: str) -> list[str]:
    """The ``--index-url``/``--extra-index-url`` values of a KFP executor's pip commands.

    Example:
        >>> pip_index_urls("python3 -m pip install --index-url https://p.example/simple 'x'")
        ['https://p.example/simple']
    """
    return _pip_arguments(script)[1]


def _pip_arguments(script: str) -> tuple[list[str], list[str]]:
    packages: list[str] = []
    indexes: list[str] = []
    for command in re.split(r"&&|\n", script):
        try:
            words = shlex.split(command)
        except ValueError:
            continue  # not a pip command (KFP's pip check is an if-block over lines)
        starts = [i for i in range(len(words) - 1) if words[i : i + 2] == ["pip", "install"]]
        if not starts:
            continue
        previous = ""
        for word in words[starts[0] + 2 :]:
            if previous in ("--index-url", "-i", "--extra-index-url"):
                if word not in indexes:
                    indexes.append(word)
            elif previous == "--trusted-host":
                pass
            elif not word.startswith("-") and not _KFP_DISTRIBUTIONS.match(word):
                packages.append(word)
            previous = word
    return packages, indexes
