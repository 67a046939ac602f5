"""The web UI's routes: the page and its assets at ``/``, and the few reads the REST API
does not answer in the shape a page needs (a laid-out graph, live step states, a step's
details, artifact previews, comparisons, an artifact's lineage) under ``/ui/api``.

The page itself and its assets are public (they hold no data); every ``/ui/api`` route
takes the caller's namespace from the same bearer token as the REST API, so another
namespace's runs are not found (404). Live step states and the live runs list are
server-sent events on a plain GET, which the page reads with ``fetch`` (``EventSource``
cannot send a token); so are the pipelines, experiments (with run counts) and recurring
runs (with their newest run and next tick) lists.

Example:
    >>> app.include_router(ui_router(store, namespace_of))   # doctest: +SKIP
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
import asyncio
import json
import mimetypes
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from pydantic import BaseModel

from raypipe.api.run_files import RunFiles
from raypipe.api.schedule import Trigger, next_tick
from raypipe.api.schemas import (
    ExperimentBody,
    ListPipelines,
    ListRuns,
    PipelineBody,
    RecurringRunBody,
    RunBody,
)
from raypipe.api.store import (
    ExperimentFilter,
    InvalidArgument,
    NotFound,
    RunFilter,
    RunState,
    SortOrder,
    StorageState,
    Store,
)
from raypipe.api.store.records import TERMINAL_STATES, RecurringRun
from raypipe.api.ui.graph import PipelineGraph, pipeline_graph
from raypipe.api.ui.previews import Preview, preview_of
from raypipe.api.ui.steps import StepDetail, StepState, step_detail, step_states
from raypipe.spec.io import loads

__all__ = ["STATIC_DIR", "UI_API", "ui_router"]

UI_API = "/ui/api"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
POLL_SECONDS = 1.0  # how often a live run's step states (or a listed page) are read again
LIST_STREAM_SECONDS = 300.0  # a list's stream ends then, and the page reopens it
MAX_LISTED = 1000  # rows of a live pipelines, experiments or recurring-runs list
MLFLOW_UI_ENV = "RAYPIPE_MLFLOW_UI_URL"  # where MLflow's UI is, for links (none: no links)


class RunComparison(BaseModel):
    """One run in a comparison: its arguments and its scalar metrics."""

    run_id: str
    display_name: str
    state: str
    parameters: dict[str, Any]
    metrics: dict[str, float]


class Comparison(BaseModel):
    runs: list[RunComparison]
    mlflow_compare_url: str | None


class MlflowLinks(BaseModel):
    """Links into MLflow's UI for a run and its steps (empty without ``RAYPIPE_MLFLOW_UI_URL``)."""

    run_url: str | None = None
    steps: dict[str, str] = {}


class ExperimentView(ExperimentBody):
    """An experiment as its page lists it: with how many runs it has, and how many of them
    are active (pending, running or canceling)."""

    runs: int
    active_runs: int


class ListExperimentViews(BaseModel):
    experiments: list[ExperimentView]


class LastRun(BaseModel):
    run_id: str
    display_name: str
    state: str
    created_at: datetime


class RecurringRunView(RecurringRunBody):
    """A recurring run as its page lists it: its runs, the newest one, and when it fires
    next (None when disabled or past its end)."""

    runs: int
    last_run: LastRun | None
    next_tick_at: datetime | None


class ListRecurringRunViews(BaseModel):
    recurringRuns: list[RecurringRunView]  # noqa: N815 - the REST list's field name


class LineageView(BaseModel):
    """An artifact's lineage: what made it (upstream) and what read it (downstream)."""

    uri: str
    upstream: list[dict[str, Any]]
    downstream: list[dict[str, Any]]


