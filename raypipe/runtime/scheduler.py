"""Interpret a PipelineSpec step by step: what to submit now, and what must wait.

Static parts of the DAG are submitted in one pass, with upstream ObjectRefs as arguments,
so Ray resolves those dependencies itself. The scheduler waits (and the driver fetches a
value) only where control flow needs one: a loop over a step's output, a condition on a
step's output, an exit task that must see how its block ended, and the windows of a loop
with many items.

The runner drives it: :meth:`Scheduler.start` submits what can go, the runner waits on
:meth:`Scheduler.waiting_on` (plus every step report) and hands ready refs to
:meth:`Scheduler.on_ready`, until :attr:`Scheduler.finished`.

Memory stays bounded by what is in flight, not by how many steps have run:

- at most ``window`` steps are submitted and not yet ended (the *step window*, default
  :data:`DEFAULT_STEP_WINDOW`). A frame with a step ready while the window is full is
  *parked*; as reports come in, parked frames go on in turn, each with a share of the free
  places, so that every branch of a wide graph keeps moving (none is starved by one that
  was opened first). Ray itself keeps a task spec and its return objects per submitted
  task, so a graph of 10,000 steps submitted at once costs the driver far more than the
  steps it runs at a time;
- the scheduler tracks the refs still *incomplete* (not every ref that completed);
- a frame lets go of a task's outputs once every task of the frame that reads them has
  been processed (unless the frame's own outputs read them), and of a step's report once
  it succeeded: what an ``after`` or a final status still needs are the reports of steps
  in flight or that did not succeed;
- a finished loop iteration keeps only the outputs its loop's consumers read, and
  fetched values are not cached.

Example:
    >>> scheduler = Scheduler(spec, arguments, submit=submit_step, run_id="r1")  # doctest: +SKIP
    >>> scheduler.start()                                                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raypipe.dsl.placeholders import fill_placeholders, has_placeholder
from raypipe.dsl.task import COMPARISONS
from raypipe.runtime.cache import output_identity, step_key, unique_identity, value_identity
from raypipe.runtime.result import TaskState
from raypipe.runtime.worker import (
    CollectedRefs,
    FailedOutput,
    JoinedParts,
    StepReport,
    join_text,
)
from raypipe.spec.graph import read_outputs, task_dependencies, topological_order
from raypipe.spec.models import (
    Binding,
    ComponentSpec,
    ConcatBinding,
    ConditionExpr,
    Conjunction,
    ConstantBinding,
    DagSpec,
    Negation,
    OneOfBinding,
    PipelineInputBinding,
    PipelineSpec,
    TaskFinalStatusBinding,
    TaskOutputBinding,
    TaskSpec,
    binding_children,
)
from raypipe.spec.packaging import decode_payload

__all__ = ["Absent", "Collected", "Known", "Ref", "Scheduler", "StepCall", "StepRecord", "Value"]

DEFAULT_LOOP_WINDOW = 1024
"""Iterations of one loop expanded at once when it sets no ``parallelism``."""

DEFAULT_STEP_WINDOW = 256
"""Steps of one run submitted to Ray and not yet ended, at most (see the module docstring);
a run on a large cluster gets more (``raypipe.runtime.execution.step_window``).

A step that waits for another outside the scheduler (an exit task, ``trigger="all_done"``)
is submitted when that wait ends, even if the window is full.
"""


# --- values as the driver sees them ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Known:
    """A value the driver holds: a constant, an argument, a loop item, a fetched output.

    ``identity`` is set where the value alone does not say it (an argument put in the
    object store); otherwise it is computed from ``value`` when a cache key needs it.
    """

    value: Any
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class Ref:
    """A step output still in the object store: ``step``'s output ``output``."""

    ref: Any
    step: str
    output: str
    identity: str  # see raypipe.runtime.cache.output_identity


@dataclass(frozen=True, slots=True)
class Collected:
    """A loop's values of one output, in item order."""

    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Joined:
    """A string made of parts when the step runs (an f-string of pipeline values)."""

    parts: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Absent:
    """No value: its branch was not taken, or what makes it failed."""

    reason: str  # "skipped" or "failed"


Value = Known | Ref | Collected | Joined | Absent


# --- what the runner gets ------------------------------------------------------------


