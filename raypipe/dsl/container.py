"""``@dsl.container_component``: a step that runs a command line, as KFP's container components.

The decorated function is called once, when it is decorated, with placeholders in place of
its inputs and outputs; the :class:`ContainerSpec` it returns is the step. When the step
runs, the placeholders in ``command`` and ``args`` are filled in (values, artifact paths
and URIs, files for output parameters) and the command runs as a process on the Ray worker:
its output goes to the step's log, a non-zero exit fails the step, and the files written
for ``OutputPath(...)`` parameters become the step's outputs. ``image`` is kept as the
task's ``image`` option, for placement on a KubeRay worker group running that image.

Example:
    >>> from raypipe.dsl.artifacts import Dataset
    >>> from raypipe.dsl.interface import Output
    >>> @container_component
    ... def say(text: str, out: Output[Dataset]):
    ...     return ContainerSpec(
    ...         image="alpine:3.20",
    ...         command=["sh", "-c", f'echo "{text}" > "{out.path}"'],
    ...     )
    >>> say.entrypoint.command[2]
    'echo "{{$.inputs.parameters[\\'text\\']}}" > "{{$.outputs.artifacts[\\'out\\'].path}}"'
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from raypipe.dsl.artifacts import Artifact
from raypipe.dsl.calling import NamedOutputs, parse_parameter_file
from raypipe.dsl.component import SINGLE_OUTPUT, Component, _read_signature, caller_namespace
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec, io_direction
from raypipe.dsl.io_placeholders import (
    Interface,
    IOPlaceholder,
    PlaceholderError,
    check_text,
    fill_text,
    input_artifact,
    input_parameter,
    output_artifact,
    output_parameter_file,
    parameter_text,
)
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.paths import InputPath, OutputPath
from raypipe.errors import ComponentDefinitionError, RaypipeError

__all__ = [
    "ConcatPlaceholder",
    "ContainerCall",
    "ContainerCommandError",
    "ContainerComponent",
    "ContainerSpec",
    "ExecutableNotFoundError",
    "IfPresentPlaceholder",
    "container_component",
]

STDERR_TAIL_LINES = 20
"""Lines of the command's stderr quoted in the error of a failed step."""

_PARAMETER_TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
}
_STRUCT_PREFIXES = ('{"IfPresent"', '{"Concat"')


class IfPresentPlaceholder:
    """``then`` if the input ``input_name`` was given a value (not None), else ``else_``.

    ``then``/``else_`` are one command-line element or a list of them; a list adds its
    elements to the command line (inside a :class:`ConcatPlaceholder`, one element each).

    Example:
        >>> IfPresentPlaceholder(input_name="lr", then=["--lr", "0.1"]).to_struct()
        {'IfPresent': {'InputName': 'lr', 'Then': ['--lr', '0.1']}}
    """

    def __init__(
        self,
        input_name: str,
        then: CommandLineElement | list[CommandLineElement],
        else_: CommandLineElement | list[CommandLineElement] | None = None,
    ) -> None:
        self.input_name = input_name
        self.then = then
        self.else_ = else_

    def to_struct(self) -> dict[str, Any]:
        """KFP's IR form: ``{"IfPresent": {"InputName": ..., "Then": ..., "Else": ...}}``."""
        body: dict[str, Any] = {"InputName": self.input_name, "Then": _structured(self.then)}
        if self.else_ is not None and self.else_ != []:
            body["Else"] = _structured(self.else_)
        return {"IfPresent": body}

    def __str__(self) -> str:
        raise TypeError("an IfPresentPlaceholder is a whole command-line element, not text")

    def __repr__(self) -> str:
        return f"IfPresentPlaceholder({self.to_struct()['IfPresent']})"


class ConcatPlaceholder:
    """The text of ``items`` joined into one command-line element.

    Example:
        >>> ConcatPlaceholder(["--out=", "/tmp/x"]).to_struct()
        {'Concat': ['--out=', '/tmp/x']}
    """

    def __init__(self, items: list[CommandLineElement]) -> None:
        for item in items:
            if isinstance(item, IfPresentPlaceholder) and (
                isinstance(item.then, list) or isinstance(item.else_, list)
            ):
                raise TypeError(
                    "an IfPresentPlaceholder inside a ConcatPlaceholder takes one element "
                    "for then and else_, not a list"
                )
        self.items = list(items)

    def to_struct(self) -> dict[str, Any]:
        """KFP's IR form: ``{"Concat": [...]}``."""
        return {"Concat": [_structured(item) for item in self.items]}

    def __str__(self) -> str:
        raise TypeError("a ConcatPlaceholder is a whole command-line element, not text")

    def __repr__(self) -> str:
        return f"ConcatPlaceholder({self.to_struct()['Concat']})"


