"""Check a run's arguments against a pipeline's inputs, and parse them from the command line.

Example:
    >>> bind_arguments(spec, {"a": 1, "b": 2})  # doctest: +SKIP
    {'a': 1, 'b': 2, 'c': 10}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from raypipe.dsl.artifacts import ARTIFACT_TYPES, Artifact
from raypipe.dsl.interface import InputSpec, IOKind, check_value
from raypipe.errors import PipelineArgumentError, Problem
from raypipe.spec.models import PipelineSpec

__all__ = ["bind_arguments", "parse_cli_value"]


def bind_arguments(spec: PipelineSpec, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """The complete arguments of a run: given values checked, defaults filled in.

    Raises:
        PipelineArgumentError: listing every missing, unknown or mistyped argument.
    """
    given = dict(arguments or {})
    problems: list[Problem] = []
    bound: dict[str, Any] = {}
    for name in given:
        if name not in spec.inputs:
            known = ", ".join(spec.inputs) or "none"
            problems.append(
                Problem(f"unknown argument (the pipeline's inputs: {known})", spec.name, None, name)
            )
    for name, input_spec in spec.inputs.items():
        if name in given:
            value = given[name]
            problem = _check_argument(value, input_spec)
            if problem:
                problems.append(Problem(problem, spec.name, None, name))
            elif input_spec.kind is IOKind.PARAMETER and isinstance(value, tuple):
                bound[name] = list(value)
            elif input_spec.type == "float" and isinstance(value, int):
                bound[name] = float(value)
            else:
                bound[name] = value
        elif input_spec.optional:
            bound[name] = input_spec.default
        else:
            problems.append(
                Problem(
                    f"missing required argument ({input_spec.describe()})", spec.name, None, name
                )
            )
    if problems:
        raise PipelineArgumentError(problems)
    return bound


def _check_argument(value: Any, spec: InputSpec) -> str | None:
    if spec.kind is IOKind.ARTIFACT:
        expected = ARTIFACT_TYPES.get(spec.type, Artifact)
        if not isinstance(value, expected):
            return f"expected a {spec.type} artifact object, got {type(value).__name__}"
        return None
    problem = check_value(value, spec)
    if problem is None and spec.kind is IOKind.PARAMETER:
        problem = _not_json(value)
    return problem


def _not_json(value: Any, where: str = "") -> str | None:
    """Why a parameter argument is not a JSON value (None if it is): a run's parameters are
    stored as JSON (its manifest, lineage, MLflow), so a NaN, a set or an object inside a
    list or dict would be changed or fail deep inside the run, after it started.

    Example:
        >>> _not_json({"betas": [0.9, float("nan")]})
        'not a JSON value: [betas][1] is nan (a non-finite float)'
    """
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else _where(where, f"{value} (a non-finite float)")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _not_json(item, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return _where(where, f"a dict with a {type(key).__name__} key ({key!r})")
            problem = _not_json(item, f"{where}[{key}]")
            if problem:
                return problem
        return None
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return _where(where, f"a {type(value).__name__} ({shown})")


def _where(where: str, what: str) -> str:
    return f"not a JSON value: {where} is {what}" if where else f"not a JSON value: {what}"


def parse_cli_value(text: str, spec: InputSpec) -> Any:
    """A command-line string as a value of the input's type (JSON for lists and dicts).

    Example:
        >>> parse_cli_value("3", InputSpec(kind="parameter", type="int"))
        3

    Raises:
        ValueError: the text is not a value of that type.
    """
    if spec.kind is IOKind.PARAMETER:
        if spec.type == "str":
            return text
        if spec.type == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        if spec.type in ("int", "float"):
            try:
                return int(text) if spec.type == "int" else float(text)
            except ValueError:
                raise ValueError(f"expected {spec.type}, got {text!r}") from None
    if spec.kind is IOKind.ARTIFACT:
        return ARTIFACT_TYPES.get(spec.type, Artifact)(name="", uri=text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if spec.kind is IOKind.OBJECT:
            return text
        raise ValueError(f"expected JSON for a {spec.type}, got {text!r}") from exc
