"""``dsl.importer``: a task whose output is an artifact that already exists at a URI (KFP's).

Nothing is copied: the step's output record keeps the URI as given (a local path, a
``file://`` URI or any ``pyarrow.fs`` URI such as ``s3://bucket/data.csv``), with the
metadata given; a local file's digest and size are computed, a remote one's are left
unknown. Downstream steps read it like any artifact (a remote one is downloaded for them).

``reimport=False`` (the default) lets a later run reuse the record made for the same URI
(the step may be a cache hit, like KFP reusing the artifact it imported before);
``reimport=True`` makes a new record every run.

Example:
    >>> from raypipe.dsl.artifacts import Dataset
    >>> # inside a @dsl.pipeline function:
    >>> #     data = dsl.importer(artifact_uri="/data/train.csv", artifact_class=Dataset)
    >>> #     train(data=data.output)
    >>> call = ImportCall(uri="/data/train.csv", artifact_type="Dataset")
    >>> call.artifact_uri({})
    '/data/train.csv'
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.calling import NamedOutputs
from raypipe.dsl.component import Component
from raypipe.dsl.interface import InputSpec, IOKind, OutputSpec
from raypipe.dsl.io_placeholders import (
    Interface,
    PlaceholderError,
    check_text,
    fill_text,
    find_placeholders,
    input_parameter,
    parameter_text,
)
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.pipeline import active_builder
from raypipe.dsl.task import Channel, FString, PipelineTask
from raypipe.errors import PipelineDefinitionError

__all__ = ["IMPORTER_OUTPUT", "ImportCall", "Importer", "imported_artifact", "importer"]

IMPORTER_OUTPUT = "artifact"
"""The name of an importer's one output (KFP's)."""
_URI_INPUT = "uri"
_METADATA_INPUT = "metadata"


class ImportCall(BaseModel):
    """What an importer's step calls: the artifact at the URI, with its metadata.

    The URI is the constant ``uri`` or the value of the input ``uri_input``; ``metadata``
    may hold ``{{$.inputs.parameters['x']}}`` placeholders (a value that is only a
    placeholder takes the input's value as it is; inside text, its text). Called with the
    runtime's convention: given the output artifact object, it points it at the URI;
    otherwise it returns the artifact. It pickles as its JSON.

    Example:
        >>> call = ImportCall(uri_input="uri", artifact_type="Model", metadata={
        ...     "version": "{{$.inputs.parameters['v']}}"})
        >>> call(uri="s3://models/m1", v=3)[IMPORTER_OUTPUT].metadata
        {'version': 3}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str = Field(default="importer", description="the component's name, for errors")
    uri: str | None = Field(default=None, description="the URI, when it is a constant")
    uri_input: str | None = Field(default=None, description="the input holding the URI")
    artifact_type: str = Field(default="Artifact", description="artifact class name: Dataset...")
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    reimport: bool = False
    output: str = IMPORTER_OUTPUT

    @model_validator(mode="after")
    def _one_uri(self) -> ImportCall:
        if (self.uri is None) == (self.uri_input is None):
            raise ValueError("an importer has exactly one of 'uri' or 'uri_input'")
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_import_call_from_json, (self.model_dump_json(),))

    def check(self, parameter_inputs: list[str]) -> None:
        """Check the metadata's placeholders against the importer's parameter inputs.

        Raises:
            PlaceholderError: an unsupported placeholder, or one naming no input.
        """
        interface = Interface(parameter_inputs=tuple(parameter_inputs))
        for text in _texts(self.metadata):
            for placeholder in check_text(text, interface):
                if placeholder.kind != "parameters":
                    raise PlaceholderError(
                        f"importer metadata refers to parameters only, not {placeholder.text}"
                    )

    def artifact_uri(self, inputs: Mapping[str, Any]) -> str:
        """The URI to import, from the constant or the input.

        Raises:
            ValueError: no URI, or a relative path (the step runs in a Ray worker, whose
                working directory is not the caller's).
        """
        uri = self.uri if self.uri is not None else inputs.get(self.uri_input or "")
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"component {self.component}: the artifact URI is empty ({uri!r})")
        problem = uri_problem(uri)
        if problem is not None:
            raise ValueError(f"component {self.component}: {problem}")
        return uri

    def __call__(self, **kwargs: Any) -> NamedOutputs | None:
        uri = self.artifact_uri(kwargs)
        local = local_path(uri)
        if local is not None and not os.path.exists(local):
            raise FileNotFoundError(
                f"component {self.component}: nothing to import at {uri!r} on this worker"
            )
        metadata = _fill_metadata(self.metadata, kwargs)
        target = kwargs.get(self.output)
        if isinstance(target, Artifact):  # the output the runtime made: point it at the URI
            target.uri = uri
            target.path = local if local is not None else uri
            target.metadata.update(metadata)
            return None
        made = imported_artifact(uri, ARTIFACT_TYPES.get(self.artifact_type, Artifact), metadata)
        made.name = self.output
        return NamedOutputs({self.output: made})