CommandLineElement: TypeAlias = str | IfPresentPlaceholder | ConcatPlaceholder
"""What ``command`` and ``args`` hold: text (with placeholders) or a structured placeholder."""


def _structured(element: Any) -> Any:
    if isinstance(element, list):
        return [_structured(e) for e in element]
    if isinstance(element, (IfPresentPlaceholder, ConcatPlaceholder)):
        return element.to_struct()
    if isinstance(element, _ArtifactPlaceholder):
        raise TypeError(element.misuse())
    if isinstance(element, bool) or not isinstance(element, (str, int, float)):
        raise TypeError(
            f"a command-line element is a string or a placeholder, got {type(element).__name__}"
        )
    return str(element)


@dataclass(frozen=True)
class ContainerSpec:
    """What a container component runs: ``command`` then ``args``, in ``image``.

    Example:
        >>> ContainerSpec(image="python:3.11", command=["python3", "-c", "print(1)"]).image
        'python:3.11'
    """

    image: str
    command: list[CommandLineElement] | None = None
    args: list[CommandLineElement] | None = None


class _ArtifactPlaceholder:
    """What a container component's function receives for an ``Input[...]``/``Output[...]``."""

    def __init__(self, side: str, name: str) -> None:
        self._side, self._name = side, name

    @property
    def path(self) -> str:
        return self._text("path")

    @property
    def uri(self) -> str:
        return self._text("uri")

    @property
    def metadata(self) -> _MetadataPlaceholder:
        return _MetadataPlaceholder(self._text("metadata"))

    def _text(self, field: str) -> str:
        make = input_artifact if self._side == "input" else output_artifact
        return make(self._name, field)

    def misuse(self) -> str:
        return (
            f"the artifact {self._name!r} is not text; use {self._name}.path, "
            f"{self._name}.uri or {self._name}.metadata"
        )

    def __str__(self) -> str:
        raise TypeError(self.misuse())

    def __format__(self, spec: str) -> str:
        raise TypeError(self.misuse())


