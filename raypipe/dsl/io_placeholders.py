"""KFP's input/output placeholders (``{{$.inputs.parameters['x']}}``): read, check, fill in.

A container component's command line and an importer's metadata refer to the step's
inputs and outputs with KFP's placeholder strings, in KFP's spelling, so that IR compiled
by KFP and by raypipe reads the same:

========================================================  =================================
placeholder                                               becomes
========================================================  =================================
``{{$.inputs.parameters['x']}}``                          the value (JSON unless a string)
``{{$.inputs.artifacts['x'].path}}`` / ``.uri``           the input artifact's path / URI
``{{$.inputs.artifacts['x'].metadata}}``                  its metadata as JSON
``{{$.inputs.artifacts['x'].metadata['k']}}``             one metadata value
``{{$.outputs.artifacts['x'].path}}`` / ``.uri``          where the step writes an artifact
``{{$.outputs.parameters['x'].output_file}}``             a file whose text becomes output x
========================================================  =================================

Example:
    >>> interface = Interface(parameter_inputs=("text",))
    >>> text = "echo {{$.inputs.parameters['text']}}"
    >>> [p.name for p in check_text(text, interface)]
    ['text']
    >>> fill_text(text, lambda p: "hi")
    'echo hi'
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Interface",
    "IOPlaceholder",
    "PlaceholderError",
    "check_text",
    "fill_text",
    "find_placeholders",
    "input_artifact",
    "input_parameter",
    "output_artifact",
    "output_parameter_file",
    "parameter_text",
]

_ANY = re.compile(r"\{\{\$(.*?)\}\}")
_REFERENCE = re.compile(
    r"""^\.(?P<side>inputs|outputs)\.(?P<kind>parameters|artifacts)"""
    r"""\[(?P<q>['"])(?P<name>[^'"]+)(?P=q)\](?P<rest>.*)$"""
)
_FIELD = re.compile(
    r"""^\.(?P<field>path|uri|metadata|output_file)"""
    r"""(?:\[(['"])(?P<key>[^'"]*)\2\])?$"""
)
_RUN_PLACEHOLDERS = {
    "pipeline_job_name": "PIPELINE_JOB_NAME_PLACEHOLDER",
    "pipeline_job_resource_name": "PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER",
    "pipeline_job_uuid": "PIPELINE_JOB_ID_PLACEHOLDER",
    "pipeline_job_create_time_utc": "PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER",
    "pipeline_job_schedule_time_utc": "PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER",
    "pipeline_root": "PIPELINE_ROOT_PLACEHOLDER",
    "pipeline_task_name": "PIPELINE_TASK_NAME_PLACEHOLDER",
    "pipeline_task_uuid": "PIPELINE_TASK_ID_PLACEHOLDER",
}


class PlaceholderError(ValueError):
    """A placeholder raypipe cannot fill in, or one naming an input or output that does
    not exist; the message names the placeholder."""


Field = Literal["path", "uri", "metadata", "output_file"]


@dataclass(frozen=True)
class IOPlaceholder:
    """One parsed placeholder: which side, kind and name it refers to, and which field.

    Example:
        >>> find_placeholders("{{$.inputs.artifacts['data'].metadata['rows']}}")[0].key
        'rows'
    """

    text: str
    side: Literal["inputs", "outputs"]
    kind: Literal["parameters", "artifacts"]
    name: str
    field: Field | None = None
    key: str | None = None


@dataclass(frozen=True)
class Interface:
    """The names a step's placeholders may refer to, by kind."""

    parameter_inputs: tuple[str, ...] = ()
    artifact_inputs: tuple[str, ...] = ()
    parameter_outputs: tuple[str, ...] = ()
    artifact_outputs: tuple[str, ...] = ()


def input_parameter(name: str) -> str:
    """``{{$.inputs.parameters['name']}}``."""
    return f"{{{{$.inputs.parameters['{name}']}}}}"


def input_artifact(name: str, field: str) -> str:
    """``{{$.inputs.artifacts['name'].field}}`` (field: path, uri or metadata)."""
    return f"{{{{$.inputs.artifacts['{name}'].{field}}}}}"


def output_artifact(name: str, field: str) -> str:
    """``{{$.outputs.artifacts['name'].field}}`` (field: path, uri or metadata)."""
    return f"{{{{$.outputs.artifacts['{name}'].{field}}}}}"


def output_parameter_file(name: str) -> str:
    """``{{$.outputs.parameters['name'].output_file}}``."""
    return f"{{{{$.outputs.parameters['{name}'].output_file}}}}"


def find_placeholders(text: str) -> list[IOPlaceholder]:
    """Every ``{{$...}}`` placeholder in ``text``, parsed.

    Raises:
        PlaceholderError: a placeholder raypipe does not support (``{{$}}``, a run
            placeholder such as ``{{$.pipeline_job_name}}``, a list of artifacts, ...).
    """
    return [_parse(match.group(0), match.group(1)) for match in _ANY.finditer(text)]


def _parse(text: str, body: str) -> IOPlaceholder:
    if body == "":
        raise PlaceholderError(
            f"the placeholder {text} (KFP's whole executor input) is not supported; "
            "refer to inputs and outputs one by one"
        )
    run = body.removeprefix(".")
    if run in _RUN_PLACEHOLDERS:
        raise PlaceholderError(
            f"the run placeholder {text} is not filled in inside a command; pass "
            f"dsl.{_RUN_PLACEHOLDERS[run]} as the argument of a str input and use that input"
        )
    match = _REFERENCE.match(body)
    if match is None:
        raise PlaceholderError(f"the placeholder {text} is not supported")
    side, kind, name, rest = match["side"], match["kind"], match["name"], match["rest"]
    if rest == "":
        if kind == "artifacts":
            raise PlaceholderError(
                f"the placeholder {text} (a whole artifact, or a list of artifacts) is not "
                "supported; use its .path, .uri or .metadata"
            )
        if side == "outputs":
            raise PlaceholderError(
                f"the placeholder {text} is not supported; an output parameter is written "
                "to its .output_file"
            )
        return IOPlaceholder(text, "inputs", "parameters", name)
    field = _FIELD.match(rest)
    valid = field is not None and (
        (kind == "artifacts" and field["field"] in ("path", "uri", "metadata"))
        or (side == "outputs" and kind == "parameters" and field["field"] == "output_file")
    )
    if field is None or not valid or (field["key"] is not None and field["field"] != "metadata"):
        raise PlaceholderError(f"the placeholder {text} is not supported")
    return IOPlaceholder(
        text,
        side,  # type: ignore[arg-type]  # the regex allows inputs|outputs only
        kind,  # type: ignore[arg-type]
        name,
        field["field"],  # type: ignore[arg-type]
        field["key"],
    )


def check_text(text: str, interface: Interface) -> list[IOPlaceholder]:
    """The placeholders of ``text``, each checked against the step's ``interface``.

    Raises:
        PlaceholderError: an unsupported placeholder, or one naming an input or output
            the step does not have (or has, but of the other kind).
    """
    found = find_placeholders(text)
    for placeholder in found:
        names = {
            ("inputs", "parameters"): interface.parameter_inputs,
            ("inputs", "artifacts"): interface.artifact_inputs,
            ("outputs", "parameters"): interface.parameter_outputs,
            ("outputs", "artifacts"): interface.artifact_outputs,
        }[(placeholder.side, placeholder.kind)]
        if placeholder.name not in names:
            side = placeholder.side[:-1]
            kind = placeholder.kind[:-1]
            known = ", ".join(names) or "none"
            raise PlaceholderError(
                f"the placeholder {placeholder.text} names no {kind} {side} "
                f"{placeholder.name!r} ({kind} {side}s: {known})"
            )
    return found


def fill_text(text: str, value_of: Callable[[IOPlaceholder], str]) -> str:
    """``text`` with each placeholder replaced by ``value_of(placeholder)``, in one pass
    (a value that looks like a placeholder is not replaced again)."""
    return _ANY.sub(lambda m: value_of(_parse(m.group(0), m.group(1))), text)


def parameter_text(value: Any) -> str:
    """A parameter's value as KFP writes it into a command: strings as they are, anything
    else as JSON (``true``, ``3``, ``0.5``, ``[1, 2]``).

    Example:
        >>> parameter_text("a b"), parameter_text(True), parameter_text({"k": 1})
        ('a b', 'true', '{"k": 1}')
    """
    return value if isinstance(value, str) else json.dumps(value)
