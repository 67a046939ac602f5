"""``@dsl.component``: turn a typed Python function into a pipeline step.

Example:
    >>> @component(num_cpus=1)
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> add.name, list(add.inputs), list(add.outputs)
    ('add', ['a', 'b'], ['Output'])
    >>> add.python_func(1, 2)
    3
"""

from __future__ import annotations

import abc
import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from raypipe.dsl.calling import PathCall, uses_paths
from raypipe.dsl.interface import (
    InputSpec,
    IOKind,
    OutputSpec,
    describe_annotation,
    io_direction,
)
from raypipe.dsl.options import (
    TaskOptions,
    label_selector_problem,
    parse_duration,
    parse_memory,
)
from raypipe.dsl.paths import OutputPath
from raypipe.dsl.secrets import EnvValue, split_env
from raypipe.dsl.train import TorchDistributed
from raypipe.errors import ComponentDefinitionError

if typing.TYPE_CHECKING:
    from raypipe.dsl.task import PipelineTask

__all__ = ["SINGLE_OUTPUT", "BaseComponent", "Component", "component", "kfp_name"]

SINGLE_OUTPUT = "Output"
"""The name of a component's one return value (KFP's convention)."""

F = TypeVar("F", bound=Callable[..., Any])


def kfp_name(python_name: str) -> str:
    """KFP's naming: ``make_matrix`` -> ``make-matrix``.

    Example:
        >>> kfp_name("train_model")
        'train-model'
    """
    return python_name.replace("_", "-")


class BaseComponent(abc.ABC):
    """Something a pipeline can call to make a task: a component or a whole pipeline."""

    name: str
    description: str | None
    options: TaskOptions

    def _init_from_function(
        self,
        func: Callable[..., Any],
        decorator: str,
        name: str | None,
        description: str | None,
        *,
        allow_class: bool = False,
    ) -> None:
        if not inspect.isfunction(func) and not (allow_class and inspect.isclass(func)):
            hint = ""
            if inspect.isclass(func):
                hint = "; a class is a component with @dsl.component(actor=True)"
            raise ComponentDefinitionError(
                f"@dsl.{decorator} decorates a function, got {type(func).__name__}{hint}",
                component=getattr(func, "__name__", repr(func)),
            )
        self.python_func = func
        self.name = name or kfp_name(func.__name__)
        doc = inspect.getdoc(func)
        self.description = description or (doc.splitlines()[0] if doc else None)
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    @property
    @abc.abstractmethod
    def inputs(self) -> Mapping[str, InputSpec]:
        """The typed inputs, by name."""

    @property
    @abc.abstractmethod
    def outputs(self) -> Mapping[str, OutputSpec]:
        """The typed outputs, by name."""

    def __call__(self, *args: Any, **kwargs: Any) -> PipelineTask:
        from raypipe.dsl.pipeline import active_builder

        builder = active_builder()
        if builder is None:
            raise ComponentDefinitionError(
                "called outside a pipeline; inside a @dsl.pipeline function it makes a task, "
                f"and {self.name}.python_func(...) calls the plain function",
                component=self.name,
            )
        return builder.add_task(self, args, kwargs)


