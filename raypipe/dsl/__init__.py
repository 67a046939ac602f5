"""Authoring pipelines: components, pipelines, artifact types and task options.

Example:
    >>> from raypipe import dsl
    >>> @dsl.component
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> @dsl.pipeline(name="addition")
    ... def addition(a: int, b: int, c: int = 10) -> int:
    ...     return add(a=add(a=a, b=b).output, b=c).output

This package never imports Ray, MLflow or DuckDB: building a pipeline is cheap and local.
"""

from raypipe.dsl.artifacts import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Markdown,
    Metrics,
    Model,
    SlicedClassificationMetrics,
)
from raypipe.dsl.component import Component, component
from raypipe.dsl.container import (
    ConcatPlaceholder,
    ContainerSpec,
    IfPresentPlaceholder,
    container_component,
)
from raypipe.dsl.control import (
    Collected,
    Condition,
    Elif,
    Else,
    ExitHandler,
    If,
    OneOf,
    ParallelFor,
    PipelineTaskFinalStatus,
)
from raypipe.dsl.importer import importer
from raypipe.dsl.interface import Input, Output
from raypipe.dsl.options import TaskOptions
from raypipe.dsl.paths import InputPath, OutputPath
from raypipe.dsl.pipeline import Pipeline, pipeline
from raypipe.dsl.placeholders import (
    PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
    PIPELINE_JOB_ID_PLACEHOLDER,
    PIPELINE_JOB_NAME_PLACEHOLDER,
    PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
    PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
    PIPELINE_ROOT_PLACEHOLDER,
    PIPELINE_TASK_ID_PLACEHOLDER,
    PIPELINE_TASK_NAME_PLACEHOLDER,
)
from raypipe.dsl.secrets import Secret
from raypipe.dsl.step_context import get_uri
from raypipe.dsl.task import PipelineTask, TaskOutput
from raypipe.dsl.train import TorchDistributed

__all__ = [
    "PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER",
    "PIPELINE_JOB_ID_PLACEHOLDER",
    "PIPELINE_JOB_NAME_PLACEHOLDER",
    "PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER",
    "PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER",
    "PIPELINE_ROOT_PLACEHOLDER",
    "PIPELINE_TASK_ID_PLACEHOLDER",
    "PIPELINE_TASK_NAME_PLACEHOLDER",
    "HTML",
    "Artifact",
    "ClassificationMetrics",
    "Collected",
    "Component",
    "ConcatPlaceholder",
    "Condition",
    "ContainerSpec",
    "Dataset",
    "Elif",
    "Else",
    "ExitHandler",
    "If",
    "IfPresentPlaceholder",
    "Input",
    "InputPath",
    "Markdown",
    "Metrics",
    "Model",
    "OneOf",
    "Output",
    "OutputPath",
    "ParallelFor",
    "Secret",
    "SlicedClassificationMetrics",
    "Pipeline",
    "PipelineTask",
    "PipelineTaskFinalStatus",
    "TaskOptions",
    "TaskOutput",
    "TorchDistributed",
    "component",
    "container_component",
    "get_uri",
    "importer",
    "pipeline",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "raypipe.dsl"
del _name, _obj