def _import_call_from_json(text: str) -> ImportCall:
    return ImportCall.model_validate_json(text)


def imported_artifact(
    uri: str, artifact_class: type[Artifact] = Artifact, metadata: Mapping[str, Any] | None = None
) -> Artifact:
    """The artifact an importer produces: ``uri`` as it is (no copy) and its metadata.

    Example:
        >>> imported_artifact("/data/train.csv").path
        '/data/train.csv'
    """
    path = local_path(uri)
    return artifact_class(
        name=IMPORTER_OUTPUT, uri=uri, metadata=dict(metadata or {}), path=path or uri
    )


def local_path(uri: str) -> str | None:
    """The local path of a path or ``file://`` URI; None for any other URI.

    Example:
        >>> local_path("file:///data/x.csv"), local_path("s3://b/x.csv")
        ('/data/x.csv', None)
    """
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    return parts.path if parts.scheme == "file" else None


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be imported (a relative path), or None."""
    path = local_path(uri)
    if path is not None and not os.path.isabs(path):
        return (
            f"the artifact URI {uri!r} is a relative path; steps run in Ray workers whose "
            "working directory is not yours, so give an absolute path or a URI"
        )
    return None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [*_texts(k), *_texts(v)]]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def _fill_metadata(value: Any, inputs: Mapping[str, Any]) -> Any:
    """``value`` with its placeholders replaced by the inputs' values."""
    if isinstance(value, dict):
        return {_fill_metadata(k, inputs): _fill_metadata(v, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_metadata(v, inputs) for v in value]
    if not isinstance(value, str):
        return value
    found = find_placeholders(value)
    if len(found) == 1 and found[0].text == value:
        return inputs.get(found[0].name)
    return fill_text(value, lambda p: parameter_text(inputs.get(p.name)))


class Importer(Component):
    """The component of one ``dsl.importer`` call: input ``uri`` (and one input per
    pipeline value used in the metadata), output ``artifact``."""

    def __init__(
        self,
        artifact_class: type[Artifact],
        *,
        reimport: bool,
        metadata: dict[str, JsonValue],
        metadata_inputs: Mapping[str, InputSpec],
    ) -> None:
        self.name = "importer"
        self.description = f"Import an existing {artifact_class.__name__}"
        self.python_func = typing.cast(types.FunctionType, imported_artifact)
        self.__wrapped__ = self.python_func
        self.options = TaskOptions(cache=not reimport)
        self.artifact_class = artifact_class
        self._inputs = {
            _URI_INPUT: InputSpec(kind=IOKind.PARAMETER, type="str"),
            **metadata_inputs,
        }
        self._outputs = {
            IMPORTER_OUTPUT: OutputSpec(
                kind=IOKind.ARTIFACT, type=artifact_class.__name__, source="parameter"
            )
        }
        call = ImportCall(
            component=self.name,
            uri_input=_URI_INPUT,
            artifact_type=artifact_class.__name__,
            metadata=metadata,
            reimport=reimport,
        )
        call.check([n for n, s in self._inputs.items() if s.kind is IOKind.PARAMETER])
        self.entrypoint = call

    def __repr__(self) -> str:
        return f"<importer of {self.artifact_class.__name__}>"


def importer(
    artifact_uri: Any,
    artifact_class: type[Artifact],
    reimport: bool = False,
    metadata: Mapping[str, Any] | None = None,
    download_to_workspace: bool = False,
) -> PipelineTask:
    """Use an existing artifact in a pipeline: a task whose output ``artifact`` is it.

    Call it inside a ``@dsl.pipeline`` function; ``artifact_uri`` is a constant (an
    absolute path, a ``file://`` or any ``pyarrow.fs`` URI) or a pipeline value (a
    parameter, a task's ``str`` output); ``metadata`` values may be pipeline values too.

    Example:
        >>> # @dsl.pipeline
        >>> # def train_on(uri: str = "s3://data/train.csv"):
        >>> #     data = dsl.importer(artifact_uri=uri, artifact_class=Dataset,
        >>> #                         metadata={"source": "warehouse"})
        >>> #     train(data=data.output)

    Returns:
        The :class:`~raypipe.dsl.task.PipelineTask`; ``.output`` is the artifact.

    Raises:
        PipelineDefinitionError: called outside a pipeline, a relative path, or a
            metadata value that is an artifact.
    """
    builder = active_builder()
    pipeline = builder.pipeline_name if builder is not None else None
    if builder is None:
        raise PipelineDefinitionError(
            "dsl.importer(...) makes a task: call it inside a @dsl.pipeline function"
        )
    if not (isinstance(artifact_class, type) and issubclass(artifact_class, Artifact)):
        raise PipelineDefinitionError(
            f"artifact_class is an artifact class (Dataset, Model, ...), got {artifact_class!r}",
            pipeline=pipeline,
            field="artifact_class",
        )
    if download_to_workspace:
        raise PipelineDefinitionError(
            "dsl.importer(download_to_workspace=True) is not supported: raypipe has no "
            "pipeline workspace; steps read the artifact where it is",
            pipeline=pipeline,
            field="download_to_workspace",
        )
    # an f-string of pipeline values is built when the step runs; a plain string is checked now
    formatted = isinstance(builder._with_channels(artifact_uri), FString)
    if isinstance(artifact_uri, str) and not formatted:
        problem = uri_problem(artifact_uri)
        if problem is not None or not artifact_uri:
            raise PipelineDefinitionError(
                problem or "artifact_uri is empty", pipeline=pipeline, field="artifact_uri"
            )
    elif not isinstance(artifact_uri, (str, Channel)):
        raise PipelineDefinitionError(
            f"artifact_uri is a string or a pipeline value, got {type(artifact_uri).__name__}",
            pipeline=pipeline,
            field="artifact_uri",
        )

    arguments: dict[str, Any] = {}
    inputs: dict[str, InputSpec] = {}

    def template(value: Any) -> Any:
        if isinstance(value, Channel):
            for name, given in arguments.items():
                if given is value:
                    return input_parameter(name)
            if value.type.kind is IOKind.ARTIFACT:
                raise PipelineDefinitionError(
                    f"importer metadata takes parameters, not the artifact {value!r}",
                    pipeline=pipeline,
                    field="metadata",
                )
            name = _METADATA_INPUT if not arguments else f"{_METADATA_INPUT}-{len(arguments) + 1}"
            arguments[name] = value
            inputs[name] = InputSpec(
                **value.type.model_dump(include={"kind", "type", "annotation", "nullable"})
            )
            return input_parameter(name)
        if isinstance(value, str):  # an f-string of pipeline values: text with placeholders
            built = builder._with_channels(value)
            if isinstance(built, FString):
                return "".join(p if isinstance(p, str) else template(p) for p in built.parts)
            return value
        if isinstance(value, Mapping):
            return {template(k): template(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [template(v) for v in value]
        return value

    filled = template(dict(metadata or {}))
    try:
        made = Importer(artifact_class, reimport=reimport, metadata=filled, metadata_inputs=inputs)
    except PlaceholderError as exc:  # a placeholder written into the metadata by hand
        raise PipelineDefinitionError(str(exc), pipeline=pipeline, field="metadata") from exc
    except ValueError as exc:  # pydantic: a metadata value that is not JSON
        raise PipelineDefinitionError(
            f"importer metadata must be JSON values: {exc}", pipeline=pipeline, field="metadata"
        ) from exc
    return made(**{_URI_INPUT: artifact_uri}, **arguments)