@dataclass
class StepCall:
    """One step to submit now."""

    name: str
    component_key: str
    component: ComponentSpec
    task: TaskSpec
    inputs: dict[str, Any]  # plain values, ObjectRefs, CollectedRefs
    after: list[Any]  # report refs to wait for
    upstream: tuple[str, ...]  # step names it depends on, for failure attribution
    sources: dict[str, list[str]]  # input -> the "step/output"s its value came from
    cache_key: str  # see raypipe.runtime.cache; unique to the run when the step is not cached
    identities: dict[str, str]  # input -> the identity the key was computed from


@dataclass(slots=True)
class StepRecord:
    """A step of the run: submitted (``state`` is None) or decided without running."""

    name: str
    component_key: str
    display_name: str | None
    # Steps it read from, until its report is in (only a step without one needs them).
    upstream: tuple[str, ...]
    state: TaskState | None = None  # SKIPPED / UPSTREAM_FAILED when not submitted


# A DAG's task order, each task's dependencies, how many of its tasks read each task, and
# the tasks its outputs read.
_Shape = tuple[list[str], dict[str, list[str]], dict[str, int], frozenset[str]]

Submit = Callable[[StepCall], tuple[dict[str, Any], Any]]
Fetch = Callable[[list[Any]], list[Any]]  # ray.get of refs that are ready


# --- the interpreter ---------------------------------------------------------------------


class _Frame:
    """One instance of a DAG: the root, a nested pipeline, a branch, one loop iteration."""

    def __init__(
        self,
        scheduler: Scheduler,
        dag: DagSpec,
        prefix: str,
        scope: dict[str, Value],
        after: list[Any],
        on_done: Callable[[_Frame], None],
    ) -> None:
        self.scheduler, self.dag, self.prefix, self.scope = scheduler, dag, prefix, scope
        self.after = after  # report refs every step in this frame waits for
        self.on_done = on_done
        # The same for every iteration of a loop: computed once per DAG.
        self.order, self.dependencies, readers, self.kept = scheduler._shape(dag)
        # task -> tasks not yet processed that read it; at 0 its outputs are let go
        self.unread = dict(readers)
        self.outputs: dict[str, dict[str, Value]] = {}  # task -> output -> value
        # Report ref -> the task of this frame it ends (a step, or a DAG task holding it),
        # for the reports still in flight or of steps that did not succeed: a report that
        # succeeded is dropped (see Scheduler.on_ready).
        self.leaves: dict[Any, str] = {}
        self.done: set[str] = set()  # tasks processed (submitted, expanded or decided)
        self.busy: set[str] = set()  # tasks whose processing waits on something
        self.cursor = 0  # tasks in ``order`` before it are all done or busy
        self.parked = False  # waiting in the scheduler's queue for a place in the window
        self.finished = False

    def leaves_of(self, tasks: Collection[str]) -> list[Any]:
        """The reports of ``tasks`` still in flight or that did not succeed."""
        return [ref for ref, task in self.leaves.items() if task in tasks] if tasks else []

    def take_leaves(self) -> dict[Any, str]:
        """This finished frame's leaves, handed over to whatever holds them next."""
        leaves, self.leaves = self.leaves, {}
        return leaves

    def advance(self, limit: int | None = None) -> None:
        """Process every task whose dependencies are processed; finish when all are.

        While the scheduler's step window is full, or after ``limit`` tasks, the frame is
        parked instead, to go on when steps end.
        """
        scheduler, order, done, busy = self.scheduler, self.order, self.done, self.busy
        processed = 0
        progressed = True
        while progressed:
            progressed = False
            while self.cursor < len(order) and (
                order[self.cursor] in done or order[self.cursor] in busy
            ):
                self.cursor += 1
            for index in range(self.cursor, len(order)):
                name = order[index]
                if name in done or name in busy:
                    continue
                if all(d in done for d in self.dependencies[name]):
                    if scheduler.full or (limit is not None and processed >= limit):
                        scheduler._park(self)
                        return
                    scheduler._process(self, name)
                    processed += 1
                    progressed = True
        if not self.finished and len(done) == len(self.dag.tasks):
            self.finished = True
            self.on_done(self)

    def complete(self, name: str, outputs: dict[str, Value], leaves: Iterable[Any]) -> None:
        """``name`` is processed: its outputs, and the reports of the steps it holds."""
        if self.unread.get(name) or name in self.kept:  # else nothing ever reads them
            self.outputs[name] = outputs
        holders = self.scheduler._leaf_holder
        for ref in leaves:
            self.leaves[ref] = name
            if ref in holders:
                holders[ref] = self.leaves
        for dependency in self.dependencies[name]:
            left = self.unread.get(dependency)
            if left is None:
                continue
            self.unread[dependency] = left - 1
            if left == 1 and dependency not in self.kept:
                self.outputs.pop(dependency, None)
        self.done.add(name)
        self.busy.discard(name)

    def resolve(self, binding: Binding) -> Value:
        """The value of ``binding`` inside this frame (its dependencies are processed)."""
        if isinstance(binding, ConstantBinding):
            return Known(binding.constant)
        if isinstance(binding, PipelineInputBinding):
            value = self.scope[binding.pipeline_input]
            return self.scheduler._select(value, binding.field) if binding.field else value
        if isinstance(binding, TaskOutputBinding):
            ref = binding.task_output
            return self.outputs[ref.task].get(ref.output, Absent("failed"))
        if isinstance(binding, OneOfBinding):
            values = [self.resolve(b) for b in binding.oneof]
            present = [v for v in values if not isinstance(v, Absent)]
            if present:
                return present[0]
            failed = any(isinstance(v, Absent) and v.reason == "failed" for v in values)
            return Absent("failed" if failed else "skipped")
        if isinstance(binding, TaskFinalStatusBinding):
            return self.scheduler._final_status(self, binding.task_final_status)
        if isinstance(binding, ConcatBinding):
            parts = tuple(self.resolve(b) for b in binding.concat)
            if all(isinstance(p, Known) for p in parts):
                return Known(join_text(p.value for p in parts if isinstance(p, Known)))
            return Joined(parts)
        raise AssertionError(f"unknown binding {binding!r}")


