"""KFP container and importer executors as runnable raypipe components.

A KFP ``deploymentSpec.executors`` entry is either a ``container`` (image, command, args
with KFP's placeholders, including the ``{"IfPresent": ...}``/``{"Concat": ...}``
structures) or an ``importer`` (``artifactUri``, ``typeSchema``, ``metadata``,
``reimport``). Each becomes the ``python`` part of a raypipe
:class:`~raypipe.spec.models.ComponentSpec` whose payload is a
:class:`~raypipe.dsl.container.ContainerCall` or :class:`~raypipe.dsl.importer.ImportCall`,
the same objects ``@dsl.container_component`` and ``dsl.importer`` make; the component's
``inputs``/``outputs`` are the converted ``inputDefinitions``/``outputDefinitions``.
(Lightweight Python components, whose container runs ``--function_to_execute``, are
:mod:`raypipe.spec.kfp.python_executor`'s.)

Example:
    >>> executor = {"image": "alpine", "command": ["echo", "{{$.inputs.parameters['x']}}"]}
    >>> inputs = {"x": InputSpec(kind="parameter", type="str")}
    >>> spec = container_component_spec(executor, inputs, {}, label="exec-echo")
    >>> spec.module
    'kfp:exec-echo'
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle

from raypipe.dsl.artifacts import ARTIFACT_TYPES
from raypipe.dsl.container import ContainerCall
from raypipe.dsl.importer import ImportCall, uri_problem
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec
from raypipe.dsl.io_placeholders import PlaceholderError
from raypipe.spec.models import PythonFunctionSpec
from raypipe.spec.packaging import PYTHON_VERSION

__all__ = [
    "KfpExecutorError",
    "container_call",
    "container_component_spec",
    "importer_call",
    "importer_component",
]

_CONTAINER_FIELDS = {"image", "command", "args", "env", "resources"}
_IMPORTER_FIELDS = {"artifactUri", "typeSchema", "metadata", "reimport", "downloadToWorkspace"}


class KfpExecutorError(Exception):
    """A KFP executor raypipe cannot run; the message names the executor, the tasks using
    it and the field or placeholder at fault."""

    def __init__(self, problem: str, *, label: str, task_names: Sequence[str] = ()) -> None:
        self.label, self.task_names, self.problem = label, tuple(task_names), problem
        users = f" (used by {', '.join(task_names)})" if task_names else ""
        super().__init__(f"executor {label}{users}: {problem}")


def container_call(
    executor_container: Mapping[str, Any],
    inputs: Mapping[str, InputSpec],
    outputs: Mapping[str, OutputSpec],
    *,
    label: str,
    task_names: Sequence[str] = (),
    component: str | None = None,
) -> ContainerCall:
    """The :class:`ContainerCall` of a KFP ``container`` executor, checked.

    ``component`` names it in run-time errors (default: ``label`` without ``exec-``).

    Raises:
        KfpExecutorError: a field raypipe does not run, an unsupported placeholder, or a
            placeholder naming an input or output the component does not declare.
    """

    def fail(problem: str) -> KfpExecutorError:
        return KfpExecutorError(problem, label=label, task_names=task_names)

    unknown = sorted(set(executor_container) - _CONTAINER_FIELDS)
    if unknown:
        raise fail(f"container fields {', '.join(unknown)} are not supported")
    image = executor_container.get("image")
    if not isinstance(image, str) or not image:
        raise fail("the container has no image")
    lines: dict[str, list[str]] = {}
    for field in ("command", "args"):
        value = executor_container.get(field) or []
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            raise fail(f"container.{field} is a list of strings")
        lines[field] = list(value)
    for name, spec in outputs.items():
        if spec.kind is IOKind.PARAMETER and spec.source != "return":
            raise fail(f"output parameter {name!r} must be returned (source 'return')")
        if spec.kind is IOKind.ARTIFACT and spec.source != "parameter":
            raise fail(f"output artifact {name!r} must be given to the step (source 'parameter')")
    call = ContainerCall(
        component=component or label.removeprefix("exec-"),
        image=image,
        command=lines["command"],
        args=lines["args"],
        parameter_inputs=[n for n, s in inputs.items() if s.kind is IOKind.PARAMETER],
        artifact_inputs=[n for n, s in inputs.items() if s.kind is IOKind.ARTIFACT],
        parameter_outputs={n: s.type for n, s in outputs.items() if s.kind is IOKind.PARAMETER},
        artifact_outputs=[n for n, s in outputs.items() if s.kind is IOKind.ARTIFACT],
    )
    try:
        call.check()
    except PlaceholderError as exc:
        raise fail(str(exc)) from exc
    return call


def container_component_spec(
    executor_container: Mapping[str, Any],
    inputs: Mapping[str, InputSpec],
    outputs: Mapping[str, OutputSpec],
    *,
    label: str,
    task_names: Sequence[str] = (),
    component: str | None = None,
) -> PythonFunctionSpec:
    """The runnable ``python`` part of a component implemented by a KFP ``container``
    executor (``deploymentSpec.executors[label].container``).

    ``inputs``/``outputs`` are the component's converted definitions: parameter outputs
    with ``source="return"``, artifact outputs with ``source="parameter"``. The image is
    not part of the payload; put it in the tasks' ``TaskOptions.image``.

    Raises:
        KfpExecutorError: see :func:`container_call`.
    """
    call = container_call(
        executor_container,
        inputs,
        outputs,
        label=label,
        task_names=task_names,
        component=component,
    )
    return _packaged(call, label, {"container": dict(executor_container)})


def importer_call(
    executor_importer: Mapping[str, Any],
    inputs: Mapping[str, InputSpec],
    outputs: Mapping[str, OutputSpec],
    *,
    label: str,
    task_names: Sequence[str] = (),
    component: str | None = None,
) -> ImportCall:
    """The :class:`ImportCall` of a KFP ``importer`` executor, checked.

    Raises:
        KfpExecutorError: an unsupported field (``typeSchema.instanceSchema``,
            ``downloadToWorkspace: true``), an artifact type raypipe lacks, a URI input
            that is not declared, or metadata placeholders naming no input.
    """

    def fail(problem: str) -> KfpExecutorError:
        return KfpExecutorError(problem, label=label, task_names=task_names)

    unknown = sorted(set(executor_importer) - _IMPORTER_FIELDS)
    if unknown:
        raise fail(f"importer fields {', '.join(unknown)} are not supported")
    if executor_importer.get("downloadToWorkspace"):
        raise fail("importer.downloadToWorkspace is not supported: raypipe has no workspace")
    schema = executor_importer.get("typeSchema") or {}
    if not isinstance(schema, Mapping) or "schemaTitle" not in schema:
        kinds = ", ".join(sorted(schema)) if isinstance(schema, Mapping) else repr(schema)
        raise fail(f"importer.typeSchema needs a schemaTitle (got {kinds or 'nothing'})")
    title = str(schema["schemaTitle"])
    artifact_type = title.removeprefix("system.")
    if not title.startswith("system.") or artifact_type not in ARTIFACT_TYPES:
        raise fail(f"the artifact type {title!r} is not supported")

    artifacts = [(n, s) for n, s in outputs.items() if s.kind is IOKind.ARTIFACT]
    if len(outputs) != 1 or len(artifacts) != 1:
        raise fail(f"an importer has one artifact output, this one declares {list(outputs)}")
    output, output_spec = artifacts[0]
    if output_spec.type not in ("Artifact", artifact_type):
        raise fail(f"output {output!r} is a {output_spec.type}, but typeSchema says {title}")

    source = executor_importer.get("artifactUri") or {}
    uri: str | None = None
    uri_input: str | None = None
    if isinstance(source, Mapping) and "constant" in source:
        uri = source["constant"]
    elif isinstance(source, Mapping) and "constantValue" in source:  # KFP's older IR
        uri = (source["constantValue"] or {}).get("stringValue")
    elif isinstance(source, Mapping) and "runtimeParameter" in source:
        uri_input = str(source["runtimeParameter"])
        spec = inputs.get(uri_input)
        if spec is None or spec.kind is not IOKind.PARAMETER:
            raise fail(f"importer.artifactUri names {uri_input!r}, which is no parameter input")
    else:
        raise fail(f"importer.artifactUri {source!r} is neither a constant nor a runtimeParameter")
    if uri_input is None:
        if not isinstance(uri, str) or not uri:
            raise fail(f"importer.artifactUri constant {uri!r} is not a URI")
        problem = uri_problem(uri)
        if problem is not None:
            raise fail(problem)

    metadata = executor_importer.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise fail(f"importer.metadata is a mapping, got {type(metadata).__name__}")
    try:
        call = ImportCall(
            component=component or label.removeprefix("exec-"),
            uri=uri,
            uri_input=uri_input,
            artifact_type=artifact_type,
            metadata=json.loads(json.dumps(dict(metadata))),
            reimport=bool(executor_importer.get("reimport", False)),
            output=output,
        )
        call.check([n for n, s in inputs.items() if s.kind is IOKind.PARAMETER])
    except PlaceholderError as exc:
        raise fail(str(exc)) from exc
    except (TypeError, ValueError) as exc:  # pydantic: metadata that is not JSON
        raise fail(f"importer.metadata cannot be used: {exc}") from exc
    return call


def importer_component(
    executor_importer: Mapping[str, Any],
    inputs: Mapping[str, InputSpec],
    outputs: Mapping[str, OutputSpec],
    *,
    label: str,
    task_names: Sequence[str] = (),
    component: str | None = None,
) -> PythonFunctionSpec:
    """The runnable ``python`` part of a component implemented by a KFP ``importer``
    executor (``deploymentSpec.executors[label].importer``).

    The output keeps the URI (no copy). ``reimport: true`` should also turn the tasks'
    cache off (``TaskOptions.cache=False``), as ``dsl.importer(reimport=True)`` does.

    Raises:
        KfpExecutorError: see :func:`importer_call`.
    """
    call = importer_call(
        executor_importer,
        inputs,
        outputs,
        label=label,
        task_names=task_names,
        component=component,
    )
    return _packaged(call, label, {"importer": dict(executor_importer)})


def _packaged(call: Any, label: str, executor: Mapping[str, Any]) -> PythonFunctionSpec:
    payload = cloudpickle.dumps(call)
    return PythonFunctionSpec(
        name=label,
        module=f"kfp:{label}",
        source=json.dumps(executor, indent=2, sort_keys=True, default=str),
        payload=base64.b64encode(payload).decode("ascii"),
        python=PYTHON_VERSION,
    )
