"""The IR: compiled pipelines as pydantic models, their files, schema and validation.

Example:
    >>> from raypipe.spec import load
    >>> spec = load("addition.yaml")  # doctest: +SKIP
"""

from raypipe.spec.arguments import bind_arguments, parse_cli_value
from raypipe.spec.compiler import compile_pipeline
from raypipe.spec.io import compile, dumps, json_schema, load, loads
from raypipe.spec.models import (
    SCHEMA_VERSION,
    ComponentSpec,
    ConcatBinding,
    ConstantBinding,
    DagSpec,
    OutputRef,
    PipelineInputBinding,
    PipelineSpec,
    PythonFunctionSpec,
    TaskOutputBinding,
    TaskSpec,
)
from raypipe.spec.validate import validate_spec

__all__ = [
    "SCHEMA_VERSION",
    "ComponentSpec",
    "ConcatBinding",
    "ConstantBinding",
    "DagSpec",
    "OutputRef",
    "PipelineInputBinding",
    "PipelineSpec",
    "PythonFunctionSpec",
    "TaskOutputBinding",
    "TaskSpec",
    "bind_arguments",
    "compile",
    "compile_pipeline",
    "dumps",
    "json_schema",
    "load",
    "loads",
    "parse_cli_value",
    "validate_spec",
]