@dataclass(frozen=True)
class _Node:
    """A task of a frame, being processed: where it is and what it runs."""

    frame: _Frame
    name: str
    task: TaskSpec
    component: ComponentSpec

    @property
    def path(self) -> str:
        """The task's name in results: its frame's prefix and its name."""
        return f"{self.frame.prefix}{self.name}"

    def unpack(self) -> tuple[_Frame, str, str, TaskSpec, ComponentSpec]:
        return self.frame, self.name, self.path, self.task, self.component


class Scheduler:
    """Decides, step by step, what one run submits to Ray."""

    def __init__(
        self,
        spec: PipelineSpec,
        arguments: dict[str, Any],
        *,
        submit: Submit,
        fetch: Fetch,
        run_id: str,
        run_name: str,
        identities: dict[str, str] | None = None,
        keys: bool = True,
        loop_window: int = DEFAULT_LOOP_WINDOW,
        window: int = DEFAULT_STEP_WINDOW,
        placeholders: Mapping[str, str] | None = None,
    ) -> None:
        self.spec, self.submit, self.fetch = spec, submit, fetch
        # run-level values of dsl.PIPELINE_*_PLACEHOLDER (the task-level ones come per step)
        self.placeholders = dict(placeholders or {})
        self._placeholder_inputs: dict[int, list[str]] = {}  # id(task) -> inputs to fill
        self.run_id, self.run_name, self.loop_window = run_id, run_name, loop_window
        if window < 1:
            raise ValueError(f"pipeline {spec.name!r}: the step window must be at least 1")
        self.window = window
        self._identities = identities or {}  # argument -> identity, where given
        self.keys = keys  # compute cache keys (a run without the cache needs none)
        self._code: dict[str, str] = {}  # component key -> code digest
        self.records: dict[str, StepRecord] = {}
        self.outputs: dict[str, Value] = {}
        self.finished = False
        self._arguments = arguments
        self._waits: dict[Any, list[Callable[[], None]]] = {}  # ref -> callbacks when ready
        # Refs of submitted steps not yet complete: a step's outputs complete with its report.
        self._incomplete: set[Any] = set()
        # Report ref -> its step's output refs, for every step in flight (the window's count).
        self._in_flight: dict[Any, list[Any]] = {}
        # Report ref in flight -> the leaves (see _Frame.leaves) that hold it now.
        self._leaf_holder: dict[Any, dict[Any, str]] = {}
        self._parked: deque[_Frame] = deque()  # frames waiting for places in the window
        self._unsuccessful: set[Any] = set()  # report refs of steps that did not succeed
        self._shapes: dict[int, _Shape] = {}
        self._reads: dict[tuple[int, str], set[str]] = {}

    def _shape(self, dag: DagSpec) -> _Shape:
        """A DAG's task order, each task's dependencies, how many tasks read each task, and
        the tasks its outputs read (cached: loops reuse a body)."""
        shape = self._shapes.get(id(dag))
        if shape is None:
            dependencies = {name: task_dependencies(t) for name, t in dag.tasks.items()}
            readers = dict.fromkeys(dag.tasks, 0)
            for found in dependencies.values():
                for name in found:
                    if name in readers:
                        readers[name] += 1
            kept: set[str] = set()
            pending: list[Binding] = list(dag.outputs.values())
            while pending:
                binding = pending.pop()
                if isinstance(binding, TaskOutputBinding):
                    kept.add(binding.task_output.task)
                elif isinstance(binding, TaskFinalStatusBinding):
                    kept.add(binding.task_final_status)
                pending.extend(binding_children(binding))
            shape = (topological_order(dag), dependencies, readers, frozenset(kept))
            self._shapes[id(dag)] = shape
        return shape

    def _read_outputs(self, dag: DagSpec, task: str) -> set[str]:
        """Outputs of ``task`` read elsewhere in ``dag`` (cached: nested loops repeat it)."""
        key = (id(dag), task)
        read = self._reads.get(key)
        if read is None:
            read = self._reads[key] = read_outputs(dag, task)
        return read

    # --- driving ---------------------------------------------------------------------------

    def start(self) -> None:
        """Submit everything that can run now."""
        assert self.spec.root.dag is not None
        scope: dict[str, Value] = {
            n: Known(v, self._identities.get(n)) for n, v in self._arguments.items()
        }
        root = _Frame(self, self.spec.root.dag, "", scope, [], self._root_done)
        root.advance()

    def waiting_on(self) -> list[Any]:
        """Refs whose completion lets the scheduler submit more."""
        return list(self._waits)

    @property
    def full(self) -> bool:
        """Whether ``window`` steps are in flight: ready steps wait for one to end."""
        return len(self._in_flight) >= self.window

    @property
    def backlog(self) -> bool:
        """Whether ready steps wait for places in the window (see :attr:`window`)."""
        return bool(self._parked)

    def _park(self, frame: _Frame) -> None:
        if not frame.parked:
            frame.parked = True
            self._parked.append(frame)

    def _resume(self) -> None:
        """Let parked frames go on while the window has places, each with a fair share."""
        while self._parked and not self.full:
            share = max(1, (self.window - len(self._in_flight)) // len(self._parked))
            frame = self._parked.popleft()
            frame.parked = False
            frame.advance(limit=share)

    def on_ready(self, refs: Iterable[Any], unsuccessful: Collection[Any] = ()) -> None:
        """Tell the scheduler that these refs are complete (values or errors).

        ``unsuccessful`` names the report refs among them whose step did not succeed
        (failed, crashed, canceled or blocked).
        """
        self._unsuccessful.update(unsuccessful)
        complete: list[Any] = []
        for ref in refs:
            complete.append(ref)
            outputs = self._in_flight.pop(ref, None)
            if outputs is None:  # not a report
                continue
            complete.extend(outputs)
            holder = self._leaf_holder.pop(ref, None)
            # A report that succeeded says nothing an ``after`` or a final status needs.
            if holder is not None and ref not in self._unsuccessful:
                del holder[ref]
        callbacks: list[Callable[[], None]] = []
        for ref in complete:
            self._incomplete.discard(ref)
            callbacks.extend(self._waits.pop(ref, ()))
        for callback in callbacks:
            callback()
        self._resume()

    def _root_done(self, frame: _Frame) -> None:
        assert self.spec.root.dag is not None
        self.outputs = {n: frame.resolve(b) for n, b in self.spec.root.dag.outputs.items()}
        self.finished = True

    def _when_ready(self, refs: Collection[Any], callback: Callable[[], None]) -> None:
        """Call ``callback`` once every ref in ``refs`` is complete."""
        # Without repeats: a condition may read one output twice (an Elif re-reads its If).
        pending = list(dict.fromkeys(r for r in refs if r in self._incomplete))
        if not pending:
            callback()
            return
        remaining = set(pending)

        def one_ready(ref: Any) -> Callable[[], None]:
            def ready() -> None:
                remaining.discard(ref)
                if not remaining:
                    callback()

            return ready

        for ref in pending:
            self._waits.setdefault(ref, []).append(one_ready(ref))

    def _live(self, report: Any) -> bool:
        """Whether a step's report still matters: in flight, or the step did not succeed."""
        return report in self._in_flight or report in self._unsuccessful

    def _get(self, refs: list[Any]) -> dict[Any, Any]:
        """Values of complete refs; an error stands in for a lost value.

        Not cached: fetching a small value again is cheaper than holding every one.
        """
        unique = list(dict.fromkeys(refs))
        return dict(zip(unique, self.fetch(unique), strict=True)) if unique else {}

    # --- values ----------------------------------------------------------------------------

    def _select(self, value: Value, path: list[str | int]) -> Value:
        if isinstance(value, Known):
            selected = value.value
            for key in path:
                try:
                    selected = selected[key]
                except (KeyError, IndexError, TypeError):
                    selected = getattr(selected, str(key))
            return Known(selected)
        raise AssertionError(f"fields select from loop items, which are fetched: {value!r}")

    def _to_argument(self, value: Value) -> Any:
        if isinstance(value, Known):
            return value.value
        if isinstance(value, Ref):
            return value.ref
        if isinstance(value, Collected):
            return CollectedRefs(
                self._to_argument(v) for v in value.items if not isinstance(v, Absent)
            )
        if isinstance(value, Joined):
            return JoinedParts(self._to_argument(v) for v in value.parts)
        raise AssertionError("absent values are not passed")

    def _identity(self, value: Value) -> str:
        """What a cache key sees of a value (see :mod:`raypipe.runtime.cache`)."""
        if isinstance(value, Known):
            return value.identity or value_identity(value.value)
        if isinstance(value, Ref):
            return value.identity
        if isinstance(value, Collected):
            parts = [self._identity(v) for v in value.items if not isinstance(v, Absent)]
            return value_identity(parts)
        if isinstance(value, Joined):
            return value_identity(["joined", *(self._identity(v) for v in value.parts)])
        raise AssertionError("absent values are not passed")

    def _code_digest(self, key: str, component: ComponentSpec) -> str:
        digest = self._code.get(key)
        if digest is None:
            assert component.python is not None
            digest = self._code[key] = hashlib.sha256(decode_payload(component.python)).hexdigest()
        return digest

    def _producers(self, value: Value) -> list[str]:
        """The outputs that made ``value``, as ``"step/output"``."""
        if isinstance(value, Ref):
            return [f"{value.step}/{value.output}"]
        if isinstance(value, Collected):
            return [s for v in value.items for s in self._producers(v)]
        if isinstance(value, Joined):
            return [s for v in value.parts for s in self._producers(v)]
        return []

    def _known(self, values: list[Value], then: Callable[[list[Any] | None], None]) -> None:
        """Fetch ``values`` to the driver, then call ``then`` with them (None if one failed)."""
        refs = [ref for v in values for ref in _refs_in(v)]

        def fetched() -> None:
            got = self._get(refs)
            plain: list[Any] = []
            for v in values:
                if _absence(v) is not None:
                    then(None)
                    return
                item = _materialise(v, got)
                if _is_failure(item):
                    then(None)
                    return
                plain.append(item)
            then(plain)

        self._when_ready(refs, fetched)

    # --- tasks -------------------------------------------------------------------------------

    def _process(self, frame: _Frame, name: str) -> None:
        task = frame.dag.tasks[name]
        component = self.spec.components[task.component]
        node = _Node(frame, name, task, component)
        frame.busy.add(name)
        after = [r for r in frame.after if self._live(r)] + frame.leaves_of(task.after)

        if task.trigger == "all_done":
            # Wait for everything it waits for to end, however it ended; then run it. Its
            # inputs (a final status above all) are resolved only then: resolving fetches.
            def then_run() -> None:
                resolved = {k: frame.resolve(b) for k, b in task.inputs.items()}
                for key, value in resolved.items():
                    spec = component.inputs.get(key)
                    # KFP's ignore_upstream_failure: an output that was never produced
                    # leaves an optional input at its default
                    if _absence(value) is not None and spec is not None and spec.optional:
                        resolved[key] = Known(spec.default)
                ready_inputs = _with_defaults(task, component, resolved)
                self._dispatch(node, ready_inputs, [])
                frame.advance()

            self._when_ready(after, then_run)
            return
        resolved = {k: frame.resolve(b) for k, b in task.inputs.items()}
        inputs = _with_defaults(task, component, resolved)
        reasons = {r for v in inputs.values() if (r := _absence(v)) is not None}
        if reasons:
            state = TaskState.SKIPPED if reasons == {"skipped"} else TaskState.UPSTREAM_FAILED
            self._decided(node, state)
            return
        if task.condition is not None:
            self._decide_condition(node, inputs, after)
            return
        if task.loop is not None:
            self._expand_loop(node, inputs, after)
            return
        self._dispatch(node, inputs, after)

    def _dispatch(
        self,
        node: _Node,
        inputs: dict[str, Value],
        after: list[Any],
    ) -> None:
        """Run a Python step, or open the frame of a DAG component."""
        frame, name, path, task, component = node.unpack()
        if component.dag is not None:
            self._open(node, inputs, after)
            return
        if any(_absence(v) is not None for v in inputs.values()):
            self._decided(node, TaskState.UPSTREAM_FAILED)
            return
        to_fill = self._inputs_with_placeholders(task)
        if to_fill:
            inputs = self._fill_placeholders(node, inputs, to_fill)
        sources = {k: self._producers(v) for k, v in inputs.items()}
        # the producers' own names (one string per step, however many steps read it)
        upstream = [step for v in inputs.values() for step in _producer_steps(v)]
        identities = {k: self._identity(v) for k, v in inputs.items()} if self.keys else {}
        if not self.keys:  # a run without the cache: no key is ever looked at
            key = ""
        elif task.options.cache:
            key = step_key(
                self._code_digest(task.component, component),
                {
                    "env": sorted(task.options.env.items()),
                    "image": task.options.image,
                    "packages": task.options.packages,
                    # which variables hold secrets, never their values; absent when none,
                    # so that the keys of steps without secrets stay as they were
                    **(
                        {"secret_env": sorted(task.options.secret_env.items())}
                        if task.options.secret_env
                        else {}
                    ),
                },
                identities,
            )
        else:
            key = unique_identity(self.run_id, path)
        call = StepCall(
            name=path,
            component_key=task.component,
            component=component,
            task=task,
            inputs={k: self._to_argument(v) for k, v in inputs.items()},
            after=after,
            upstream=tuple(dict.fromkeys(upstream)),
            sources={k: found for k, found in sources.items() if found},
            cache_key=key,
            identities=identities,
        )
        output_refs, report = self.submit(call)
        self._incomplete.add(report)
        self._incomplete.update(output_refs.values())
        self._in_flight[report] = list(output_refs.values())
        self._leaf_holder[report] = frame.leaves  # set again as the leaves move up
        self.records[path] = StepRecord(
            name=path,
            component_key=task.component,
            display_name=task.display_name,
            upstream=call.upstream,
        )
        outputs: dict[str, Value] = {
            k: Ref(r, path, k, output_identity(key, k) if key else "")
            for k, r in output_refs.items()
        }
        frame.complete(name, outputs, [report])

    def _open(self, node: _Node, inputs: dict[str, Value], after: list[Any]) -> None:
        """Run a DAG component (nested pipeline, branch, exit handler block) in a new frame."""
        frame, name, path, _, component = node.unpack()
        dag = component.dag
        assert dag is not None

        def done(child: _Frame) -> None:
            outputs = {n: child.resolve(b) for n, b in dag.outputs.items()}
            frame.complete(name, outputs, child.take_leaves())
            frame.advance()

        _Frame(self, dag, f"{path}/", dict(inputs), after, done).advance()

    def _decided(self, node: _Node, state: TaskState) -> None:
        """Record a task (and everything inside it) as not run, with ``state``."""
        frame, name, path, task, component = node.unpack()
        for step_path, key, display in _steps_inside(self.spec, path, task, component):
            self.records[step_path] = StepRecord(
                name=step_path, component_key=key, display_name=display, upstream=(), state=state
            )
        reason = "skipped" if state is TaskState.SKIPPED else "failed"
        frame.complete(name, {k: Absent(reason) for k in component.outputs}, [])
        frame.advance()

    def _decide_condition(
        self,
        node: _Node,
        inputs: dict[str, Value],
        after: list[Any],
    ) -> None:
        frame, name, path, task, component = node.unpack()
        assert task.condition is not None
        operands = _operands(task.condition)
        values = [frame.resolve(b) for b in operands]

        def decide(known: list[Any] | None) -> None:
            if known is None:
                self._decided(node, TaskState.UPSTREAM_FAILED)
                return
            lookup = {id(b): v for b, v in zip(operands, known, strict=True)}
            assert task.condition is not None
            if _evaluate(task.condition, lookup):
                self._open(node, inputs, after)
            else:
                self._decided(node, TaskState.SKIPPED)

        self._known(values, decide)

    def _expand_loop(
        self,
        node: _Node,
        inputs: dict[str, Value],
        after: list[Any],
    ) -> None:
        frame, name, path, task, component = node.unpack()
        loop, dag = task.loop, component.dag
        assert loop is not None and dag is not None
        items_value = frame.resolve(loop.items)
        # Outputs of an iteration are kept only if something after the loop reads them.
        read = self._read_outputs(frame.dag, name)

        def expand(items: list[Value]) -> None:
            window = loop.parallelism or self.loop_window
            results: list[dict[str, Value] | None] = [None] * len(items)
            # per iteration: its leaves (see _Frame.leaves), then its unsuccessful reports
            leaves: list[Iterable[Any]] = [() for _ in items]
            next_index = 0
            running = 0
            finished = 0

            def start_more() -> None:
                nonlocal next_index, running
                while next_index < len(items) and running < window:
                    index = next_index
                    next_index += 1
                    running += 1
                    start_iteration(index)
                if finished == len(items):
                    outputs: dict[str, Value] = {
                        out: Collected(tuple(r[out] for r in results if r is not None))
                        for out in component.outputs
                        if out in read
                    }
                    frame.complete(name, outputs, [ref for refs in leaves for ref in refs])
                    frame.advance()

            def start_iteration(index: int) -> None:
                scope = dict(inputs)
                scope[loop.item_input] = items[index]

                def expanded(child: _Frame) -> None:
                    results[index] = {
                        n: child.resolve(b) for n, b in dag.outputs.items() if n in read
                    }
                    leaves[index] = child.take_leaves()  # still the holder of its reports
                    # The next item may start when this one's steps have all ended.
                    self._when_ready(list(leaves[index]), lambda: iteration_ended(index))

                _Frame(self, dag, f"{path}[{index}]/", scope, after, expanded).advance()

            def iteration_ended(index: int) -> None:
                nonlocal running, finished
                # Complete, so only failures matter to what waits on the loop.
                leaves[index] = [r for r in leaves[index] if r in self._unsuccessful]
                running -= 1
                finished += 1
                start_more()

            if not items:
                frame.complete(name, {out: Collected(()) for out in component.outputs}, [])
                frame.advance()
                return
            start_more()

        # Items are always fetched values, so that item.field selects from them.
        def fetched(known: list[Any] | None) -> None:
            if known is None or not isinstance(known[0], (list, tuple)):
                self._decided(node, TaskState.UPSTREAM_FAILED)
                return
            expand([Known(item) for item in known[0]])

        self._known([items_value], fetched)

    def _inputs_with_placeholders(self, task: TaskSpec) -> list[str]:
        """The inputs of ``task`` bound to constants holding a run-time placeholder."""
        found = self._placeholder_inputs.get(id(task))
        if found is None:
            found = self._placeholder_inputs[id(task)] = [
                name
                for name, binding in task.inputs.items()
                if any(
                    isinstance(b, ConstantBinding) and has_placeholder(b.constant)
                    for b in [binding, *binding_children(binding)]
                )
            ]
        return found

    def _fill_placeholders(
        self, node: _Node, inputs: dict[str, Value], names: list[str]
    ) -> dict[str, Value]:
        values = {
            **self.placeholders,
            "pipeline_task_name": node.name,
            "pipeline_task_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.run_id}/{node.path}")),
        }

        def fill(value: Value) -> Value:
            if isinstance(value, Known) and isinstance(value.value, str):
                return Known(fill_placeholders(value.value, values))
            if isinstance(value, Joined):  # an f-string: its text parts
                return Joined(tuple(fill(part) for part in value.parts))
            return value

        return {name: fill(v) if name in names else v for name, v in inputs.items()}

    def _final_status(self, frame: _Frame, task: str) -> Value:
        """How the steps of ``task`` ended, as KFP's PipelineTaskFinalStatus fields."""
        reports = list(self._get(frame.leaves_of((task,))).values())
        # A failure outranks the cancellations it caused (fail-fast), which outrank success.
        # Success is "COMPLETE", the KFP backend's word (pipelines compare against it).
        state, message = "COMPLETE", None
        for report in reports:
            canceled = _is_cancel(report) or (
                not _is_failure(report) and report[1] == TaskState.CANCELED.value
            )
            if canceled and state == "COMPLETE":
                state, message = "CANCELED", _failure_message(report)
            elif not canceled and (
                _is_failure(report) or report[1] not in ("SUCCEEDED", "CACHED", "SKIPPED")
            ):
                state, message = "FAILED", _failure_message(report)
                break
        return Known(
            {
                "state": state,
                "pipeline_job_resource_name": self.placeholders.get(
                    "pipeline_job_resource_name", f"{self.spec.name}-{self.run_id}"
                ),
                "pipeline_task_name": f"{frame.prefix}{task}",
                "error_code": None if state == "COMPLETE" else 1,
                "error_message": message,
            }
        )