class _MetadataPlaceholder(str):
    """``data.metadata`` (all of it as JSON) that also gives ``data.metadata["key"]``."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> str:
        if isinstance(key, str):
            return f"{self[:-2]}['{key}']}}}}"
        return str.__getitem__(self, key)


class ContainerCommandError(RaypipeError):
    """A container component's command exited with a non-zero code.

    ``exit_code`` is the code (negative: killed by that signal), ``stderr_tail`` the last
    lines the command wrote to stderr.
    """

    def __init__(
        self, *, component: str, image: str | None, argv: list[str], exit_code: int, tail: str
    ) -> None:
        self.component, self.image, self.argv = component, image, argv
        self.exit_code, self.stderr_tail = exit_code, tail
        shown = shlex.join(argv)
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        where = f" (image {image})" if image else ""
        message = f"component {component}: the command exited with code {exit_code}{where}: {shown}"
        if tail:
            message += f"\nlast lines of its stderr:\n{tail}"
        super().__init__(message)


class ExecutableNotFoundError(RaypipeError):
    """A container component's executable does not exist on the worker that ran the step.

    raypipe runs the command as a process on a Ray worker; the image is where it was
    meant to run (a KubeRay worker group started from that image has it).
    """

    def __init__(self, *, component: str, image: str | None, executable: str) -> None:
        self.component, self.image, self.executable = component, image, executable
        meant = f"it was meant to run in the image {image!r}; " if image else ""
        super().__init__(
            f"component {component}: the executable {executable!r} is not found on this "
            f"worker; {meant}install it where the step runs, or run the step on workers "
            "started from that image"
        )


class ContainerCall(BaseModel):
    """What a container component's step calls: fill in the command line, run it, read back
    the output parameters. Called with the runtime's convention (inputs by name, one
    ``Artifact`` per output artifact); returns the output parameters by name.

    ``command`` and ``args`` are in KFP's IR form: strings with placeholders, and
    ``{"IfPresent": ...}``/``{"Concat": ...}`` structures as JSON strings. It pickles as
    its JSON, so equal calls have equal payloads (and cache keys).

    Example:
        >>> call = ContainerCall(
        ...     component="echo", command=["echo", "{{$.inputs.parameters['x']}}"],
        ...     parameter_inputs=["x"])
        >>> call.command_line({"x": 3}, {})
        ['echo', '3']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str = Field(description="the component's name, for errors")
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    parameter_inputs: list[str] = Field(default_factory=list)
    artifact_inputs: list[str] = Field(default_factory=list)
    parameter_outputs: dict[str, str] = Field(
        default_factory=dict, description="output parameter name -> type (str, int, ...)"
    )
    artifact_outputs: list[str] = Field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_container_call_from_json, (self.model_dump_json(),))

    def check(self) -> None:
        """Check every placeholder and structure of the command line.

        Raises:
            PlaceholderError: an unsupported placeholder, a malformed structure, or one
                naming an input or output the component does not have.
        """
        unknown = sorted(set(self.parameter_outputs.values()) - set(_PARAMETER_TYPES))
        if unknown:
            raise PlaceholderError(f"output parameter types {unknown} are not parameter types")
        interface = self._interface()
        for element in [*self.command, *self.args]:
            struct = _struct_of(element)
            if struct is None:
                check_text(element, interface)
            else:
                self._check_struct(struct, element)

    def _interface(self) -> Interface:
        return Interface(
            parameter_inputs=tuple(self.parameter_inputs),
            artifact_inputs=tuple(self.artifact_inputs),
            parameter_outputs=tuple(self.parameter_outputs),
            artifact_outputs=tuple(self.artifact_outputs),
        )

    def _check_struct(self, node: Any, element: str) -> None:
        if isinstance(node, str):
            check_text(node, self._interface())
            return
        if isinstance(node, list):
            for item in node:
                self._check_struct(item, element)
            return
        if not isinstance(node, dict) or len(node) != 1:
            raise PlaceholderError(f"malformed placeholder structure {element}")
        ((kind, body),) = node.items()
        if kind == "Concat" and isinstance(body, list):
            for item in body:
                if isinstance(item, list):
                    raise PlaceholderError(
                        f"a list inside Concat (an IfPresent with a list) in {element}"
                    )
                self._check_struct(item, element)
        elif kind == "IfPresent" and isinstance(body, dict) and "InputName" in body:
            name = body["InputName"]
            extra = sorted(set(body) - {"InputName", "Then", "Else"})
            if extra:
                raise PlaceholderError(f"IfPresent fields {extra} are not supported in {element}")
            if name not in self.parameter_inputs and name not in self.artifact_inputs:
                known = ", ".join([*self.parameter_inputs, *self.artifact_inputs]) or "none"
                raise PlaceholderError(
                    f"IfPresent names no input {name!r} (inputs: {known}) in {element}"
                )
            for branch in ("Then", "Else"):
                if branch in body:
                    self._check_struct(body[branch], element)
        else:
            raise PlaceholderError(f"the placeholder structure {kind!r} is not supported")

    def command_line(self, inputs: Mapping[str, Any], output_files: Mapping[str, str]) -> list[str]:
        """``command + args`` with every placeholder filled in from ``inputs`` (the step's
        keyword arguments) and ``output_files`` (output parameter name -> file path).

        Raises:
            ValueError: a placeholder refers to an input that has no value (use an
                ``IfPresentPlaceholder`` for optional inputs).
        """

        def value_of(placeholder: IOPlaceholder) -> str:
            return self._value_of(placeholder, inputs, output_files)

        argv: list[str] = []
        for element in [*self.command, *self.args]:
            struct = _struct_of(element)
            if struct is None:
                argv.append(fill_text(element, value_of))
            else:
                argv.extend(_flatten(self._resolve(struct, inputs, value_of)))
        return argv

    def _resolve(
        self, node: Any, inputs: Mapping[str, Any], value_of: Callable[[IOPlaceholder], str]
    ) -> Any:
        """A structure resolved to text, a list (of text and None) or None (nothing)."""
        if node is None or isinstance(node, str):
            return None if node is None else fill_text(node, value_of)
        if isinstance(node, list):
            return [self._resolve(item, inputs, value_of) for item in node]
        ((kind, body),) = node.items()
        if kind == "Concat":
            parts = [self._resolve(item, inputs, value_of) for item in body]
            return "".join(p for p in parts if p is not None)
        present = inputs.get(body["InputName"]) is not None
        return self._resolve(body.get("Then" if present else "Else"), inputs, value_of)

    def _value_of(
        self, placeholder: IOPlaceholder, inputs: Mapping[str, Any], output_files: Mapping[str, str]
    ) -> str:
        if placeholder.side == "outputs" and placeholder.kind == "parameters":
            return output_files[placeholder.name]
        value = inputs.get(placeholder.name)
        if value is None:
            raise ValueError(
                f"{placeholder.text}: the {placeholder.side[:-1]} {placeholder.name!r} has no "
                "value; wrap what uses an optional input in an IfPresentPlaceholder"
            )
        if placeholder.kind == "parameters":
            return parameter_text(value)
        if not isinstance(value, Artifact):
            raise TypeError(f"{placeholder.text}: expected an artifact, got {type(value).__name__}")
        if placeholder.field == "path":
            return value.path
        if placeholder.field == "uri":
            return value.uri
        if placeholder.key is not None:
            return parameter_text(value.metadata.get(placeholder.key))
        return json.dumps(value.metadata)

    def __call__(self, **kwargs: Any) -> NamedOutputs:
        folder = tempfile.mkdtemp(prefix="raypipe-container-")
        try:
            files = {n: os.path.join(folder, "outputs", n, "data") for n in self.parameter_outputs}
            for path in files.values():
                os.makedirs(os.path.dirname(path), exist_ok=True)
            for name in self.artifact_outputs:
                artifact = kwargs.get(name)
                if not isinstance(artifact, Artifact):
                    raise TypeError(f"output {name!r}: expected an output artifact")
                os.makedirs(os.path.dirname(os.path.abspath(artifact.path)), exist_ok=True)
            argv = self.command_line(kwargs, files)
            self._run(argv)
            outputs = NamedOutputs()
            for name, type_name in self.parameter_outputs.items():
                outputs[name] = parse_parameter_file(files[name], _PARAMETER_TYPES[type_name], name)
            return outputs
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, argv: list[str]) -> None:
        if not argv:
            raise ValueError(
                f"component {self.component}: no command to run; a container that relies on "
                f"its image's entrypoint ({self.image}) cannot run outside that image"
            )
        stdout, stderr = sys.stdout, sys.stderr  # the step's log capture, while it runs
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, ended with it
            )
        except FileNotFoundError as exc:
            raise ExecutableNotFoundError(
                component=self.component, image=self.image, executable=argv[0]
            ) from exc
        assert process.stdout is not None and process.stderr is not None
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        lock = threading.Lock()  # both streams may write to one log file
        streams = ((process.stdout, stdout, None), (process.stderr, stderr, tail))
        pumps = [
            threading.Thread(target=_forward, args=(source, sink, kept, lock), daemon=True)
            for source, sink, kept in streams
        ]
        for pump in pumps:
            pump.start()
        try:
            code = process.wait()
        finally:
            # Like a container, the command's processes end with it (also on a timeout).
            _end_group(process)
            for pump in pumps:
                pump.join(timeout=5.0)
        if code != 0:
            raise ContainerCommandError(
                component=self.component,
                image=self.image,
                argv=argv,
                exit_code=code,
                tail="".join(tail).rstrip("\n"),
            )