class Component(BaseComponent):
    """A typed Python function that runs as one Ray task per pipeline step.

    Attributes:
        name: the component name (the function name with ``_`` -> ``-``).
        python_func: the undecorated function, for unit tests.
        entrypoint: what a step calls: ``python_func`` itself, or a
            :class:`~raypipe.dsl.calling.PathCall` around it when it takes file paths.
        inputs / outputs: the typed interface read from the signature.
        options: default task options for every task of this component.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        options: TaskOptions,
        localns: dict[str, Any] | None = None,
    ) -> None:
        self._init_from_function(func, "component", None, None, allow_class=options.actor)
        self.options = options
        if inspect.isclass(func):  # an actor: __init__ runs once per actor, __call__ per step
            call = getattr(func, "__call__", None)  # noqa: B004 - the method, not callable()
            if not inspect.isfunction(call):
                raise ComponentDefinitionError(
                    "an actor component class defines __call__(self, ...) with typed inputs",
                    component=self.name,
                )
            self._inputs, self._outputs, _ = _read_signature(call, self.name, localns, method=True)
            self.entrypoint: Callable[..., Any] = func
        else:
            self._inputs, self._outputs, hints = _read_signature(func, self.name, localns)
            self.entrypoint = PathCall.for_function(func, hints) if uses_paths(hints) else func

    @property
    def inputs(self) -> Mapping[str, InputSpec]:
        return self._inputs

    @property
    def outputs(self) -> Mapping[str, OutputSpec]:
        return self._outputs

    def __repr__(self) -> str:
        return f"<component {self.name}>"


def caller_namespace() -> dict[str, Any]:
    """Local names where the decorator was applied, so that string annotations
    (``from __future__ import annotations``) can name classes defined in a function."""
    frame = inspect.currentframe()
    try:
        while frame is not None and frame.f_globals.get("__name__", "").startswith("raypipe.dsl"):
            frame = frame.f_back
        return dict(frame.f_locals) if frame is not None else {}
    finally:
        del frame


def _read_signature(
    func: Callable[..., Any],
    name: str,
    localns: dict[str, Any] | None = None,
    *,
    method: bool = False,
) -> tuple[dict[str, InputSpec], dict[str, OutputSpec], dict[str, Any]]:
    """The typed inputs and outputs of ``func``, and its resolved type hints."""
    try:
        hints = typing.get_type_hints(func, localns=localns, include_extras=True)
    except Exception as exc:  # NameError for unresolved forward references, mostly
        raise ComponentDefinitionError(
            f"cannot resolve the type annotations: {type(exc).__name__}: {exc}", component=name
        ) from exc

    inputs: dict[str, InputSpec] = {}
    outputs: dict[str, OutputSpec] = {}
    parameters = list(inspect.signature(func).parameters.values())
    for param in parameters[1:] if method else parameters:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ComponentDefinitionError(
                "*args and **kwargs are not allowed; declare each input",
                component=name,
                field=param.name,
            )
        if param.name not in hints:
            raise ComponentDefinitionError(
                "has no type annotation; annotate it (int, str, Input[Dataset], np.ndarray, ...)",
                component=name,
                field=param.name,
            )
        annotation = hints[param.name]
        try:
            io_type = describe_annotation(annotation)
        except TypeError as exc:
            raise ComponentDefinitionError(str(exc), component=name, field=param.name) from exc
        if io_direction(annotation) == "output" or isinstance(annotation, OutputPath):
            if param.default is not param.empty:
                raise ComponentDefinitionError(
                    "an output parameter takes no default", component=name, field=param.name
                )
            if io_type.kind is IOKind.OBJECT:
                raise ComponentDefinitionError(
                    f"an output parameter is one artifact or parameter, not {io_type.describe()}",
                    component=name,
                    field=param.name,
                )
            # an OutputPath of a parameter type comes back from the call (see PathCall)
            source = "parameter" if io_type.kind is IOKind.ARTIFACT else "return"
            outputs[param.name] = OutputSpec(**io_type.model_dump(), source=source)
            continue
        has_default = param.default is not param.empty
        default = param.default if has_default else None
        if has_default:
            _check_json_default(default, name, param.name)
        inputs[param.name] = InputSpec(
            **io_type.model_dump(exclude={"nullable"}),
            nullable=io_type.nullable or (has_default and default is None),
            optional=has_default,
            default=default,
        )

    returns = hints.get("return", None)
    for out_name, out_type in _return_outputs(returns, name, localns).items():
        if out_name in outputs:
            raise ComponentDefinitionError(
                f"output {out_name!r} is both returned and an Output[...] parameter",
                component=name,
                field=out_name,
            )
        outputs[out_name] = out_type
    return inputs, outputs, hints


def _return_outputs(
    returns: Any, name: str, localns: dict[str, Any] | None
) -> dict[str, OutputSpec]:
    if returns is None or returns is type(None):
        return {}
    if io_direction(returns) is not None:
        raise ComponentDefinitionError(
            "Input[...]/Output[...] cannot be a return type; declare an Output[...] parameter",
            component=name,
            field="return",
        )
    if is_namedtuple_type(returns):
        field_types = typing.get_type_hints(returns, localns=localns, include_extras=True)
        result = {}
        for field in returns._fields:
            if field not in field_types:
                raise ComponentDefinitionError(
                    "NamedTuple fields need type annotations", component=name, field=field
                )
            result[field] = _output_spec(field_types[field], name, field)
        return result
    return {SINGLE_OUTPUT: _output_spec(returns, name, "return")}


def _output_spec(annotation: Any, component: str, field: str) -> OutputSpec:
    try:
        io_type = describe_annotation(annotation)
    except TypeError as exc:
        raise ComponentDefinitionError(str(exc), component=component, field=field) from exc
    return OutputSpec(**io_type.model_dump(), source="return")


def is_namedtuple_type(annotation: Any) -> bool:
    """True for classes made by ``typing.NamedTuple`` / ``collections.namedtuple``."""
    return (
        isinstance(annotation, type)
        and issubclass(annotation, tuple)
        and hasattr(annotation, "_fields")
    )


def _check_json_default(value: Any, component: str, field: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ComponentDefinitionError(
            f"default {value!r} is not a JSON value, so it cannot be stored in the compiled "
            "pipeline; use None and build the value inside the function",
            component=component,
            field=field,
        ) from exc


def _training_entrypoint(made: Component, train: TorchDistributed) -> Callable[..., Any]:
    """The entrypoint of a training step, once the function is one a trainer can run."""
    from raypipe.train.step import TrainCall

    problem = None
    if made.options.actor:
        problem = "a training step is a function, not an actor class"
    elif made.entrypoint is not made.python_func:
        problem = "a training step takes no InputPath/OutputPath (report a checkpoint instead)"
    outputs = {n: o.type for n, o in made.outputs.items() if o.source == "parameter"}
    if problem is None and len(outputs) > 1:
        problem = (
            f"a training step has at most one Output[...] (its model), got {', '.join(outputs)}"
        )
    if problem is not None:
        raise ComponentDefinitionError(problem, component=made.name, field="train")
    return TrainCall(made.python_func, train, outputs)


_KFP_IGNORED = {"install_kfp_package", "use_venv", "additional_funcs"}


def _kfp_keywords(given: Mapping[str, Any], component: str) -> dict[str, Any]:
    """TaskOptions fields from KFP's ``@dsl.component`` keywords.

    Raises:
        ComponentDefinitionError: a keyword raypipe does not support (or does not know).
    """
    found: dict[str, Any] = {}
    for key, value in given.items():
        if key in _KFP_IGNORED or value is None:
            continue
        if key in ("base_image", "target_image"):
            # the target image (built with the component) is where it runs
            if key == "target_image" or "image" not in found:
                found["image"] = str(value)
        elif key == "packages_to_install":
            found["packages"] = [str(p) for p in value]
        elif key == "pip_index_urls":
            found["pip_index_urls"] = [str(u) for u in value]
        else:
            raise ComponentDefinitionError(
                f"@dsl.component does not support {key}= (KFP's keywords that raypipe takes: "
                "base_image, target_image, packages_to_install, pip_index_urls, "
                "install_kfp_package, use_venv, additional_funcs)",
                component=component,
                field=key,
            )
    return found


def _persistence(persist: str | Mapping[str, str]) -> dict[str, Any]:
    """The ``persist`` option as TaskOptions keeps it: empty for the default."""
    if isinstance(persist, str):
        return {} if persist == "background" else {"*": persist}
    return dict(persist)


@overload
def component(func: F, /) -> Component: ...


@overload
def component(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | str | None = None,
    resources: Mapping[str, float] | None = None,
    accelerator: str | None = None,
    retries: int = 0,
    backoff_seconds: float | str = 0.0,
    backoff_factor: float = 2.0,
    backoff_max: float | str = 3600.0,
    cache: bool = True,
    persist: str | Mapping[str, str] = "background",
    track: bool = False,
    image: str | None = None,
    label_selector: Mapping[str, str] | None = None,
    packages: list[str] | None = None,
    env: Mapping[str, EnvValue] | None = None,
    timeout: float | str | None = None,
    actor: bool = False,
    actor_pool_size: int | None = None,
    actor_restarts: int = 3,
    train: TorchDistributed | None = None,
    **kfp_options: Any,
) -> Callable[[F], Component]: ...


def component(
    func: F | None = None,
    /,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: int | str | None = None,
    resources: Mapping[str, float] | None = None,
    accelerator: str | None = None,
    retries: int = 0,
    backoff_seconds: float | str = 0.0,
    backoff_factor: float = 2.0,
    backoff_max: float | str = 3600.0,
    cache: bool = True,
    persist: str | Mapping[str, str] = "background",
    track: bool = False,
    image: str | None = None,
    label_selector: Mapping[str, str] | None = None,
    packages: list[str] | None = None,
    env: Mapping[str, EnvValue] | None = None,
    timeout: float | str | None = None,
    actor: bool = False,
    actor_pool_size: int | None = None,
    actor_restarts: int = 3,
    train: TorchDistributed | None = None,
    **kfp_options: Any,
) -> Component | Callable[[F], Component]:
    """Make a pipeline component from a typed function; use bare or with options.

    Example:
        >>> @component(num_cpus=2, retries=3, memory="2Gi")
        ... def train(lr: float) -> float:
        ...     return lr * 2
        >>> train.options.memory
        2147483648

    Args:
        num_cpus, num_gpus, memory, resources, accelerator: what the step reserves on Ray
            (memory in bytes or as a quantity such as ``"4Gi"``).
        retries, backoff_seconds, backoff_factor, backoff_max: how a failing step is retried.
        cache: whether the step's result may be reused from an earlier run.
        persist: when outputs are written for the cache (and for resume and replay):
            ``"background"`` while downstream steps already run, ``"sync"`` before they
            start, ``"none"`` never (the step then cannot be a cache hit); one mode for
            all outputs or a dict ``{output: mode}`` (``"*"`` for the rest).
        track: give every run of the step its own nested MLflow run (steps that log
            metrics or write Metrics, HTML or Markdown artifacts get one anyway).
        image, packages, env: the step's environment (an ``env`` value may be a
            ``dsl.Secret("NAME")``: read from the starting process's environment when the
            run starts, never stored in the pipeline). On a cluster generated by
            ``raypipe kuberay`` an ``image`` (or ``accelerator``) also places the step on
            the worker group that has it (see docs/cluster.md).
        label_selector: Ray node labels the step's node must carry, e.g.
            ``{"raypipe.io/pool": "gpu"}``; a value may be ``"v"``, ``"!v"``,
            ``"in(a,b)"`` or ``"!in(a,b)"`` (Ray's ``label_selector``).
        timeout: seconds (or ``"5m"``) after which the step is failed.
        actor, actor_pool_size: decorate a class whose ``__init__`` sets up once (loads a
            model) and whose ``__call__`` runs each step, in ``actor_pool_size`` Ray actors
            per run (default 1) shared by the component's steps, e.g. a loop's items.
        actor_restarts: how many times an actor whose process died is started again
            (its ``__init__`` runs again); the step it was running is retried on it when
            ``retries`` allows.
        train: run the function as a distributed PyTorch training loop on every worker
            of a Ray Train ``TorchTrainer`` (``dsl.TorchDistributed(num_workers=2)``); see
            :mod:`raypipe.train`. The step itself then reserves no CPU unless ``num_cpus``
            says otherwise.
        kfp_options: KFP's keywords, so that KFP code runs unchanged:
            ``base_image``/``target_image`` (the image), ``packages_to_install``,
            ``pip_index_urls``; ``install_kfp_package``, ``use_venv`` and
            ``additional_funcs`` change nothing here (no kfp is needed in a step, and
            helpers travel with the function). Others are refused, by name.
    """

    def decorate(f: F) -> Component:
        name = kfp_name(getattr(f, "__name__", "component"))
        kfp = _kfp_keywords(kfp_options, name)
        problem = label_selector_problem(label_selector or {})
        if problem is not None:  # said plainly, before pydantic would wrap it
            raise ComponentDefinitionError(problem, component=name, field="label_selector")
        try:
            options = TaskOptions(
                # a training step only drives its workers, which reserve their own
                num_cpus=0.0 if train is not None and num_cpus is None else num_cpus,
                num_gpus=num_gpus,
                memory=parse_memory(memory) if memory is not None else None,
                resources=dict(resources or {}),
                accelerator=accelerator,
                retries=retries,
                backoff_seconds=parse_duration(backoff_seconds),
                backoff_factor=backoff_factor,
                backoff_max=parse_duration(backoff_max),
                cache=cache,
                persist=_persistence(persist),
                track=track,
                image=image or kfp.get("image"),
                label_selector=dict(label_selector or {}),
                packages=list(packages or []) + kfp.get("packages", []),
                pip_index_urls=kfp.get("pip_index_urls", []),
                env=split_env(env or {})[0],
                secret_env=split_env(env or {})[1],
                timeout=parse_duration(timeout) if timeout is not None else None,
                actor=actor,
                actor_pool_size=actor_pool_size,
                actor_restarts=actor_restarts,
                train=train,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ComponentDefinitionError(f"invalid option: {exc}", component=name) from exc
        made = Component(f, options, caller_namespace())
        if train is not None:
            made.entrypoint = _training_entrypoint(made, train)
        unknown = sorted(set(options.persist) - set(made.outputs) - {"*"})
        if unknown:
            raise ComponentDefinitionError(
                f"persist names outputs it does not have: {', '.join(unknown)} "
                f"(outputs: {', '.join(made.outputs) or 'none'})",
                component=name,
                field="persist",
            )
        return made

    if func is not None:
        return decorate(func)
    return decorate
