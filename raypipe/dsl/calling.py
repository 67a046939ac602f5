"""How a step calls a function that takes file paths (KFP's ``InputPath``/``OutputPath``).

The runtime calls every component the same way: inputs by name (artifacts as
:class:`~raypipe.dsl.artifacts.Artifact` objects), one ``Output[...]`` artifact object per
output artifact, and outputs taken from what the call returns. :class:`PathCall` wraps a
function declared with path annotations so that it can be called that way: it hands the
function paths instead of objects, writes parameter inputs to files, and reads parameter
outputs back from the files the function wrote.

Example:
    >>> def shout(text: InputPath(str), loud: OutputPath(str)):
    ...     with open(text) as f, open(loud, "w") as out:
    ...         out.write(f.read().upper())
    >>> call = PathCall.for_function(shout, typing.get_type_hints(shout))
    >>> call(text="hi")
    {'loud': 'HI'}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import typing
from collections.abc import Callable, Mapping
from typing import Any

from raypipe.dsl.artifacts import Artifact
from raypipe.dsl.paths import InputPath, OutputPath

__all__ = ["NamedOutputs", "PathCall", "parse_parameter_file", "uses_paths"]

SINGLE_OUTPUT = "Output"


class NamedOutputs(dict[str, Any]):
    """Output values by name: what a :class:`PathCall` returns to the runtime."""


def uses_paths(hints: Mapping[str, Any]) -> bool:
    """Whether any of a function's resolved type hints is ``InputPath``/``OutputPath``."""
    return any(isinstance(h, (InputPath, OutputPath)) for h in hints.values())


class PathCall:
    """A function with path annotations, callable with the runtime's convention.

    ``input_paths`` and ``output_paths`` map parameter names to the value annotation the
    path stands for; ``returns`` lists the outputs of the return value (``["Output"]`` or
    NamedTuple fields). Picklable: the function travels by value inside it.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        input_paths: Mapping[str, Any],
        output_paths: Mapping[str, Any],
        returns: list[str],
    ) -> None:
        self.func = func
        self.input_paths = dict(input_paths)
        self.output_paths = dict(output_paths)
        self.returns = list(returns)
        self.__name__ = getattr(func, "__name__", "call")
        self.__qualname__ = getattr(func, "__qualname__", self.__name__)
        self.__module__ = getattr(func, "__module__", __name__)
        self.__wrapped__ = func

    @classmethod
    def for_function(cls, func: Callable[..., Any], hints: Mapping[str, Any]) -> PathCall:
        """Wrap ``func`` given its resolved type hints (``typing.get_type_hints``).

        Raises:
            TypeError: a path annotation of an unknown type.
        """
        input_paths = {
            n: h.value_annotation() for n, h in hints.items() if isinstance(h, InputPath)
        }
        output_paths = {
            n: h.value_annotation() for n, h in hints.items() if isinstance(h, OutputPath)
        }
        returned = hints.get("return")
        if returned is None or returned is type(None):
            returns: list[str] = []
        elif (
            isinstance(returned, type)
            and issubclass(returned, tuple)
            and hasattr(returned, "_fields")
        ):
            returns = list(returned._fields)
        else:
            returns = [SINGLE_OUTPUT]
        return cls(func, input_paths, output_paths, returns)

    def __call__(self, **kwargs: Any) -> Any:
        folder = tempfile.mkdtemp(prefix="raypipe-paths-")
        try:
            arguments = dict(kwargs)
            for name, annotation in self.input_paths.items():
                if name in arguments:
                    arguments[name] = _input_path(arguments[name], annotation, folder, name)
            written: dict[str, str] = {}
            for name, annotation in self.output_paths.items():
                if _is_artifact(annotation):
                    artifact = kwargs[name]  # the runtime made it: an Output[...] object
                    arguments[name] = artifact.path
                else:
                    written[name] = arguments[name] = os.path.join(folder, "out", name)
                    os.makedirs(os.path.dirname(written[name]), exist_ok=True)
            returned = self.func(**arguments)
            outputs = NamedOutputs()
            if self.returns == [SINGLE_OUTPUT]:
                outputs[SINGLE_OUTPUT] = returned
            elif self.returns:
                if not isinstance(returned, tuple) or len(returned) != len(self.returns):
                    raise TypeError(
                        f"must return a tuple of {len(self.returns)} values "
                        f"({', '.join(self.returns)}), got {type(returned).__name__}"
                    )
                outputs.update(zip(self.returns, returned, strict=True))
            for name, path in written.items():
                outputs[name] = parse_parameter_file(path, self.output_paths[name], name)
            return outputs
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __repr__(self) -> str:
        return f"PathCall({self.__qualname__})"


def parse_parameter_file(path: str, annotation: Any, name: str) -> Any:
    """The value a step wrote to an ``OutputPath`` of a parameter type, parsed like KFP.

    Strings are taken as written; ``True``/``true``/``1`` are booleans; numbers, lists and
    dicts are JSON.

    Raises:
        FileNotFoundError: the step did not write the file.
        ValueError: the text is not a value of the declared type.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x"); _ = open(p, "w").write("True")
        >>> parse_parameter_file(p, bool, "flag")
        True
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"output {name!r}: the step did not write its OutputPath file")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    base = typing.get_origin(annotation) or annotation
    if base is str:
        return text
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"output {name!r}: {text!r} is not a boolean")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"output {name!r}: {text[:80]!r} is not JSON ({exc})") from exc
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _input_path(value: Any, annotation: Any, folder: str, name: str) -> str:
    if _is_artifact(annotation):
        if not isinstance(value, Artifact):
            raise TypeError(f"input {name!r}: expected an artifact, got {type(value).__name__}")
        return value.path
    path = os.path.join(folder, "in", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(value if isinstance(value, str) else json.dumps(value))
    return path


def _is_artifact(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Artifact)
