"""A component's typed interface: what each input and output is, read from annotations.

Three kinds of value flow between steps:

* **parameters**: ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` (and typed
  generics such as ``list[int]``); JSON values that can also be pipeline arguments;
* **objects**: any other annotation (numpy arrays, DataFrames, tensors, your classes),
  passed in memory through Ray's object store;
* **artifacts**: ``Input[Dataset]`` / ``Output[Model]`` and friends, files stored under the
  artifact root whose record (name, URI, metadata) is passed on.

Example:
    >>> describe_annotation(list[int]).describe()
    'list[int]'
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, JsonValue

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.paths import InputPath, OutputPath

__all__ = [
    "IOKind",
    "IOType",
    "Input",
    "artifact_list_type",
    "InputSpec",
    "Output",
    "OutputSpec",
    "check_assignable",
    "check_value",
    "describe_annotation",
    "io_direction",
]


class _Direction(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


_A = TypeVar("_A", bound=Artifact)

Input = Annotated[_A, _Direction.INPUT]
"""``Input[Dataset]``: an artifact the step reads (its ``path`` exists)."""

Output = Annotated[_A, _Direction.OUTPUT]
"""``Output[Model]``: an artifact the step writes to ``path``; it becomes a task output."""


class IOKind(str, enum.Enum):
    """How a value travels: as a JSON parameter, an in-memory object, or a file artifact."""

    PARAMETER = "parameter"
    OBJECT = "object"
    ARTIFACT = "artifact"


PARAMETER_TYPES: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "list",
    dict: "dict",
}
_PYTHON_TYPES = {name: tp for tp, name in PARAMETER_TYPES.items()}


class IOType(BaseModel):
    """The type of one input or output, as stored in the IR.

    ``type`` is ``int``/``float``/``str``/``bool``/``list``/``dict`` for parameters, the
    artifact class name for artifacts, and the qualified type name for objects.
    ``annotation`` keeps the full annotation when it says more (``list[int]``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: IOKind
    type: str
    annotation: str | None = None
    nullable: bool = False

    def describe(self) -> str:
        """A short human phrase, e.g. ``int`` or ``artifact Dataset``."""
        shown = self.annotation or self.type
        if self.kind is IOKind.ARTIFACT:
            return f"artifact {shown}"
        if self.kind is IOKind.OBJECT:
            return f"{shown} (in-memory object)"
        return shown


class InputSpec(IOType):
    """An input of a component or pipeline: its type, and a default when it is optional."""

    optional: bool = False
    default: JsonValue = None


class OutputSpec(IOType):
    """An output of a component: taken from the return value, or an ``Output[...]`` parameter."""

    source: Literal["return", "parameter"] = "return"


def io_direction(annotation: Any) -> Literal["input", "output"] | None:
    """``"input"``/``"output"`` for ``Input[...]``/``Output[...]`` annotations, else ``None``."""
    if typing.get_origin(annotation) is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, _Direction):
                return meta.value
    return None


def artifact_list_type(annotation: Any) -> str | None:
    """``"Dataset"`` for ``list[Dataset]``/``List[Dataset]``; None for anything else.

    Example:
        >>> from raypipe.dsl.artifacts import Dataset
        >>> artifact_list_type(list[Dataset])
        'Dataset'
    """
    if typing.get_origin(annotation) is not list:
        return None
    args = typing.get_args(annotation)
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], Artifact):
        return args[0].__name__
    return None


def _type_name(annotation: Any) -> str:
    if annotation is Any:
        return "typing.Any"
    if isinstance(annotation, type):
        module = annotation.__module__
        return (
            annotation.__qualname__
            if module == "builtins"
            else f"{module}.{annotation.__qualname__}"
        )
    return repr(annotation).replace("typing.", "")


def describe_annotation(annotation: Any) -> IOType:
    """Classify a type annotation as a parameter, artifact or in-memory object.

    An artifact class is an artifact input (KFP's pythonic form ``data: Dataset``) or,
    as a return annotation (``-> Model``), an artifact output; a list of an artifact
    class (``Input[List[Dataset]]``) is a list of artifacts, as ``dsl.Collected`` gives.
    ``InputPath(T)``/``OutputPath(T)`` describe as ``T``.

    Raises:
        TypeError: for ``Input``/``Output`` around something that is not an artifact class.
    """
    if isinstance(annotation, (InputPath, OutputPath)):
        return describe_annotation(annotation.value_annotation())
    direction = io_direction(annotation)
    if direction is not None:
        inner = typing.get_args(annotation)[0]
        listed = artifact_list_type(inner)
        if listed is not None:
            return IOType(kind=IOKind.OBJECT, type="list", annotation=f"list[{listed}]")
        if not (isinstance(inner, type) and issubclass(inner, Artifact)):
            raise TypeError(
                f"{direction.capitalize()}[...] takes an artifact class "
                f"({', '.join(ARTIFACT_TYPES)}), got {_type_name(inner)}"
            )
        return IOType(kind=IOKind.ARTIFACT, type=inner.__name__)
    if typing.get_origin(annotation) is Annotated:
        return describe_annotation(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, Artifact):
        return IOType(kind=IOKind.ARTIFACT, type=annotation.__name__)
    listed = artifact_list_type(annotation)
    if listed is not None:
        return IOType(kind=IOKind.OBJECT, type="list", annotation=f"list[{listed}]")

    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            inner_type = describe_annotation(members[0])
            return inner_type.model_copy(
                update={"nullable": True, "annotation": _type_name(annotation)}
            )
    base = origin if origin is not None else annotation
    if base in PARAMETER_TYPES:
        full = _type_name(annotation)
        name = PARAMETER_TYPES[base]
        return IOType(
            kind=IOKind.PARAMETER,
            type=name,
            annotation=full if full != name else None,
        )
    return IOType(kind=IOKind.OBJECT, type=_type_name(annotation))


def check_assignable(source: IOType, target: IOType) -> str | None:
    """Why a value of type ``source`` cannot feed an input of type ``target`` (None if it can).

    Example:
        >>> text = IOType(kind="parameter", type="str")
        >>> check_assignable(text, IOType(kind="parameter", type="int"))
        'expected int, got str'
    """
    mismatch = f"expected {target.describe()}, got {source.describe()}"
    if target.kind is IOKind.ARTIFACT or source.kind is IOKind.ARTIFACT:
        if source.kind is not target.kind:
            return mismatch
        if target.type in ("Artifact", source.type):
            return None
        return mismatch
    if target.kind is IOKind.OBJECT:
        return None  # Python duck typing: any parameter or object may feed an object input
    if source.kind is IOKind.OBJECT:
        # typing.Any may be anything; a collected list of objects is still a list
        return None if source.type in ("typing.Any", target.type) else mismatch
    if source.type == target.type or (source.type, target.type) == ("int", "float"):
        return None
    return mismatch


def check_value(value: Any, target: IOType) -> str | None:
    """Why ``value`` is not a valid value for a parameter of type ``target`` (None if it is).

    Example:
        >>> check_value("1", IOType(kind="parameter", type="int"))
        "expected int, got str ('1')"
    """
    if target.kind is not IOKind.PARAMETER:
        return None
    if value is None:
        return None if target.nullable else f"expected {target.describe()}, got None"
    expected = _PYTHON_TYPES[target.type]
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
    if not ok and expected is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and expected is list:
        ok = isinstance(value, tuple)
    if ok:
        return None
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"expected {target.describe()}, got {type(value).__name__} ({shown})"