def _container_call_from_json(text: str) -> ContainerCall:
    return ContainerCall.model_validate_json(text)


def _struct_of(element: str) -> Any:
    """The IfPresent/Concat structure an element holds, or None for plain text."""
    if not element.lstrip().startswith(_STRUCT_PREFIXES):
        return None
    try:
        return json.loads(element)
    except json.JSONDecodeError as exc:
        raise PlaceholderError(f"malformed placeholder structure {element}: {exc}") from exc


def _flatten(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [text for item in value for text in _flatten(item)]
    return [value]


def _forward(
    stream: IO[bytes], sink: Any, tail: collections.deque[str] | None, lock: threading.Lock
) -> None:
    """Copy a process's output, line by line, to ``sink`` (the step's sys.stdout/stderr)."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            with lock:
                sink.write(line)
                sink.flush()
            if tail is not None:
                tail.append(line)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the command's process group (itself, on a timeout)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # every process of the group has ended already
    process.wait()


class ContainerComponent(Component):
    """A component whose step runs a command line (see :func:`container_component`).

    Attributes:
        container: the :class:`ContainerSpec` the function returned.
        entrypoint: the :class:`ContainerCall` a step calls.
    """

    def __init__(self, func: Callable[..., Any], localns: dict[str, Any] | None = None) -> None:
        self._init_from_function(func, "container_component", None, None)
        self._inputs, self._outputs, hints = _read_signature(func, self.name, localns)
        returns = hints.get("return")
        if returns is ContainerSpec:
            self._outputs.pop(SINGLE_OUTPUT, None)
        elif returns is not None and returns is not type(None):
            raise ComponentDefinitionError(
                "a container component returns a dsl.ContainerSpec; declare its outputs as "
                "OutputPath(...) or Output[...] parameters",
                component=self.name,
                field="return",
            )
        arguments = self._placeholders(hints)
        try:
            returned = func(**arguments)
        except Exception as exc:  # the function's own mistake, or a placeholder misused
            raise ComponentDefinitionError(
                f"calling it with placeholders failed: {type(exc).__name__}: {exc}",
                component=self.name,
            ) from exc
        if not isinstance(returned, ContainerSpec):
            raise ComponentDefinitionError(
                f"a container component returns a dsl.ContainerSpec, got {type(returned).__name__}",
                component=self.name,
            )
        if not isinstance(returned.image, str) or not returned.image:
            raise ComponentDefinitionError(
                "ContainerSpec.image is the image's name", component=self.name, field="image"
            )
        self.container = returned
        self.options = TaskOptions(image=returned.image)
        lines: dict[str, list[str]] = {}
        for field in ("command", "args"):
            try:
                lines[field] = [_element_text(e) for e in getattr(returned, field) or []]
            except TypeError as exc:
                raise ComponentDefinitionError(str(exc), component=self.name, field=field) from exc
        self.entrypoint = ContainerCall(
            component=self.name,
            image=returned.image,
            command=lines["command"],
            args=lines["args"],
            parameter_inputs=[n for n, s in self._inputs.items() if s.kind is IOKind.PARAMETER],
            artifact_inputs=[n for n, s in self._inputs.items() if s.kind is IOKind.ARTIFACT],
            parameter_outputs={
                n: s.type for n, s in self._outputs.items() if s.kind is IOKind.PARAMETER
            },
            artifact_outputs=[n for n, s in self._outputs.items() if s.kind is IOKind.ARTIFACT],
        )
        try:
            self.entrypoint.check()
        except PlaceholderError as exc:
            raise ComponentDefinitionError(str(exc), component=self.name) from exc

    def _placeholders(self, hints: Mapping[str, Any]) -> dict[str, Any]:
        """What the function is called with: one placeholder per input and output."""
        arguments: dict[str, Any] = {}
        specs: dict[str, InputSpec | OutputSpec] = {**self._inputs, **self._outputs}
        for name, spec in specs.items():
            annotation = hints[name]
            output = name in self._outputs
            if spec.kind is IOKind.OBJECT:
                raise ComponentDefinitionError(
                    f"a container component takes parameters (str, int, float, bool, list, "
                    f"dict) and single artifacts, not {spec.describe()}",
                    component=self.name,
                    field=name,
                )
            if spec.kind is IOKind.PARAMETER:
                if output:
                    arguments[name] = output_parameter_file(name)
                elif isinstance(annotation, InputPath):
                    raise ComponentDefinitionError(
                        "KFP has no placeholder for the file of an input parameter; take "
                        f"the value ({name}: {spec.type}) and write it to a file in the command",
                        component=self.name,
                        field=name,
                    )
                else:
                    arguments[name] = input_parameter(name)
            elif isinstance(annotation, InputPath):
                arguments[name] = input_artifact(name, "path")
            elif isinstance(annotation, OutputPath):
                arguments[name] = output_artifact(name, "path")
            else:
                side = "output" if output or io_direction(annotation) == "output" else "input"
                arguments[name] = _ArtifactPlaceholder(side, name)
        return arguments

    def __repr__(self) -> str:
        return f"<container component {self.name}>"


def _element_text(element: Any) -> str:
    """A command-line element in KFP's IR form: text, or a structure as JSON."""
    structured = _structured(element)
    return structured if isinstance(structured, str) else json.dumps(structured)


def container_component(func: Callable[..., Any]) -> ContainerComponent:
    """Make a component from a function that returns a :class:`ContainerSpec` (KFP's).

    Annotate the function like a component: parameters (``str``, ``int``, ...),
    ``Input[Dataset]``/``Output[Model]`` (use ``.path``, ``.uri``, ``.metadata``),
    ``InputPath("Dataset")``/``OutputPath("Model")`` (the path itself) and
    ``OutputPath(int)`` (a file whose text becomes the output). The function runs once,
    now, with KFP's placeholders for each of them; f-strings of placeholders work.

    Example:
        >>> from raypipe.dsl.paths import OutputPath
        >>> @container_component
        ... def count_words(text: str, count: OutputPath(int)):
        ...     return ContainerSpec(
        ...         image="alpine:3.20",
        ...         command=["sh", "-c", 'echo "$0" | wc -w > "$1"'],
        ...         args=[text, count],
        ...     )
        >>> list(count_words.outputs), count_words.options.image
        (['count'], 'alpine:3.20')

    Raises:
        ComponentDefinitionError: an input or output a command cannot use (an in-memory
            object, a list of artifacts), a function that returns no ContainerSpec, or an
            unsupported placeholder (named in the message).
    """
    return ContainerComponent(func, caller_namespace())
