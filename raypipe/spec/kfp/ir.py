"""Convert a Kubeflow Pipelines PipelineSpec (KFP IR) into raypipe's IR.

KFP's compiler writes a pipeline as a ``PipelineSpec``: ``components`` (each implemented by
an executor of ``deploymentSpec`` or by a ``dag``), a ``root`` DAG, and sub-DAGs for
control flow (``for-loop-N``, ``condition-N``, ``condition-branches-N``,
``exit-handler-N``) whose inputs are ``pipelinechannel--...``. raypipe's compiler builds
the same shapes, so the DAG structure maps one to one onto :mod:`raypipe.spec.models`.

Each executor becomes a runnable component: a lightweight Python component's embedded
function runs in-process on a Ray worker (:mod:`raypipe.spec.kfp.python_executor`), a
container component's command line runs in a subprocess and an importer refers to its
URI (:mod:`raypipe.spec.kfp.containers`). The executors as KFP wrote them (image,
command, args) stay in :attr:`KfpConversion.executors`.

What cannot be represented fails with :class:`~raypipe.errors.SpecLoadError` naming the
feature and the task.

Example:
    >>> import yaml
    >>> documents = list(yaml.safe_load_all(open("add_numbers.yaml")))  # doctest: +SKIP
    >>> result = convert(documents, source="add_numbers.yaml")           # doctest: +SKIP
    >>> result.spec.root.dag.tasks["add-numbers"].component              # doctest: +SKIP
    'add-numbers'
    >>> result.executors["add-numbers"].function_name                    # doctest: +SKIP
    'add_numbers'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue, ValidationError

from raypipe.dsl.artifacts import ARTIFACT_TYPES
from raypipe.dsl.component import Component
from raypipe.dsl.control import ANY_OBJECT, FINAL_STATUS_TYPE
from raypipe.dsl.interface import InputSpec, IOKind, IOType, OutputSpec
from raypipe.dsl.options import TaskOptions, parse_cpu, parse_duration, parse_memory
from raypipe.dsl.placeholders import has_placeholder
from raypipe.errors import Problem, SpecLoadError
from raypipe.spec.kfp import cel
from raypipe.spec.kfp.containers import (
    KfpExecutorError,
    container_component_spec,
    importer_component,
)
from raypipe.spec.kfp.python_executor import (
    KfpProgramError,
    pip_index_urls,
    pip_packages,
    python_function_spec,
)
from raypipe.spec.models import (
    Binding,
    Comparison,
    ComponentSpec,
    ConcatBinding,
    ConditionExpr,
    Conjunction,
    ConstantBinding,
    DagSpec,
    LoopSpec,
    Negation,
    OneOfBinding,
    OutputRef,
    PipelineInputBinding,
    PipelineSpec,
    TaskFinalStatusBinding,
    TaskOutputBinding,
    TaskSpec,
)
from raypipe.spec.validate import validate_spec

__all__ = [
    "KfpConversion",
    "KfpExecutor",
    "KfpPlaceholder",
    "convert",
    "is_kfp_spec",
]

_PARAMETER_TYPES = {
    "STRING": "str",
    "NUMBER_INTEGER": "int",
    "NUMBER_DOUBLE": "float",
    "BOOLEAN": "bool",
    "LIST": "list",
    "STRUCT": "dict",
}
_TASK_KEYS = {
    "componentRef",
    "taskInfo",
    "inputs",
    "dependentTasks",
    "cachingOptions",
    "triggerPolicy",
    "parameterIterator",
    "artifactIterator",
    "iteratorPolicy",
    "retryPolicy",
}
_ROOT_KEYS = {
    "components",
    "deploymentSpec",
    "pipelineInfo",
    "root",
    "schemaVersion",
    "sdkVersion",
    "defaultPipelineRoot",
}
_PYTHON_FUNCTION_FLAG = "--function_to_execute"
_IO_FIELDS = {"kind", "type", "annotation", "nullable"}
_PLACEHOLDER = "{{$.inputs."
_ROOT = " root"  # not a valid KFP component name
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\[['\"]([^'\"]+)['\"]\]\}\}")
_RUNTIME_PLACEHOLDER = re.compile(r"\{\{\$\.([a-z_]+)\}\}")
_KNOWN_PLACEHOLDERS = {
    "pipeline_job_name",
    "pipeline_job_resource_name",
    "pipeline_job_uuid",
    "pipeline_job_create_time_utc",
    "pipeline_job_schedule_time_utc",
    "pipeline_task_name",
    "pipeline_task_uuid",
}


def _coerce(value: JsonValue, kfp_type: object) -> JsonValue:
    """KFP stores every number as a double: ``2.0`` for an integer input becomes ``2``."""
    if kfp_type == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class KfpExecutor:
    """How KFP runs one component: a container, and for Python components the function.

    Example:
        >>> KfpExecutor(label="exec-add", image="python:3.11").kind
        'container'
    """

    label: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    function_name: str | None = None
    function_source: str | None = None

    @property
    def kind(self) -> str:
        """``"python"`` for a lightweight Python component, else ``"container"``."""
        return "python" if self.function_source is not None else "container"


@dataclass(frozen=True)
class KfpPlaceholder:
    """A constant the runtime must fill in: ``{{$.pipeline_job_name}}`` and friends.

    ``component`` is the raypipe component whose DAG holds the task (None for the root).

    Example:
        >>> KfpPlaceholder(None, "print", "job_name", "{{$.pipeline_job_name}}").input
        'job_name'
    """

    component: str | None
    task: str
    input: str
    value: str


@dataclass(frozen=True)
class KfpConversion:
    """The raypipe IR of a KFP pipeline, and the executors it needs (by component name).

    ``kfp_components`` maps each raypipe component name back to its KFP name
    (``add`` -> ``comp-add``). ``placeholders`` lists the constants that hold KFP run-time
    placeholders (job name, task name, ...), kept verbatim in ``spec`` for the runtime.
    """

    spec: PipelineSpec
    executors: Mapping[str, KfpExecutor]
    kfp_components: Mapping[str, str]
    placeholders: tuple[KfpPlaceholder, ...] = ()


def is_kfp_spec(document: object) -> bool:
    """True for a KFP PipelineSpec (a mapping, or a list of YAML documents starting with one).

    Example:
        >>> is_kfp_spec({"pipelineInfo": {"name": "p"}, "root": {"dag": {}}})
        True
        >>> is_kfp_spec({"schema_version": "raypipe/v1", "name": "p"})
        False
    """
    if isinstance(document, Sequence) and not isinstance(document, (str, bytes)):
        return bool(document) and is_kfp_spec(document[0])
    return (
        isinstance(document, Mapping)
        and isinstance(document.get("pipelineInfo"), Mapping)
        and isinstance(document.get("root"), Mapping)
    )


def convert(
    document: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, source: str
) -> KfpConversion:
    """Convert a KFP PipelineSpec to raypipe's IR and check it with ``validate_spec``.

    ``document`` is the parsed PipelineSpec, or the list of YAML documents of a compiled
    file (the PipelineSpec, then optionally KFP's platform-spec document).

    Raises:
        SpecLoadError: a feature raypipe cannot represent yet (named, with its task), or a
            converted pipeline that does not validate.

    Example:
        >>> doc = {"pipelineInfo": {"name": "empty"}, "root": {"dag": {"tasks": {}}},
        ...        "components": {}, "deploymentSpec": {"executors": {}}}
        >>> convert(doc, source="<doc>").spec.name
        'empty'
    """
    if isinstance(document, Mapping):
        documents: list[Mapping[str, Any]] = [document]
    else:
        documents = [d for d in document if d is not None]
    if not documents or not is_kfp_spec(documents[0]):
        raise SpecLoadError(
            [Problem("not a KFP PipelineSpec (no pipelineInfo and root)")], source=source
        )
    converter = _Converter(documents[0], documents[1:])
    try:
        spec = converter.run()
    except ValidationError as exc:  # a value out of range for raypipe's models
        converter.problem(f"cannot be represented in raypipe's IR: {exc}", path="")
        spec = None
    except (KeyError, TypeError, AttributeError) as exc:  # a field of the wrong shape
        converter.problem(f"malformed KFP PipelineSpec ({type(exc).__name__}: {exc})", path="")
        spec = None
    if converter.problems or spec is None:
        raise SpecLoadError(converter.problems, source=source)
    problems = validate_spec(spec)
    if problems:
        raise SpecLoadError(problems, source=source)
    return KfpConversion(
        spec, converter.executors, converter.kfp_names, tuple(converter.placeholders)
    )


class _Unsupported(Exception):
    """Raised inside the converter; becomes one Problem."""


class _Converter:
    def __init__(self, spec: Mapping[str, Any], extra: Sequence[Mapping[str, Any]]) -> None:
        self.doc = spec
        self.extra = extra
        self.problems: list[Problem] = []
        info = spec.get("pipelineInfo") or {}
        self.name = str(info.get("name") or "pipeline")
        self.kfp_components: Mapping[str, Any] = spec.get("components") or {}
        self.executor_docs: Mapping[str, Any] = (spec.get("deploymentSpec") or {}).get(
            "executors"
        ) or {}
        self.names = self._component_names()
        self.kfp_names = {v: k for k, v in self.names.items()}
        self.executors: dict[str, KfpExecutor] = {}
        self.executors_by_label: dict[str, KfpExecutor] = {}
        self.loop_bodies: set[str] = set()
        self.placeholders: list[KfpPlaceholder] = []

    # -- helpers -------------------------------------------------------------------------

    def problem(self, message: str, *, path: str, task: str | None = None) -> None:
        self.problems.append(Problem(message, self.name, task, None, path or None))

    def _component_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        taken = set(self.kfp_components)
        for kfp_name in self.kfp_components:
            short = kfp_name.removeprefix("comp-")
            names[kfp_name] = short if short == kfp_name or short not in taken else kfp_name
            taken.add(names[kfp_name])
        return names

    # -- the whole document ----------------------------------------------------------------

    def run(self) -> PipelineSpec | None:
        for key in self.doc:
            if key not in _ROOT_KEYS:
                self.problem(f"unsupported KFP field {key!r}", path=key)
        self._check_platform_spec()
        components: dict[str, ComponentSpec] = {}
        for kfp_name, body in self.kfp_components.items():
            converted = self.component(kfp_name, body, f"components.{kfp_name}")
            if converted is not None:
                components[self.names[kfp_name]] = converted
        root = self.component("root", self.doc.get("root") or {}, "root")
        if root is None or self.problems:
            return None
        components[_ROOT] = root  # retyped like any other DAG, then taken out again
        components = self._retype_outputs(components)
        root = components.pop(_ROOT)
        info = self.doc.get("pipelineInfo") or {}
        return PipelineSpec(
            name=self.name, description=info.get("description"), root=root, components=components
        )

    def _check_platform_spec(self) -> None:
        for index, extra in enumerate(self.extra, start=1):
            platforms = extra.get("platforms") if isinstance(extra, Mapping) else None
            if not isinstance(platforms, Mapping):
                self.problem("unexpected extra YAML document", path=f"document[{index}]")
                continue
            for platform, settings in platforms.items():
                executors = ((settings or {}).get("deploymentSpec") or {}).get("executors") or {}
                for label, config in executors.items():
                    if not config:
                        continue
                    tasks = ", ".join(self._tasks_using_executor(label)) or "no task"
                    features = ", ".join(sorted(config))
                    self.problem(
                        f"{platform} platform settings ({features}) are not supported yet "
                        f"(used by {tasks})",
                        path=f"document[{index}].platforms.{platform}.deploymentSpec."
                        f"executors.{label}",
                    )
                pipeline_settings = {k: v for k, v in (settings or {}).items() if v}
                pipeline_settings.pop("deploymentSpec", None)
                if pipeline_settings:
                    self.problem(
                        f"{platform} pipeline settings ({', '.join(sorted(pipeline_settings))}) "
                        "are not supported yet",
                        path=f"document[{index}].platforms.{platform}",
                    )

    def _tasks_using_executor(self, label: str) -> list[str]:
        components = {n for n, c in self.kfp_components.items() if c.get("executorLabel") == label}
        found: list[str] = []
        for body in [self.doc.get("root") or {}, *self.kfp_components.values()]:
            for task_name, task in ((body.get("dag") or {}).get("tasks") or {}).items():
                if (task.get("componentRef") or {}).get("name") in components:
                    found.append(task_name)
        return found

    # -- components ------------------------------------------------------------------------

    def component(self, kfp_name: str, body: Mapping[str, Any], path: str) -> ComponentSpec | None:
        problems_before = len(self.problems)
        inputs = self.input_definitions(
            body.get("inputDefinitions") or {}, f"{path}.inputDefinitions", in_dag="dag" in body
        )
        outputs = self.output_definitions(
            body.get("outputDefinitions") or {}, f"{path}.outputDefinitions"
        )
        for key in body:
            if key not in ("inputDefinitions", "outputDefinitions", "dag", "executorLabel"):
                self.problem(f"unsupported component field {key!r}", path=f"{path}.{key}")
        if "dag" in body:
            dag = self.dag(body["dag"], f"{path}.dag", inputs)
            if len(self.problems) > problems_before or dag is None:
                return None
            return ComponentSpec(inputs=inputs, outputs=outputs, dag=dag)
        label = body.get("executorLabel")
        if not isinstance(label, str) or label not in self.executor_docs:
            self.problem(f"executor {label!r} is not in deploymentSpec.executors", path=path)
            return None
        where = f"deploymentSpec.executors.{label}"
        name = self.names.get(kfp_name, kfp_name)
        tasks = self._tasks_using_executor(label)
        importer = self.executor_docs[label].get("importer")
        if isinstance(importer, Mapping):
            try:
                python = importer_component(
                    importer, inputs, outputs, label=label, task_names=tasks, component=name
                )
            except KfpExecutorError as exc:
                self.problem(str(exc), path=where)
                return None
            return ComponentSpec(inputs=inputs, outputs=outputs, python=python)
        executor = self.executor(label, self.executor_docs[label], where)
        if executor is None or len(self.problems) > problems_before:
            return None
        self.executors[name] = executor
        self.executors_by_label[label] = executor
        users = ", ".join(tasks) or "no task"
        if executor.function_source is None or executor.function_name is None:
            try:  # a container component: its command line runs on the worker
                python = container_component_spec(
                    self.executor_docs[label]["container"],
                    inputs,
                    outputs,
                    label=label,
                    task_names=tasks,
                    component=name,
                )
            except KfpExecutorError as exc:
                self.problem(str(exc), path=where)
                return None
            return ComponentSpec(inputs=inputs, outputs=outputs, python=python)
        try:
            python, made = python_function_spec(
                executor.function_source, executor.function_name, label=label
            )
        except KfpProgramError as exc:
            self.problem(f"{exc} (used by {users})", path=f"deploymentSpec.executors.{label}")
            return None
        agreed = self._agreed_outputs(kfp_name, inputs, outputs, made, users)
        if agreed is None:
            return None
        return ComponentSpec(inputs=inputs, outputs=agreed, python=python)

    def _agreed_outputs(
        self,
        kfp_name: str,
        inputs: Mapping[str, InputSpec],
        outputs: Mapping[str, OutputSpec],
        made: Component,
        users: str,
    ) -> dict[str, OutputSpec] | None:
        """The IR's outputs, each taken from where the function gives it (a return value,
        an ``Output[...]`` or an ``OutputPath``), once the function agrees with the IR."""
        path = f"components.{kfp_name}"
        problems = len(self.problems)
        for kind, declared, read in (
            ("inputs", inputs, made.inputs),
            ("outputs", outputs, made.outputs),
        ):
            if set(declared) != set(read):
                self.problem(
                    f"the function's {kind} ({', '.join(sorted(read)) or 'none'}) differ from "
                    f"the IR's ({', '.join(sorted(declared)) or 'none'}) (used by {users})",
                    path=path,
                )
                continue
            for name, spec in declared.items():
                artifact = spec.kind is IOKind.ARTIFACT
                if artifact != (read[name].kind is IOKind.ARTIFACT):
                    self.problem(
                        f"{kind[:-1]} {name!r} is {spec.describe()} in the IR but "
                        f"{read[name].describe()} in the function (used by {users})",
                        path=path,
                    )
        if len(self.problems) > problems:
            return None
        return {
            name: spec.model_copy(update={"source": made.outputs[name].source})
            for name, spec in outputs.items()
        }

    def executor(self, label: str, body: Mapping[str, Any], path: str) -> KfpExecutor | None:
        container = body.get("container")
        if not isinstance(container, Mapping):
            kinds = ", ".join(sorted(body)) or "nothing"
            users = ", ".join(self._tasks_using_executor(label)) or "no task"
            feature = "importer" if "importer" in body else kinds
            self.problem(
                f"KFP {feature} executors are not supported yet (used by {users})", path=path
            )
            return None
        for key in container:
            if key not in ("image", "command", "args", "env", "resources"):
                users = ", ".join(self._tasks_using_executor(label)) or "no task"
                self.problem(
                    f"container field {key!r} is not supported yet (used by {users})",
                    path=f"{path}.container.{key}",
                )
        command = tuple(str(c) for c in container.get("command") or ())
        args = tuple(str(a) for a in container.get("args") or ())
        env = {str(e["name"]): str(e.get("value", "")) for e in container.get("env") or ()}
        function_name = function_source = None
        if _PYTHON_FUNCTION_FLAG in args:
            position = args.index(_PYTHON_FUNCTION_FLAG)
            function_name = args[position + 1] if position + 1 < len(args) else None
            function_source = next(
                (c for c in reversed(command) if f"def {function_name}(" in c), None
            )
        return KfpExecutor(
            label=label,
            image=str(container.get("image", "")),
            command=command,
            args=args,
            env=env,
            resources=dict(container.get("resources") or {}),
            function_name=function_name,
            function_source=function_source,
        )

    def io_type(
        self, spec: Mapping[str, Any], path: str, *, kind: str, in_dag: bool = False
    ) -> IOType | None:
        if kind == "parameter":
            kfp_type = spec.get("parameterType")
            if kfp_type == "TASK_FINAL_STATUS":
                # a nested pipeline only forwards the status, possibly to a dict input of a
                # step (KFP passes it as a struct): typing.Any lets both edges check
                return ANY_OBJECT if in_dag else IOType(kind=IOKind.OBJECT, type=FINAL_STATUS_TYPE)
            if kfp_type not in _PARAMETER_TYPES:
                self.problem(f"unsupported parameter type {kfp_type!r}", path=path)
                return None
            return IOType(kind=IOKind.PARAMETER, type=_PARAMETER_TYPES[kfp_type])
        title = str((spec.get("artifactType") or {}).get("schemaTitle", ""))
        artifact = title.removeprefix("system.")
        if not title.startswith("system.") or artifact not in ARTIFACT_TYPES:
            self.problem(f"unsupported artifact type {title!r}", path=path)
            return None
        if spec.get("isArtifactList"):
            return IOType(kind=IOKind.OBJECT, type="list", annotation=f"list[{artifact}]")
        return IOType(kind=IOKind.ARTIFACT, type=artifact)

    def input_definitions(
        self, body: Mapping[str, Any], path: str, *, in_dag: bool
    ) -> dict[str, InputSpec]:
        inputs: dict[str, InputSpec] = {}
        for kind in ("parameters", "artifacts"):
            for name, spec in (body.get(kind) or {}).items():
                where = f"{path}.{kind}.{name}"
                io = self.io_type(spec, where, kind=kind[:-1], in_dag=in_dag)
                if io is None:
                    continue
                has_default = "defaultValue" in spec
                optional = bool(spec.get("isOptional")) or has_default
                default: JsonValue = _coerce(spec.get("defaultValue"), spec.get("parameterType"))
                inputs[name] = InputSpec(
                    **io.model_dump(),
                    optional=optional,
                    default=default,
                ).model_copy(update={"nullable": optional and default is None})
        return inputs

    def output_definitions(self, body: Mapping[str, Any], path: str) -> dict[str, OutputSpec]:
        outputs: dict[str, OutputSpec] = {}
        for kind in ("parameters", "artifacts"):
            for name, spec in (body.get(kind) or {}).items():
                io = self.io_type(spec, f"{path}.{kind}.{name}", kind=kind[:-1])
                if io is not None:
                    source = "parameter" if kind == "artifacts" else "return"
                    outputs[name] = OutputSpec(**io.model_dump(), source=source)
        return outputs

    # -- DAGs ------------------------------------------------------------------------------

    def dag(self, body: Mapping[str, Any], path: str, inputs: Mapping[str, InputSpec]) -> DagSpec:
        tasks: dict[str, TaskSpec] = {}
        for task_name, task in (body.get("tasks") or {}).items():
            try:
                tasks[task_name] = self.task(task_name, task, f"{path}.tasks.{task_name}", inputs)
            except _Unsupported as exc:
                self.problem(str(exc), path=f"{path}.tasks.{task_name}", task=task_name)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                self.problem(
                    f"task {task_name!r} is malformed ({type(exc).__name__}: {exc})",
                    path=f"{path}.tasks.{task_name}",
                    task=task_name,
                )
        outputs: dict[str, Binding] = {}
        for kind, key in (("parameters", "outputParameterKey"), ("artifacts", "outputArtifactKey")):
            for name, spec in ((body.get("outputs") or {}).get(kind) or {}).items():
                where = f"{path}.outputs.{kind}.{name}"
                try:
                    outputs[name] = self.dag_output(spec, key, kind)
                except _Unsupported as exc:
                    self.problem(str(exc), path=where)
                except (KeyError, TypeError, AttributeError) as exc:
                    self.problem(f"malformed DAG output ({type(exc).__name__}: {exc})", path=where)
        for key in body:
            if key not in ("tasks", "outputs"):
                self.problem(f"unsupported DAG field {key!r}", path=f"{path}.{key}")
        return DagSpec(tasks=tasks, outputs=outputs)

    def dag_output(self, spec: Mapping[str, Any], key: str, kind: str) -> Binding:
        def ref(selector: Mapping[str, Any]) -> Binding:
            return TaskOutputBinding(
                task_output=OutputRef(
                    task=str(selector["producerSubtask"]), output=str(selector[key])
                )
            )

        if kind == "parameters":
            if "valueFromParameter" in spec:
                return ref(spec["valueFromParameter"])
            if "valueFromOneof" in spec:
                selectors = spec["valueFromOneof"].get("parameterSelectors") or []
                return OneOfBinding(oneof=[ref(s) for s in selectors])
            raise _Unsupported(f"DAG output {sorted(spec)} is not supported yet")
        selectors = spec.get("artifactSelectors") or []
        if not selectors:
            raise _Unsupported("a DAG artifact output without artifactSelectors")
        if len(selectors) == 1:
            return ref(selectors[0])
        return OneOfBinding(oneof=[ref(s) for s in selectors])

    def task(
        self, name: str, body: Mapping[str, Any], path: str, scope: Mapping[str, InputSpec]
    ) -> TaskSpec:
        for key in body:
            if key not in _TASK_KEYS:
                raise _Unsupported(f"task {name!r}: {key} is not supported yet")
        kfp_component = str((body.get("componentRef") or {}).get("name", ""))
        component = self.names.get(kfp_component, kfp_component)
        inputs: dict[str, Binding] = {}
        task_inputs = body.get("inputs") or {}
        for input_name, spec in (task_inputs.get("parameters") or {}).items():
            inputs[input_name] = self.parameter_binding(name, input_name, spec)
        for input_name, spec in (task_inputs.get("artifacts") or {}).items():
            inputs[input_name] = self.artifact_binding(name, input_name, spec)
        for key in task_inputs:
            if key not in ("parameters", "artifacts"):
                raise _Unsupported(f"task {name!r}: inputs.{key} is not supported yet")
        declared = (self.kfp_components.get(kfp_component) or {}).get("inputDefinitions") or {}
        types = {n: s.get("parameterType") for n, s in (declared.get("parameters") or {}).items()}
        interpolated: set[str] = set()  # inputs KFP adds only for f-strings to read
        for input_name, binding in list(inputs.items()):
            if not isinstance(binding, ConstantBinding):
                continue
            constant = binding.constant
            if isinstance(constant, str) and _INPUT_PLACEHOLDER.search(constant):
                inputs[input_name] = self._concat(name, input_name, constant, inputs, path)
                interpolated.update(_INPUT_PLACEHOLDER.findall(constant))
                continue
            if isinstance(constant, str) and "{{$" in constant:
                self._placeholder(name, input_name, constant, path)
            inputs[input_name] = ConstantBinding(constant=_coerce(constant, types.get(input_name)))
        kfp_body = self.kfp_components.get(kfp_component) or {}
        if "dag" not in kfp_body:
            declared_names = set(declared.get("parameters") or {}) | set(
                declared.get("artifacts") or {}
            )
            for extra in interpolated - declared_names:
                inputs.pop(extra, None)
        info = body.get("taskInfo") or {}
        display = info.get("name")
        trigger = body.get("triggerPolicy") or {}
        for key in trigger:
            if key not in ("condition", "strategy"):
                raise _Unsupported(f"task {name!r}: triggerPolicy.{key} is not supported yet")
        strategy = trigger.get("strategy", "ALL_UPSTREAM_TASKS_SUCCEEDED")
        if strategy not in ("ALL_UPSTREAM_TASKS_SUCCEEDED", "ALL_UPSTREAM_TASKS_COMPLETED"):
            raise _Unsupported(f"task {name!r}: trigger strategy {strategy} is not supported yet")
        condition = None
        if "condition" in trigger:
            condition = self.condition(name, str(trigger["condition"]), inputs, kfp_component)
        loop = self.loop(name, body, inputs)
        if loop is not None:
            self.loop_bodies.add(component)
        return TaskSpec(
            component=component,
            display_name=display if isinstance(display, str) and display != name else None,
            inputs=inputs,
            after=[str(t) for t in body.get("dependentTasks") or []],
            options=self.options(name, body, kfp_component),
            loop=loop,
            condition=condition,
            trigger="all_done" if strategy == "ALL_UPSTREAM_TASKS_COMPLETED" else "all_succeeded",
        )

    def _concat(
        self, task: str, input_name: str, text: str, inputs: Mapping[str, Binding], path: str
    ) -> ConcatBinding:
        """An f-string of pipeline values: KFP's constant with ``{{$.inputs.parameters[...]}}``
        placeholders naming other inputs of the task."""
        parts: list[Binding] = []
        position = 0
        for match in _INPUT_PLACEHOLDER.finditer(text):
            if match.start() > position:
                parts.append(ConstantBinding(constant=text[position : match.start()]))
            referenced = match.group(1)
            if referenced not in inputs or referenced == input_name:
                raise _Unsupported(
                    f"task {task!r}, input {input_name!r}: the f-string {text!r} reads "
                    f"{referenced!r}, which is not another input of the task"
                )
            parts.append(inputs[referenced])
            position = match.end()
        if position < len(text):
            parts.append(ConstantBinding(constant=text[position:]))
        for part in parts:
            if isinstance(part, ConstantBinding) and has_placeholder(part.constant):
                self._placeholder(task, input_name, str(part.constant), path)
        return ConcatBinding(concat=parts)

    def _placeholder(self, task: str, input_name: str, text: str, path: str) -> None:
        """Record a run-time placeholder in a constant."""
        where = f"task {task!r}, input {input_name!r}"
        if _PLACEHOLDER in text:
            raise _Unsupported(f"{where}: the KFP placeholder in {text!r} is not supported yet")
        unknown = sorted(set(_RUNTIME_PLACEHOLDER.findall(text)) - _KNOWN_PLACEHOLDERS)
        if unknown or not _RUNTIME_PLACEHOLDER.search(text):
            shown = ", ".join(unknown) or text
            raise _Unsupported(f"{where}: the KFP placeholder {shown} is not supported yet")
        owner = path.split(".")[1] if path.startswith("components.") else None
        component = self.names.get(owner, owner) if owner is not None else None
        self.placeholders.append(KfpPlaceholder(component, task, input_name, text))

    def parameter_binding(self, task: str, input_name: str, spec: Mapping[str, Any]) -> Binding:
        where = f"task {task!r}, input {input_name!r}"
        selector = spec.get("parameterExpressionSelector")
        if selector is not None and "componentInputParameter" not in spec:
            raise _Unsupported(f"{where}: parameterExpressionSelector on a task output")
        if "componentInputParameter" in spec:
            fields = _selector_fields(str(selector)) if selector is not None else []
            if fields is None:
                raise _Unsupported(
                    f"{where}: parameterExpressionSelector {selector!r} is not supported yet"
                )
            return PipelineInputBinding(
                pipeline_input=str(spec["componentInputParameter"]), field=fields
            )
        if "taskOutputParameter" in spec:
            ref = spec["taskOutputParameter"]
            return TaskOutputBinding(
                task_output=OutputRef(
                    task=str(ref["producerTask"]), output=str(ref["outputParameterKey"])
                )
            )
        if "runtimeValue" in spec:
            value = spec["runtimeValue"]
            if "constant" not in value:
                raise _Unsupported(f"{where}: runtimeValue {sorted(value)} is not supported yet")
            return ConstantBinding(constant=value["constant"])
        if "taskFinalStatus" in spec:
            return TaskFinalStatusBinding(
                task_final_status=str(spec["taskFinalStatus"]["producerTask"])
            )
        raise _Unsupported(f"{where}: parameter binding {sorted(spec)} is not supported yet")

    def artifact_binding(self, task: str, input_name: str, spec: Mapping[str, Any]) -> Binding:
        if "taskOutputArtifact" in spec:
            ref = spec["taskOutputArtifact"]
            return TaskOutputBinding(
                task_output=OutputRef(
                    task=str(ref["producerTask"]), output=str(ref["outputArtifactKey"])
                )
            )
        if "componentInputArtifact" in spec:
            return PipelineInputBinding(pipeline_input=str(spec["componentInputArtifact"]))
        raise _Unsupported(
            f"task {task!r}, input {input_name!r}: artifact binding {sorted(spec)} "
            "is not supported yet"
        )

    def loop(
        self, task: str, body: Mapping[str, Any], inputs: Mapping[str, Binding]
    ) -> LoopSpec | None:
        policy = body.get("iteratorPolicy") or {}
        limit = policy.get("parallelismLimit")
        parallelism = int(limit) if limit else None
        if "parameterIterator" in body:
            iterator = body["parameterIterator"]
            items_spec = iterator.get("items") or {}
            if "raw" in items_spec:
                raw = items_spec["raw"]
                try:
                    values = json.loads(raw) if isinstance(raw, str) else raw
                except json.JSONDecodeError as exc:
                    raise _Unsupported(f"task {task!r}: loop items are not JSON: {exc}") from exc
                items: Binding = ConstantBinding(constant=values)
            elif "inputParameter" in items_spec:
                items = self._iterated_input(task, str(items_spec["inputParameter"]), inputs)
            else:
                raise _Unsupported(f"task {task!r}: parameterIterator items {sorted(items_spec)}")
            return LoopSpec(
                items=items, item_input=str(iterator["itemInput"]), parallelism=parallelism
            )
        if "artifactIterator" in body:
            iterator = body["artifactIterator"]
            name = str((iterator.get("items") or {}).get("inputArtifact", ""))
            items = self._iterated_input(task, name, inputs)
            return LoopSpec(
                items=items, item_input=str(iterator["itemInput"]), parallelism=parallelism
            )
        if policy:
            raise _Unsupported(f"task {task!r}: iteratorPolicy without an iterator")
        return None

    @staticmethod
    def _iterated_input(task: str, name: str, inputs: Mapping[str, Binding]) -> Binding:
        if name not in inputs:
            raise _Unsupported(f"task {task!r}: the loop iterates over {name!r}, not an input")
        return inputs[name]

    def condition(
        self, task: str, text: str, inputs: Mapping[str, Binding], kfp_component: str
    ) -> ConditionExpr:
        try:
            expr = cel.parse_condition(text)
        except cel.CelError as exc:
            raise _Unsupported(f"task {task!r}: condition {text!r}: {exc}") from exc
        declared = (self.kfp_components.get(kfp_component) or {}).get("inputDefinitions") or {}
        types = {n: s.get("parameterType") for n, s in (declared.get("parameters") or {}).items()}

        def operand(value: cel.Operand) -> Binding:
            if isinstance(value, cel.Literal):
                return ConstantBinding(constant=value.value)
            if value.name not in inputs:
                raise _Unsupported(f"task {task!r}: condition uses {value.name!r}, not an input")
            kfp_type = types.get(value.name)
            allowed = {
                None: None,
                "int": ("NUMBER_INTEGER", "NUMBER_DOUBLE"),
                "double": ("NUMBER_INTEGER", "NUMBER_DOUBLE"),
                "string": ("STRING",),
            }[value.cast]
            if allowed is not None and kfp_type not in allowed:
                raise _Unsupported(
                    f"task {task!r}: condition casts {value.name!r} ({kfp_type}) with "
                    f"{value.cast}(), a conversion raypipe conditions do not do yet"
                )
            return inputs[value.name]

        def build(node: cel.Expr) -> ConditionExpr:
            if isinstance(node, cel.Not):
                return Negation.model_validate({"not": build(node.operand)})
            if isinstance(node, cel.And):
                return Conjunction(all=[build(o) for o in node.operands])
            return Comparison.model_validate(
                {"op": node.op, "left": operand(node.left), "right": operand(node.right)}
            )

        return build(expr)

    def options(self, task: str, body: Mapping[str, Any], kfp_component: str) -> TaskOptions:
        update: dict[str, Any] = {}
        caching = body.get("cachingOptions")
        if caching is not None:
            for key in caching:
                if key != "enableCache":
                    raise _Unsupported(f"task {task!r}: cachingOptions.{key} is not supported yet")
            update["cache"] = bool(caching.get("enableCache", False))
        retry = body.get("retryPolicy")
        if retry is not None:
            try:
                update["retries"] = int(retry.get("maxRetryCount", 0))
                if "backoffDuration" in retry:
                    update["backoff_seconds"] = parse_duration(str(retry["backoffDuration"]))
                if "backoffFactor" in retry:
                    update["backoff_factor"] = max(1.0, float(retry["backoffFactor"]))
                if "backoffMaxDuration" in retry:
                    update["backoff_max"] = parse_duration(str(retry["backoffMaxDuration"]))
            except ValueError as exc:
                raise _Unsupported(f"task {task!r}: retryPolicy: {exc}") from exc
        label = str((self.kfp_components.get(kfp_component) or {}).get("executorLabel", ""))
        container = (self.executor_docs.get(label) or {}).get("container") or {}
        importer = (self.executor_docs.get(label) or {}).get("importer") or {}
        if importer.get("reimport"):
            update["cache"] = False  # import again on every run, as KFP does
        env = {str(e["name"]): str(e.get("value", "")) for e in container.get("env") or ()}
        if env:
            update["env"] = env
        program = self.executors_by_label.get(label)
        source = program.function_source if program is not None else None
        scripts = [
            c for c in container.get("command") or () if "pip install" in str(c) and c != source
        ]
        packages = [p for script in scripts for p in pip_packages(str(script))]
        if packages:
            update["packages"] = packages
            indexes = [u for script in scripts for u in pip_index_urls(str(script))]
            if indexes:
                update["pip_index_urls"] = list(dict.fromkeys(indexes))
        if container.get("image"):
            update["image"] = str(container["image"])
        update.update(_resources(task, container.get("resources") or {}))
        return TaskOptions.model_validate(update)

    # -- loop bodies: KFP declares their outputs as lists, raypipe as one item's value ------

    def _retype_outputs(self, components: dict[str, ComponentSpec]) -> dict[str, ComponentSpec]:
        done: set[str] = set()

        def binding_type(binding: Binding, owner: ComponentSpec) -> IOType | None:
            assert owner.dag is not None
            if isinstance(binding, OneOfBinding):
                return binding_type(binding.oneof[0], owner) if binding.oneof else None
            if isinstance(binding, PipelineInputBinding):
                return owner.inputs.get(binding.pipeline_input)
            if not isinstance(binding, TaskOutputBinding):
                return None
            producer = owner.dag.tasks.get(binding.task_output.task)
            if producer is None or producer.component not in components:
                return None
            retype(producer.component)
            output = components[producer.component].outputs.get(binding.task_output.output)
            if output is None or producer.loop is None:
                return output
            kind = IOKind.PARAMETER if output.kind is IOKind.PARAMETER else IOKind.OBJECT
            return IOType(
                kind=kind, type="list", annotation=f"list[{output.annotation or output.type}]"
            )

        def retype(name: str) -> None:
            if name in done:
                return
            done.add(name)
            component = components[name]
            if component.dag is None:
                return
            for task in component.dag.tasks.values():
                if task.component in components:
                    retype(task.component)
            outputs = dict(component.outputs)
            for output_name, spec in component.outputs.items():
                binding = component.dag.outputs.get(output_name)
                inner = binding_type(binding, component) if binding is not None else None
                # a loop body's outputs are one item's values; KFP also declares as lists
                # the outputs of blocks nested in a loop (a condition inside a for-loop)
                retype_this = name in self.loop_bodies or (_listy(spec) and not _listy(inner))
                if inner is not None and retype_this:
                    outputs[output_name] = OutputSpec(
                        **inner.model_dump(include=_IO_FIELDS), source=spec.source
                    )
            components[name] = component.model_copy(update={"outputs": outputs})

        for name in list(components):
            retype(name)
        return components


_SELECTOR = re.compile(r'^parseJson\(string_value\)((?:\[(?:"[^"]*"|\d+)\])+)$')
_SELECTOR_PART = re.compile(r'\[(?:"([^"]*)"|(\d+))\]')


def _listy(io: IOType | None) -> bool:
    return io is not None and io.type == "list"


def _selector_fields(selector: str) -> list[str | int] | None:
    """``parseJson(string_value)["a"][0]`` -> ``["a", 0]``; None for anything else.

    Example:
        >>> _selector_fields('parseJson(string_value)["A_a"]')
        ['A_a']
    """
    match = _SELECTOR.match(selector.strip())
    if match is None:
        return None
    return [
        key if index == "" else int(index) for key, index in _SELECTOR_PART.findall(match.group(1))
    ]


def _resources(task: str, resources: Mapping[str, Any]) -> dict[str, Any]:
    """TaskOptions fields from a KFP container's ``resources`` (requests win over limits)."""
    update: dict[str, Any] = {}
    known = {
        "cpuLimit",
        "cpuRequest",
        "resourceCpuLimit",
        "resourceCpuRequest",
        "memoryLimit",
        "memoryRequest",
        "resourceMemoryLimit",
        "resourceMemoryRequest",
        "accelerator",
    }
    for key in resources:
        if key not in known:
            raise _Unsupported(f"task {task!r}: resources.{key} is not supported yet")
    try:
        for key in ("cpuLimit", "resourceCpuLimit", "cpuRequest", "resourceCpuRequest"):
            if resources.get(key):
                update["num_cpus"] = parse_cpu(resources[key])
        for key in ("memoryLimit", "memoryRequest"):  # deprecated numbers of GB
            if resources.get(key):
                update["memory"] = int(float(resources[key]) * 10**9)
        for key in ("resourceMemoryLimit", "resourceMemoryRequest"):
            if resources.get(key):
                update["memory"] = parse_memory(str(resources[key]))
    except ValueError as exc:
        raise _Unsupported(f"task {task!r}: resources: {exc}") from exc
    accelerator = resources.get("accelerator") or {}
    count = accelerator.get("resourceCount") or accelerator.get("count")
    kind = accelerator.get("resourceType") or accelerator.get("type")
    if count:
        update["num_gpus"] = float(count)
    if kind:
        update["accelerator"] = str(kind)
    return update
