"""The IR: a compiled pipeline as plain, immutable pydantic data.

A :class:`PipelineSpec` holds a ``root`` component whose implementation is a DAG of tasks,
and a table of ``components``. A task names its component and binds each input to a
constant, an input of the enclosing DAG, or an output of another task in the same DAG.
A component is implemented by a Python function (readable source plus a portable
payload) or by a DAG (a pipeline used as a component).

Example (YAML):
    schema_version: raypipe/v1
    name: addition
    root:
      inputs: {a: {kind: parameter, type: int}, ...}
      outputs: {Output: {kind: parameter, type: int}}
      dag:
        tasks:
          add:   {component: add, inputs: {a: {pipeline_input: a}, b: {pipeline_input: b}}}
          add-2: {component: add, inputs: {a: {task_output: {task: add, output: Output}},
                                           b: {pipeline_input: c}}}
        outputs: {Output: {task_output: {task: add-2, output: Output}}}
    components:
      add: {inputs: ..., outputs: ..., python: {source: "def add(a: int, b: int) -> int: ..."}}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from raypipe.dsl.interface import InputSpec, OutputSpec
from raypipe.dsl.options import TaskOptions

__all__ = [
    "SCHEMA_VERSION",
    "Binding",
    "Comparison",
    "ConcatBinding",
    "ConditionExpr",
    "Conjunction",
    "LoopSpec",
    "Negation",
    "OneOfBinding",
    "TaskFinalStatusBinding",
    "binding_children",
    "ComponentSpec",
    "ConstantBinding",
    "DagSpec",
    "OutputRef",
    "PipelineInputBinding",
    "PipelineSpec",
    "PythonFunctionSpec",
    "TaskOutputBinding",
    "TaskSpec",
]

SCHEMA_VERSION = "raypipe/v1"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConstantBinding(_Frozen):
    """An input fixed at compile time to a JSON value."""

    constant: JsonValue


class PipelineInputBinding(_Frozen):
    """An input taken from an input of the enclosing DAG (a pipeline parameter).

    ``field`` selects inside the value: ``[lr]`` takes ``value["lr"]`` (a loop item's field).
    """

    pipeline_input: str
    field: list[str | int] = Field(default_factory=list)


class OutputRef(_Frozen):
    """An output of a task in the same DAG."""

    task: str
    output: str


class TaskOutputBinding(_Frozen):
    """An input taken from another task's output; the edge of the DAG."""

    task_output: OutputRef


class OneOfBinding(_Frozen):
    """The value of whichever alternative was produced: outputs of If/Elif/Else branches."""

    oneof: list[Binding]


class ConcatBinding(_Frozen):
    """A string joined at run time from parts: an f-string of pipeline values.

    Each part is a binding; string parts are used as they are, other values as JSON
    (``7``, ``true``, ``[1, 2]``).

    Example (YAML):
        msg: {concat: [{constant: "heads and "}, {task_output: {task: flip, output: Output}}]}
    """

    concat: list[Binding]


class TaskFinalStatusBinding(_Frozen):
    """How a task of the same DAG ended (an exit handler's block), for an exit task."""

    task_final_status: str


_BINDING_TAGS: dict[str, type[BaseModel]] = {
    "constant": ConstantBinding,
    "pipeline_input": PipelineInputBinding,
    "task_output": TaskOutputBinding,
    "oneof": OneOfBinding,
    "task_final_status": TaskFinalStatusBinding,
    "concat": ConcatBinding,
}


def _binding_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = [k for k in _BINDING_TAGS if k in value]
        return keys[0] if len(keys) == 1 else None
    for tag, cls in _BINDING_TAGS.items():
        if isinstance(value, cls):
            return tag
    return None


Binding = Annotated[
    Annotated[ConstantBinding, Tag("constant")]
    | Annotated[PipelineInputBinding, Tag("pipeline_input")]
    | Annotated[TaskOutputBinding, Tag("task_output")]
    | Annotated[OneOfBinding, Tag("oneof")]
    | Annotated[TaskFinalStatusBinding, Tag("task_final_status")]
    | Annotated[ConcatBinding, Tag("concat")],
    Discriminator(
        _binding_tag,
        custom_error_type="invalid_binding",
        custom_error_message=(
            "a binding has exactly one of 'constant', 'pipeline_input', 'task_output', "
            "'oneof', 'task_final_status' or 'concat'"
        ),
    ),
]
"""Where one input's value comes from."""

OneOfBinding.model_rebuild()
ConcatBinding.model_rebuild()


def binding_children(binding: Binding) -> list[Binding]:
    """The bindings nested in ``binding`` (a ``oneof``'s alternatives, a ``concat``'s parts)."""
    if isinstance(binding, OneOfBinding):
        return list(binding.oneof)
    if isinstance(binding, ConcatBinding):
        return list(binding.concat)
    return []


class Comparison(_Frozen):
    """``left OP right``: a condition on pipeline parameters and task outputs."""

    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: Binding
    right: Binding


class Negation(_Frozen):
    """True when ``not_`` is false (written ``not:`` in the document)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    not_: ConditionExpr = Field(alias="not")


class Conjunction(_Frozen):
    """True when every condition in ``all`` is."""

    all: list[ConditionExpr]


_CONDITION_TAGS = {"op": "comparison", "not": "negation", "all": "conjunction"}


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = [k for k in _CONDITION_TAGS if k in value]
        return _CONDITION_TAGS[keys[0]] if len(keys) == 1 else None
    tags: dict[type[BaseModel], str] = {
        Comparison: "comparison",
        Negation: "negation",
        Conjunction: "conjunction",
    }
    return tags.get(type(value))


ConditionExpr = Annotated[
    Annotated[Comparison, Tag("comparison")]
    | Annotated[Negation, Tag("negation")]
    | Annotated[Conjunction, Tag("conjunction")],
    Discriminator(
        _condition_tag,
        custom_error_type="invalid_condition",
        custom_error_message="a condition is a comparison (op), a 'not' or an 'all'",
    ),
]
"""A boolean expression deciding whether a condition block runs."""

Negation.model_rebuild()
Conjunction.model_rebuild()


class LoopSpec(_Frozen):
    """Run a task's DAG once per item; its outputs become lists in item order."""

    items: Binding
    item_input: str = Field(description="the DAG input that receives one item")
    parallelism: PositiveInt | None = None


class TaskSpec(_Frozen):
    """One step of a DAG: which component runs, where its inputs come from, how it runs."""

    component: str
    display_name: str | None = None
    inputs: dict[str, Binding] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list, description="tasks to wait for")
    options: TaskOptions = Field(default_factory=TaskOptions)
    loop: LoopSpec | None = None
    condition: ConditionExpr | None = None
    trigger: Literal["all_succeeded", "all_done"] = Field(
        default="all_succeeded",
        description="all_done: run even when what it waits for failed (an exit task)",
    )


