"""``InputPath`` and ``OutputPath``: a component that reads or writes a value as a file.

KFP's file-path annotations. The step receives a local path instead of a value:

* ``InputPath("Dataset")`` (or ``InputPath(Dataset)``): the path of an input artifact;
* ``InputPath(str)``: a file holding a parameter's value (JSON for lists and dicts);
* ``OutputPath("Model")``: where to write an output artifact;
* ``OutputPath(int)``: where to write an output parameter; the file's text becomes its value.

The dataflow is the same as for ``Input[...]``/``Output[...]`` and return values; only the
calling convention differs (see :mod:`raypipe.dsl.calling`).

Example:
    >>> def count(lines: InputPath("Dataset"), total: OutputPath(int)):
    ...     with open(lines) as f, open(total, "w") as out:
    ...         out.write(str(len(f.readlines())))
    >>> OutputPath(int)
    OutputPath(int)
"""

from __future__ import annotations

import typing
from typing import Any

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact

__all__ = ["InputPath", "OutputPath", "path_type"]


class _PathAnnotation:
    """What a file-path annotation stands for: a parameter type or an artifact class."""

    def __init__(self, type: Any = None) -> None:  # noqa: A002 - KFP's keyword
        self.type = type

    def value_annotation(self) -> Any:
        """The annotation the value would have without the path: ``int``, ``Dataset``, ...

        Raises:
            TypeError: a type name that is neither a parameter type nor an artifact class.
        """
        return path_type(self.type)

    def __repr__(self) -> str:
        shown = self.type if isinstance(self.type, str) else _name(self.type)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, _PathAnnotation)
            and (other.type == self.type)
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.type)))


class InputPath(_PathAnnotation):
    """Annotate an input the step reads from a file: ``data: InputPath("Dataset")``."""


class OutputPath(_PathAnnotation):
    """Annotate an output the step writes to a file: ``model: OutputPath("Model")``."""


_PARAMETER_NAMES: dict[str, Any] = {
    "str": str,
    "String": str,
    "int": int,
    "Integer": int,
    "float": float,
    "Float": float,
    "bool": bool,
    "Boolean": bool,
    "list": list,
    "List": list,
    "JsonArray": list,
    "dict": dict,
    "Dict": dict,
    "JsonObject": dict,
}


def path_type(declared: Any) -> Any:
    """The value annotation a path annotation's ``type`` names (``None`` is ``Artifact``).

    Example:
        >>> path_type("Dataset").__name__, path_type(int).__name__
        ('Dataset', 'int')
    """
    if declared is None:
        return Artifact
    if isinstance(declared, str):
        name = declared.removeprefix("system.").split("@")[0]
        if name in ARTIFACT_TYPES:
            return ARTIFACT_TYPES[name]
        if name in _PARAMETER_NAMES:
            return _PARAMETER_NAMES[name]
        # KFP treats any other type name as a generic artifact
        return Artifact
    if isinstance(declared, type) and issubclass(declared, Artifact):
        return declared
    base = typing.get_origin(declared) or declared
    if base in (str, int, float, bool, list, dict):
        return declared
    raise TypeError(
        f"a path annotation takes a parameter type (str, int, float, bool, list, dict) or an "
        f"artifact class, got {_name(declared)}"
    )


def _name(value: Any) -> str:
    return getattr(value, "__name__", None) or repr(value)