# --- helpers ------------------------------------------------------------------------------


def _with_defaults(
    task: TaskSpec, component: ComponentSpec, inputs: dict[str, Value]
) -> dict[str, Value]:
    """``inputs`` plus the defaults of the optional inputs the task does not bind."""
    item = task.loop.item_input if task.loop is not None else None
    for name, spec in component.inputs.items():
        if name not in inputs and name != item and spec.optional:
            inputs[name] = Known(spec.default)
    return inputs


def _absence(value: Value) -> str | None:
    """Why ``value`` (or part of a collected value) is missing: failed, skipped, or None.

    Collected values drop the items of iterations whose branch was skipped.
    """
    if isinstance(value, Absent):
        return value.reason
    if isinstance(value, Collected):
        reasons = {_absence(v) for v in value.items}
        return "failed" if "failed" in reasons else None
    if isinstance(value, Joined):
        reasons = {_absence(v) for v in value.parts} - {None}
        return ("failed" if "failed" in reasons else "skipped") if reasons else None
    return None


def _materialise(value: Value, got: dict[Any, Any]) -> Any:
    """The plain value of a present ``value``, given the fetched values of its refs."""
    if isinstance(value, Known):
        return value.value
    if isinstance(value, Ref):
        return got[value.ref]
    if isinstance(value, Collected):
        return [_materialise(v, got) for v in value.items if not isinstance(v, Absent)]
    if isinstance(value, Joined):
        return join_text(_materialise(v, got) for v in value.parts)
    raise AssertionError(f"not materialised: {value!r}")