class DagSpec(_Frozen):
    """A graph of tasks and which task outputs become the DAG's outputs."""

    tasks: dict[str, TaskSpec] = Field(default_factory=dict)
    outputs: dict[str, Binding] = Field(default_factory=dict)


class PythonFunctionSpec(_Frozen):
    """A Python function: its readable source and a portable payload to run it anywhere.

    ``payload`` is the function serialised by value with cloudpickle (base64): its module's
    helpers and constants travel with it, imported packages are imported by name. It needs
    the same Python minor version (``python``) to load.
    """

    name: str
    module: str
    filename: str | None = Field(default=None, description="where the source was defined")
    line: int | None = Field(default=None, description="first line of the source there")
    source: str | None = None
    payload: str
    python: str = Field(description="major.minor Python version the payload was made with")

    @field_validator("payload")
    @classmethod
    def _pickle_in_base64(cls, value: str) -> str:
        # A damaged payload would otherwise fail deep inside the runner (base64) or make
        # every step look like a crashed worker (unpickling): say so when the spec loads.
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not base64 ({exc}); compile the pipeline again") from None
        if not data.startswith(b"\x80"):  # the PROTO opcode every cloudpickle payload opens with
            raise ValueError("not a pickled function; compile the pipeline again")
        return value


class ComponentSpec(_Frozen):
    """A reusable step: a typed interface implemented by a Python function or a DAG."""

    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    python: PythonFunctionSpec | None = None
    dag: DagSpec | None = None

    @model_validator(mode="after")
    def _one_implementation(self) -> ComponentSpec:
        if (self.python is None) == (self.dag is None):
            raise ValueError("a component has exactly one of 'python' or 'dag'")
        return self


class PipelineSpec(_Frozen):
    """A whole compiled pipeline; ``raypipe.run`` accepts it as it accepts a ``Pipeline``."""

    schema_version: Literal["raypipe/v1"] = "raypipe/v1"
    name: str
    description: str | None = None
    root: ComponentSpec
    components: dict[str, ComponentSpec] = Field(default_factory=dict)

    @property
    def inputs(self) -> dict[str, InputSpec]:
        return self.root.inputs

    @property
    def outputs(self) -> dict[str, OutputSpec]:
        return self.root.outputs

    def digest(self) -> str:
        """A sha256 of the canonical JSON form: equal specs have equal digests.

        Example:
            >>> spec.digest()[:12]  # doctest: +SKIP
            '5f1c0e0a9b3d'
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The document form: defaults left out, so files stay short and readable."""
        document = self.model_dump(mode="json", exclude_defaults=True, by_alias=True)
        return {"schema_version": self.schema_version, **document}