def ui_router(store: Store, namespace_of: Callable[[Request], Awaitable[str]]) -> APIRouter:
    """The UI's routes over ``store``, with the REST API's namespace dependency."""
    router = APIRouter(include_in_schema=False)
    Namespace = Annotated[str, Depends(namespace_of)]  # noqa: N806 - a type alias

    @router.get("/", response_class=HTMLResponse)
    def index() -> FileResponse:
        return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")

    @router.get("/ui/static/{name:path}")
    def static(name: str) -> FileResponse:
        root = os.path.realpath(STATIC_DIR)
        path = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
            raise NotFound("file", name)
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith(".js"):
            kind = "text/javascript"
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "no-cache"})

    # -- graphs -----------------------------------------------------------------------------

    @router.get(f"{UI_API}/runs/{{run_id}}/graph")
    def run_graph(
        run_id: str, ns: Namespace, expand: Annotated[list[str] | None, Query()] = None
    ) -> PipelineGraph:
        run = store.get_run(ns, run_id)
        spec_json = run.pipeline_spec
        if spec_json is None and run.pipeline_version_id is not None:
            spec_json = store.get_pipeline_version(ns, run.pipeline_version_id).pipeline_spec
        return pipeline_graph(loads(spec_json or "", source=f"run {run_id}"), expand or [])

    @router.get(f"{UI_API}/versions/{{version_id}}/graph")
    def version_graph(
        version_id: str, ns: Namespace, expand: Annotated[list[str] | None, Query()] = None
    ) -> PipelineGraph:
        version = store.get_pipeline_version(ns, version_id)
        spec = loads(version.pipeline_spec or "", source=f"version {version.display_name}")
        return pipeline_graph(spec, expand or [])

    # -- a run's steps ----------------------------------------------------------------------

    @router.get(f"{UI_API}/runs/{{run_id}}/states")
    def run_states(run_id: str, ns: Namespace) -> StreamingResponse:
        """Server-sent events: ``states`` with the run's state and its steps' states that
        changed since the last event (all of them first), until the run has ended."""
        store.get_run(ns, run_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            sent: dict[str, StepState] = {}
            sent_run: tuple[str, str | None] | None = None
            while True:
                run = await asyncio.to_thread(store.get_run, ns, run_id)
                ended = run.state in TERMINAL_STATES
                states = await asyncio.to_thread(step_states, RunFiles(run_id), ended=ended)
                changed = {k: v for k, v in states.items() if sent.get(k) != v}
                now = (run.state.value, run.error_message)
                if changed or now != sent_run:
                    sent.update(changed)
                    sent_run = now
                    body = {
                        "run": {"state": run.state.value, "error": run.error_message},
                        "steps": {k: v.model_dump() for k, v in changed.items()},
                    }
                    yield f"event: states\ndata: {json.dumps(body)}\n\n"
                if ended:  # its steps were recorded before the run was marked ended
                    yield "event: end\ndata: {}\n\n"
                    return
                await asyncio.sleep(POLL_SECONDS)

        return _events(stream())

    @router.get(f"{UI_API}/runs/live")
    def runs_live(
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: SortOrder = "-created_at",
        experiment_id: str | None = None,
        pipeline_version_id: str | None = None,
        pipeline_id: str | None = None,
        recurring_run_id: str | None = None,
        state: Annotated[list[RunState] | None, Query()] = None,
    ) -> StreamingResponse:
        """Server-sent events: ``runs``, one page of the runs list (the REST list's query
        and body), first at once and then whenever a run on it changed or a new run joined
        it; the stream ends after :data:`LIST_STREAM_SECONDS` and the page opens it again."""
        filter = RunFilter(
            states=state,
            experiment_id=experiment_id,
            pipeline_version_id=pipeline_version_id,
            pipeline_id=pipeline_id,
            recurring_run_id=recurring_run_id,
        )

        def page() -> str:
            found = store.list_runs(
                ns, filter, sort=sort_by, page_size=page_size, page_token=page_token
            )
            body = ListRuns(
                runs=[RunBody.of(r) for r in found.items], next_page_token=found.next_page_token
            )
            return body.model_dump_json()

        return _live("runs", page)

    @router.get(f"{UI_API}/pipelines/live")
    def pipelines_live(ns: Namespace, sort_by: SortOrder = "name") -> StreamingResponse:
        """Server-sent events: ``pipelines``, the namespace's pipelines (the REST list's
        body, up to 1,000), at once and again whenever one was added or deleted."""

        def page() -> str:
            found = store.list_pipelines(ns, sort=sort_by, page_size=MAX_LISTED)
            body = ListPipelines(
                pipelines=[PipelineBody.of(p) for p in found.items],
                next_page_token=found.next_page_token,
            )
            return body.model_dump_json()

        return _live("pipelines", page)

    @router.get(f"{UI_API}/experiments/live")
    def experiments_live(
        ns: Namespace, storage_state: StorageState = StorageState.AVAILABLE
    ) -> StreamingResponse:
        """Server-sent events: ``experiments``, the namespace's experiments in one storage
        state (up to 1,000, by name) with their run counts, at once and again whenever
        one was added, archived or unarchived or its counts changed."""

        def page() -> str:
            found = store.list_experiments(
                ns,
                ExperimentFilter(storage_state=storage_state),
                sort="name",
                page_size=MAX_LISTED,
            )
            counts = store.count_runs_by(
                ns, "experiment_id", [e.experiment_id for e in found.items]
            )
            views = [
                ExperimentView(
                    **ExperimentBody.of(e).model_dump(),
                    runs=counts[e.experiment_id].runs,
                    active_runs=counts[e.experiment_id].active,
                )
                for e in found.items
            ]
            return ListExperimentViews(experiments=views).model_dump_json()

        return _live("experiments", page)

    @router.get(f"{UI_API}/recurringruns/live")
    def recurring_live(ns: Namespace) -> StreamingResponse:
        """Server-sent events: ``recurringRuns``, the namespace's recurring runs (up to
        1,000, newest first) with their status, last tick, newest run and next tick, at
        once and again whenever any of it changed."""

        def page() -> str:
            found = store.list_recurring_runs(ns, page_size=MAX_LISTED)
            now = datetime.now(timezone.utc)
            counts = store.count_runs_by(
                ns, "recurring_run_id", [r.recurring_run_id for r in found.items]
            )
            views = [
                _recurring_view(store, ns, r, counts[r.recurring_run_id].runs, now)
                for r in found.items
            ]
            return ListRecurringRunViews(recurringRuns=views).model_dump_json()

        return _live("recurringRuns", page)

    @router.get(f"{UI_API}/runs/{{run_id}}/steps/{{task:path}}")
    def run_step(run_id: str, task: str, ns: Namespace) -> StepDetail:
        store.get_run(ns, run_id)
        return step_detail(RunFiles(run_id), task)

    @router.get(f"{UI_API}/runs/{{run_id}}/preview")
    def preview(run_id: str, uri: str, ns: Namespace) -> Preview:
        store.get_run(ns, run_id)
        files = RunFiles(run_id)
        found = next((a for a in files.artifacts() if a.uri == uri), None)
        if found is None:
            raise NotFound("artifact", uri)
        try:
            opened = files.open_artifact(uri)
        except NotFound:  # recorded, but not one file: a directory artifact
            return preview_of(found.type, None, found.metadata)
        with opened:
            return preview_of(found.type, opened, found.metadata)

    @router.get(f"{UI_API}/runs/{{run_id}}/mlflow")
    def mlflow_links(run_id: str, ns: Namespace) -> MlflowLinks:
        run = store.get_run(ns, run_id)
        base = os.environ.get(MLFLOW_UI_ENV, "").rstrip("/")
        if not base:
            return MlflowLinks()
        found = _mlflow_runs([run.run_id])
        links = MlflowLinks()
        for experiment, mlflow_run, task in found.get(run.run_id, []):
            url = f"{base}/#/experiments/{experiment}/runs/{mlflow_run}"
            if task is None:
                links.run_url = url
            else:
                links.steps[task] = url
        return links

    # -- compare and lineage ----------------------------------------------------------------

    @router.get(f"{UI_API}/compare")
    def compare(ns: Namespace, run_id: Annotated[list[str], Query()]) -> Comparison:
        if not 2 <= len(run_id) <= 10:
            raise InvalidArgument("compare", "run_id", f"2 to 10 runs, got {len(run_id)}")
        runs = [store.get_run(ns, r) for r in run_id]
        metrics = _metrics([r.run_id for r in runs])
        url = None
        base = os.environ.get(MLFLOW_UI_ENV, "").rstrip("/")
        if base:
            found = _mlflow_runs([r.run_id for r in runs])
            pairs = [m for r in runs for m in found.get(r.run_id, []) if m[2] is None]
            if pairs:
                ids = json.dumps([m[1] for m in pairs])
                experiments = json.dumps(sorted({m[0] for m in pairs}))
                url = f"{base}/#/compare-runs?runs={ids}&experiments={experiments}"
        return Comparison(
            runs=[
                RunComparison(
                    run_id=r.run_id,
                    display_name=r.display_name,
                    state=r.state.value,
                    parameters=r.arguments,
                    metrics=metrics.get(r.run_id, {}),
                )
                for r in runs
            ],
            mlflow_compare_url=url,
        )

    @router.get(f"{UI_API}/runs/{{run_id}}/artifact-lineage")
    def artifact_lineage(run_id: str, uri: str, ns: Namespace) -> LineageView:
        """What made one of the run's artifacts and what read it, in this namespace only."""
        from raypipe.tracking.lineage.query import connect, downstream, upstream

        store.get_run(ns, run_id)
        if uri not in {a.uri for a in RunFiles(run_id).artifacts()}:
            raise NotFound("artifact", uri)
        with connect(_lineage_root()) as con:
            up = upstream(uri, connection=con)
            down = downstream(uri, connection=con)
        visible: dict[str, bool] = {}

        def shown(row_run: str) -> bool:
            if row_run not in visible:
                visible[row_run] = _exists(store, ns, row_run)
            return visible[row_run]

        return LineageView(
            uri=uri,
            upstream=[r.model_dump(mode="json") for r in up if shown(r.run_id)],
            downstream=[r.model_dump(mode="json") for r in down if shown(r.run_id)],
        )

    return router


def _live(event: str, read: Callable[[], str]) -> StreamingResponse:
    """Server-sent events named ``event``: ``read()`` at once, then again every
    :data:`POLL_SECONDS`, sent only when it changed; after :data:`LIST_STREAM_SECONDS`
    an ``end`` event (the page opens the stream again). A ``read`` that fails at once
    (a bad page token) is an error response, not a stream."""
    first = read()

    async def stream() -> AsyncIterator[str]:
        sent = first
        yield f"event: {event}\ndata: {first}\n\n"
        deadline = asyncio.get_running_loop().time() + LIST_STREAM_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            now = await asyncio.to_thread(read)
            if now != sent:
                sent = now
                yield f"event: {event}\ndata: {now}\n\n"
        yield "event: end\ndata: {}\n\n"

    return _events(stream())


def _recurring_view(
    store: Store, ns: str, found: RecurringRun, runs: int, now: datetime
) -> RecurringRunView:
    newest = store.list_runs(
        ns, RunFilter(recurring_run_id=found.recurring_run_id), page_size=1
    ).items
    upcoming = None
    if found.enabled:
        trigger = Trigger(
            cron=found.cron,
            interval_seconds=found.interval_seconds,
            start_time=found.start_time,
            end_time=found.end_time,
        )
        upcoming = next_tick(trigger, now, origin=found.created_at)
    return RecurringRunView(
        **RecurringRunBody.of(found).model_dump(),
        runs=runs,
        last_run=(
            LastRun(
                run_id=newest[0].run_id,
                display_name=newest[0].display_name,
                state=newest[0].state.value,
                created_at=newest[0].created_at,
            )
            if newest
            else None
        ),
        next_tick_at=upcoming,
    )


def _events(stream: AsyncIterator[str]) -> StreamingResponse:
    """A server-sent event stream that proxies pass on as it comes (no buffering)."""
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _exists(store: Store, namespace: str, run_id: str) -> bool:
    try:
        store.get_run(namespace, run_id)
    except NotFound:
        return False
    return True


def _lineage_root() -> str:
    from raypipe.runtime.config import RuntimeConfig

    return RuntimeConfig.from_env().lineage_root


def _metrics(run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Scalar metrics of runs: numeric pipeline outputs and ``Metrics`` artifacts' values
    (named ``task.output.metric``)."""
    from raypipe.tracking.lineage.query import connect, sql

    found: dict[str, dict[str, float]] = {r: {} for r in run_ids}
    marks = ", ".join("?" for _ in run_ids)
    with connect(_lineage_root()) as con:
        _, outputs = sql(
            f"SELECT run_id, outputs FROM runs WHERE run_id IN ({marks})", run_ids, connection=con
        )
        _, artifacts = sql(
            f"SELECT run_id, execution_id, output, metadata FROM artifacts "
            f"WHERE run_id IN ({marks}) AND type = 'Metrics'",
            run_ids,
            connection=con,
        )
    for run_id, text in outputs:
        for name, value in (json.loads(text) if text else {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[run_id][name] = float(value)
    for run_id, execution_id, output, text in artifacts:
        task = execution_id.removeprefix(f"{run_id}/")
        for name, value in (json.loads(text) if text else {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[run_id][f"{task}.{output}.{name}"] = float(value)
    return found


def _mlflow_runs(run_ids: list[str]) -> dict[str, list[tuple[str, str, str | None]]]:
    """(experiment id, MLflow run id, task or None for the pipeline run) per raypipe run."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    from raypipe.runtime.config import RuntimeConfig

    client = MlflowClient(RuntimeConfig.from_env().mlflow_tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(ViewType.ACTIVE_ONLY)]
    found: dict[str, list[tuple[str, str, str | None]]] = {r: [] for r in run_ids}
    if not experiments:
        return found
    for run_id in run_ids:
        if not run_id.isalnum():  # ids are hex: nothing to quote
            continue
        for run in client.search_runs(
            experiments, filter_string=f"tags.`raypipe.run_id` = '{run_id}'", max_results=5000
        ):
            task = run.data.tags.get("raypipe.task")
            found[run_id].append((run.info.experiment_id, run.info.run_id, task))
    return found