def _producer_steps(value: Value) -> list[str]:
    """The steps whose outputs made ``value``."""
    if isinstance(value, Ref):
        return [value.step]
    if isinstance(value, Collected):
        return [step for v in value.items for step in _producer_steps(v)]
    if isinstance(value, Joined):
        return [step for v in value.parts for step in _producer_steps(v)]
    return []


def _refs_in(value: Value) -> list[Any]:
    if isinstance(value, Ref):
        return [value.ref]
    if isinstance(value, Collected):
        return [ref for v in value.items for ref in _refs_in(v)]
    if isinstance(value, Joined):
        return [ref for v in value.parts for ref in _refs_in(v)]
    return []


def _is_failure(value: Any) -> bool:
    return isinstance(value, (BaseException, FailedOutput))


def _is_cancel(report: Any) -> bool:
    return isinstance(report, BaseException) and "Cancel" in type(report).__name__


def _failure_message(report: Any) -> str:
    if isinstance(report, BaseException):
        text = str(report).strip()
        return text.splitlines()[0] if text else type(report).__name__
    parsed = StepReport.from_wire(report)
    if parsed.attempts and (error := parsed.attempts[-1].error) is not None:
        return f"{error.type}: {error.message}"
    return f"{parsed.task} ended {parsed.state}"


def _operands(expr: ConditionExpr) -> list[Binding]:
    if isinstance(expr, Negation):
        return _operands(expr.not_)
    if isinstance(expr, Conjunction):
        return [b for part in expr.all for b in _operands(part)]
    return [expr.left, expr.right]


def _evaluate(expr: ConditionExpr, values: dict[int, Any]) -> bool:
    if isinstance(expr, Negation):
        return not _evaluate(expr.not_, values)
    if isinstance(expr, Conjunction):
        return all(_evaluate(part, values) for part in expr.all)
    return bool(COMPARISONS[expr.op](values[id(expr.left)], values[id(expr.right)]))


def _steps_inside(
    spec: PipelineSpec, path: str, task: TaskSpec, component: ComponentSpec
) -> list[tuple[str, str, str | None]]:
    """(name, component key, display name) of every step a task would have run.

    A loop that never ran is one entry: its items are unknown.
    """
    if component.dag is None or task.loop is not None:
        return [(path, task.component, task.display_name)]
    found = []
    for name, inner in component.dag.tasks.items():
        found.extend(_steps_inside(spec, f"{path}/{name}", inner, spec.components[inner.component]))
    return found
