"""The raypipe service: KFP-style REST resources over the store, runs executed on Ray.

``create_app()`` builds the FastAPI application; ``raypipe server`` serves it. Resources
live under ``/apis/v2beta1`` with KFP's names: experiments, pipelines and their versions,
runs, recurring runs. Every route but ``/healthz`` needs a bearer token when tokens are
configured (see :mod:`raypipe.api.auth`), and sees only its token's namespace: another
namespace's ids are not found (404).

Example:
    >>> from fastapi.testclient import TestClient                  # doctest: +SKIP
    >>> client = TestClient(create_app(Store("sqlite:///s.db")))     # doctest: +SKIP
    >>> client.post("/apis/v2beta1/experiments", json={"display_name": "e"}).status_code
    200
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# ``Namespace`` is local to create_app.
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from raypipe.api.auth import DEFAULT_NAMESPACE, Tokens, tokens_from_env
from raypipe.api.executor import RunExecutor
from raypipe.api.leadership import ExecutionLeader
from raypipe.api.recurring import RecurringScheduler
from raypipe.api.run_files import ArtifactBody, LogBody, RunFiles
from raypipe.api.schedule import Trigger
from raypipe.api.schemas import (
    CreateExperiment,
    CreatePipeline,
    CreatePipelineVersion,
    CreateRecurringRun,
    CreateRun,
    ErrorBody,
    ExperimentBody,
    ListExperiments,
    ListPipelines,
    ListPipelineVersions,
    ListRecurringRuns,
    ListRuns,
    PipelineBody,
    PipelineVersionBody,
    RecurringRunBody,
    RunBody,
)
from raypipe.api.spec_cache import SpecCache
from raypipe.api.step_names import has_step
from raypipe.api.store import (
    AlreadyExists,
    Conflict,
    ExperimentFilter,
    InvalidArgument,
    ListFilter,
    NotFound,
    RecurringRunFilter,
    RunFilter,
    RunState,
    StorageState,
    Store,
)
from raypipe.api.store.records import TERMINAL_STATES, Run
from raypipe.api.ui import ui_router
from raypipe.errors import PipelineArgumentError, SpecLoadError
from raypipe.spec.arguments import bind_arguments
from raypipe.spec.io import loads
from raypipe.spec.models import PipelineSpec

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/apis/v2beta1"

_STATUS = {NotFound: 404, AlreadyExists: 409, Conflict: 409, InvalidArgument: 400}


def _json(body: BaseModel) -> Response:
    """``body`` serialised here, in the request's thread, as FastAPI would (by alias).

    A sync route that returns a model has FastAPI check it against the declared model in
    a second hop to the thread pool: under 50 concurrent requests every call then waited
    for one of the few request threads twice. The hot routes (create, list, get a run)
    return this instead; ``response_model`` keeps their OpenAPI document.
    """
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")


class _Turns:
    """The event-loop routes take turns: one request's work at a time, and the loop
    reads its sockets between two of them.

    Those routes do their work without awaiting, so every request read in one wake-up of
    the loop ran back to back, and a ``/healthz`` arriving meanwhile waited for all of
    them. Now a request takes an asyncio lock and yields once before its work: requests
    read meanwhile queue on the lock (in arrival order), and each hand-over of the lock
    goes through the loop, which polls its sockets first. So a request (a ``/healthz``
    above all, which takes no turn) waits for the one in progress, not for the burst.

    ``async with turn():`` uses the lock of the running loop (a test client may run the
    app on more than one loop, and an asyncio lock belongs to one).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._lock = loop, asyncio.Lock()
        async with self._lock:
            await asyncio.sleep(0)  # the requests read with this one queue behind it
            yield


def create_app(
    store: Store | None = None,
    *,
    tokens: Tokens | None = None,
    executor: RunExecutor | None = None,
    execute: bool = True,
    request_threads: int | None = None,
    lead: bool = True,
) -> FastAPI:
    """The service application.

    Args:
        store: where records live (default: ``RAYPIPE_DATABASE_URL`` or SQLite under
            ``RAYPIPE_HOME``).
        tokens: who may call (default: ``RAYPIPE_API_TOKENS`` / ``RAYPIPE_API_TOKEN_FILE``).
        executor: what runs the runs (default: one on the runtime's Ray). It runs, with
            the recurring-run scheduler, in the one process of the service that holds the
            store's executor lease (see :mod:`raypipe.api.leadership`), which first takes
            over runs a previous instance left; the app stores new runs and returns.
        execute: False to serve records only, without running anything (tests of the API).
        request_threads: how many requests run their route at once (the threads of
            AnyIO's pool; default AnyIO's 40). Requests are CPU-bound Python under one
            GIL: a few threads serve as many requests a second as 40, with less switching,
            and the others wait their turn in order rather than all at once.
        lead: whether this process competes for the executor lease. ``raypipe server``
            gives the executor a process of its own and passes False to its API
            processes, which then only store runs (and mark them for cancelling).
    """
    store = store or Store()
    tokens = tokens if tokens is not None else tokens_from_env()
    runner = executor or (RunExecutor(store) if execute else None)
    specs = runner.specs if runner is not None else SpecCache()
    recurring = RecurringScheduler(store, runner) if runner is not None else None
    leader = (
        ExecutionLeader(store, runner, recurring)
        if lead and runner is not None and recurring is not None
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if request_threads is not None:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        if leader is not None:
            leader.start()
        try:
            yield
        finally:
            if leader is not None:
                leader.stop()

    app = FastAPI(
        title="raypipe",
        version="v2beta1",
        description="Pipelines, experiments and runs (KFP v2beta1 resources), run on Ray.",
        lifespan=lifespan,
    )
    app.state.store, app.state.executor, app.state.recurring = store, runner, recurring
    app.state.leader = leader
    namespace_of = _namespace_dependency(tokens)
    _install_error_handlers(app, namespace_of)

    async def caller_namespace(request: Request) -> str:
        # ``async``: a sync dependency would cost every request a hop to the thread pool
        # of its own before its route's; reading a header needs no thread.
        return namespace_of(request)

    Namespace = Annotated[str, Depends(caller_namespace)]  # noqa: N806 - a type alias
    app.include_router(ui_router(store, caller_namespace))  # the web UI: / and /ui/api

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers without a token. ``async``: on the event loop, not queued
        behind busy request threads (a burst of creates held a sync one for 250 ms)."""
        return {"status": "ok", "database": store.backend}

    # -- experiments ----------------------------------------------------------------------

    @app.post(f"{API_PREFIX}/experiments", tags=["experiments"])
    def create_experiment(body: CreateExperiment, ns: Namespace) -> ExperimentBody:
        return ExperimentBody.of(
            store.create_experiment(ns, body.display_name, description=body.description)
        )

    @app.get(f"{API_PREFIX}/experiments", tags=["experiments"])
    def list_experiments(
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: str = "-created_at",
        name_contains: str | None = None,
        storage_state: StorageState | None = None,
    ) -> ListExperiments:
        page = store.list_experiments(
            ns,
            ExperimentFilter(name_contains=name_contains, storage_state=storage_state),
            sort=_sort(sort_by),
            page_size=page_size,
            page_token=page_token,
        )
        return ListExperiments(
            experiments=[ExperimentBody.of(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    @app.get(f"{API_PREFIX}/experiments/{{experiment_id}}", tags=["experiments"])
    def get_experiment(experiment_id: str, ns: Namespace) -> ExperimentBody:
        return ExperimentBody.of(store.get_experiment(ns, experiment_id))

    @app.post(f"{API_PREFIX}/experiments/{{experiment_id}}:archive", tags=["experiments"])
    def archive_experiment(experiment_id: str, ns: Namespace) -> ExperimentBody:
        return ExperimentBody.of(store.archive_experiment(ns, experiment_id))

    @app.post(f"{API_PREFIX}/experiments/{{experiment_id}}:unarchive", tags=["experiments"])
    def unarchive_experiment(experiment_id: str, ns: Namespace) -> ExperimentBody:
        return ExperimentBody.of(store.unarchive_experiment(ns, experiment_id))

    @app.delete(f"{API_PREFIX}/experiments/{{experiment_id}}", tags=["experiments"])
    def delete_experiment(experiment_id: str, ns: Namespace) -> dict[str, Any]:
        store.delete_experiment(ns, experiment_id)
        return {}

    # -- pipelines --------------------------------------------------------------------------

    @app.post(f"{API_PREFIX}/pipelines", tags=["pipelines"])
    def create_pipeline(body: CreatePipeline, ns: Namespace) -> PipelineBody:
        return PipelineBody.of(
            store.create_pipeline(ns, body.display_name, description=body.description)
        )

    @app.get(f"{API_PREFIX}/pipelines", tags=["pipelines"])
    def list_pipelines(
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: str = "-created_at",
        name_contains: str | None = None,
    ) -> ListPipelines:
        page = store.list_pipelines(
            ns,
            ListFilter(name_contains=name_contains),
            sort=_sort(sort_by),
            page_size=page_size,
            page_token=page_token,
        )
        return ListPipelines(
            pipelines=[PipelineBody.of(p) for p in page.items],
            next_page_token=page.next_page_token,
        )

    @app.get(f"{API_PREFIX}/pipelines/{{pipeline_id}}", tags=["pipelines"])
    def get_pipeline(pipeline_id: str, ns: Namespace) -> PipelineBody:
        return PipelineBody.of(store.get_pipeline(ns, pipeline_id))

    @app.delete(f"{API_PREFIX}/pipelines/{{pipeline_id}}", tags=["pipelines"])
    def delete_pipeline(pipeline_id: str, ns: Namespace, cascade: bool = False) -> dict[str, Any]:
        store.delete_pipeline(ns, pipeline_id, cascade=cascade)
        return {}

    @app.post(f"{API_PREFIX}/pipelines/{{pipeline_id}}/versions", tags=["pipelines"])
    def create_pipeline_version(
        pipeline_id: str, body: CreatePipelineVersion, ns: Namespace
    ) -> PipelineVersionBody:
        spec = _spec(body.pipeline_spec, body.pipeline_spec_yaml)
        return PipelineVersionBody.of(
            store.create_pipeline_version(
                ns,
                pipeline_id,
                body.display_name,
                spec.model_dump_json(by_alias=True),  # "not" conditions keep their name
                description=body.description,
            )
        )

    @app.get(f"{API_PREFIX}/pipelines/{{pipeline_id}}/versions", tags=["pipelines"])
    def list_pipeline_versions(
        pipeline_id: str,
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: str = "-created_at",
    ) -> ListPipelineVersions:
        page = store.list_pipeline_versions(
            ns, pipeline_id, None, sort=_sort(sort_by), page_size=page_size, page_token=page_token
        )
        return ListPipelineVersions(
            pipeline_versions=[PipelineVersionBody.of(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    @app.get(
        f"{API_PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}",
        tags=["pipelines"],
    )
    def get_pipeline_version(
        pipeline_id: str, pipeline_version_id: str, ns: Namespace
    ) -> PipelineVersionBody:
        found = store.get_pipeline_version(ns, pipeline_version_id)
        if found.pipeline_id != pipeline_id:
            raise NotFound("pipeline version", pipeline_version_id)
        return PipelineVersionBody.of(found)

    @app.delete(
        f"{API_PREFIX}/pipelines/{{pipeline_id}}/versions/{{pipeline_version_id}}",
        tags=["pipelines"],
    )
    def delete_pipeline_version(
        pipeline_id: str, pipeline_version_id: str, ns: Namespace
    ) -> dict[str, Any]:
        if store.get_pipeline_version(ns, pipeline_version_id).pipeline_id != pipeline_id:
            raise NotFound("pipeline version", pipeline_version_id)
        store.delete_pipeline_version(ns, pipeline_version_id)
        return {}

    # -- runs -------------------------------------------------------------------------------

    def checked_source(
        ns: str, body: CreateRun | CreateRecurringRun
    ) -> tuple[str | None, dict[str, Any]]:
        """The inline IR to store (None for a stored version) and the arguments, both
        checked before anything is recorded."""
        if body.pipeline_version_id is not None:
            spec = specs.of_version(store, ns, body.pipeline_version_id)
            spec_json = None
        else:
            spec = _spec(body.pipeline_spec, body.pipeline_spec_yaml)
            spec_json = spec.model_dump_json(by_alias=True)
        return spec_json, _arguments(spec, body.parameters())

    # The hottest routes (create, list and get a run) are ``async``: they run on the event
    # loop, one at a time, in the order their requests arrived. Their work is a millisecond
    # or two of Python and SQL under one GIL, which threads cannot run in parallel:
    # through the thread pool each request paid two hand-offs, and under load the event
    # loop (and ``/healthz``) waited for the GIL behind every request thread. (Routes that
    # read files or take longer, such as logs and downloads, stay in the thread pool.)

    turn = _Turns()

    # Each namespace's Default experiment, by id: looking it up by name was half the work
    # of a create without an experiment. A stale id (the experiment was deleted) is found
    # out by the create itself, which is then made once more with the current one.
    default_experiments: dict[str, str] = {}

    def default_experiment_id(ns: str) -> str:
        if ns not in default_experiments:
            default_experiments[ns] = store.default_experiment(ns).experiment_id
        return default_experiments[ns]

    @app.post(f"{API_PREFIX}/runs", tags=["runs"], response_model=RunBody)
    async def create_run(body: CreateRun, ns: Namespace) -> Response:
        async with turn():
            return created_run(body, ns)

    def created_run(body: CreateRun, ns: str) -> Response:
        spec_json, arguments = checked_source(ns, body)

        def stored(experiment_id: str) -> Run:
            return store.create_run(
                ns,
                display_name=body.display_name,
                description=body.description,
                pipeline_spec=spec_json,
                pipeline_version_id=body.pipeline_version_id,
                arguments=arguments,
                experiment_id=experiment_id,
                run_id=_new_run_id(),
            )

        if body.experiment_id is not None:
            run = stored(body.experiment_id)
        else:
            try:
                run = stored(default_experiment_id(ns))
            except NotFound:
                default_experiments.pop(ns, None)
                run = stored(default_experiment_id(ns))
        # Stored PENDING without an owner is all a create does: the executor (in whichever
        # process holds its lease) takes it from the store, so the call does not wait for
        # Ray, and a run stored just before a crash is started by the next instance.
        if runner is not None:
            runner.wake()
        return _json(RunBody.of(run, include_spec=False))

    @app.get(f"{API_PREFIX}/runs", tags=["runs"], response_model=ListRuns)
    async def list_runs(
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: str = "-created_at",
        experiment_id: str | None = None,
        pipeline_version_id: str | None = None,
        recurring_run_id: str | None = None,
        state: Annotated[list[RunState] | None, Query()] = None,
        name_contains: str | None = None,
        storage_state: StorageState | None = None,
        pipeline_id: str | None = None,
    ) -> Response:
        filter = RunFilter(
            states=state,
            experiment_id=experiment_id,
            pipeline_version_id=pipeline_version_id,
            pipeline_id=pipeline_id,
            recurring_run_id=recurring_run_id,
            name_contains=name_contains,
            storage_state=storage_state,
        )
        async with turn():
            page = store.list_runs(
                ns, filter, sort=_sort(sort_by), page_size=page_size, page_token=page_token
            )
            return _json(ListRuns.of(page))

    @app.get(f"{API_PREFIX}/runs/{{run_id}}", tags=["runs"], response_model=RunBody)
    async def get_run(run_id: str, ns: Namespace) -> Response:
        async with turn():
            return _json(RunBody.of(store.get_run(ns, run_id)))

    @app.post(f"{API_PREFIX}/runs/{{run_id}}:terminate", tags=["runs"])
    def terminate_run(run_id: str, ns: Namespace) -> RunBody:
        found = store.get_run(ns, run_id)
        if runner is None:
            raise Conflict("run", run_id, "this service does not execute runs")
        if not runner.terminate(ns, run_id):
            raise Conflict("run", run_id, f"it already ended {found.state.value}")
        return RunBody.of(store.get_run(ns, run_id), include_spec=False)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}:retry", tags=["runs"])
    def retry_run(run_id: str, ns: Namespace) -> RunBody:
        """Run a failed or canceled run again under its id: finished steps come from the
        cache, so only what failed (and what follows it) runs."""
        found = store.get_run(ns, run_id)
        if runner is None:
            raise Conflict("run", run_id, "this service does not execute runs")
        if not store.transition_run(
            ns, run_id, [RunState.FAILED, RunState.CANCELED], RunState.PENDING
        ):
            raise Conflict(
                "run", run_id, f"only a failed or canceled run is retried, not {found.state.value}"
            )
        runner.wake()  # PENDING without an owner again: the executor starts it
        return RunBody.of(store.get_run(ns, run_id), include_spec=False)

    @app.post(f"{API_PREFIX}/runs/{{run_id}}:archive", tags=["runs"])
    def archive_run(run_id: str, ns: Namespace) -> RunBody:
        return RunBody.of(store.archive_run(ns, run_id))

    @app.post(f"{API_PREFIX}/runs/{{run_id}}:unarchive", tags=["runs"])
    def unarchive_run(run_id: str, ns: Namespace) -> RunBody:
        return RunBody.of(store.unarchive_run(ns, run_id))

    @app.delete(f"{API_PREFIX}/runs/{{run_id}}", tags=["runs"])
    def delete_run(run_id: str, ns: Namespace) -> dict[str, Any]:
        store.delete_run(ns, run_id)
        return {}

    # -- a run's files: artifacts, logs, lineage -------------------------------------------

    def files_of(ns: str, run_id: str) -> RunFiles:
        return RunFiles(store.get_run(ns, run_id).run_id)  # 404 for another namespace's

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/artifacts", tags=["runs"])
    def list_artifacts(run_id: str, ns: Namespace) -> dict[str, list[ArtifactBody]]:
        return {"artifacts": files_of(ns, run_id).artifacts()}

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/artifacts:download", tags=["runs"])
    def download_artifact(run_id: str, uri: str, ns: Namespace) -> Response:
        """The content of one file artifact of the run (``uri`` as listed)."""
        data = files_of(ns, run_id).read_artifact(uri)
        name = uri.rstrip("/").rpartition("/")[2] or "artifact"
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{_header_safe(name)}"'},
        )

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/lineage", tags=["runs"])
    def run_lineage(run_id: str, ns: Namespace) -> dict[str, Any]:
        return files_of(ns, run_id).lineage()

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/logs", tags=["runs"])
    def list_logs(run_id: str, ns: Namespace) -> dict[str, list[LogBody]]:
        return {"logs": files_of(ns, run_id).logs()}

    @app.get(f"{API_PREFIX}/runs/{{run_id}}/logs/{{task:path}}", tags=["runs"])
    def step_log(
        run_id: str,
        task: str,
        ns: Namespace,
        attempt: Annotated[int | None, Query(ge=1)] = None,
        follow: bool = False,
    ) -> Response:
        """A step's log as text; with ``follow``, streamed while the run goes on. A step the
        run's pipeline does not have is not found (404), followed or not."""
        run = store.get_run(ns, run_id)  # 404 for another namespace's
        files = RunFiles(run.run_id)
        spec = specs.of_digest(
            run.pipeline_spec_digest, run.pipeline_spec or "", source=f"run {run_id}"
        )
        if not has_step(spec, task):
            raise NotFound("step", f"{task} (run {run_id} has no such step)")
        ended = run.state in TERMINAL_STATES
        if not follow or ended:  # nothing more will be written: all of it, or 404, now
            text = files.log_text(task, attempt)
            if text is None:
                raise NotFound("log", task)
            return PlainTextResponse(text)

        def current() -> str:
            try:
                return files.log_text(task, attempt) or ""
            except NotFound:  # that attempt has not started (yet): nothing written
                return ""

        async def stream() -> AsyncIterator[str]:
            sent = 0
            while True:
                text = current()
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)
                if store.get_run(ns, run_id).state in TERMINAL_STATES:
                    text = current()
                    if len(text) > sent:
                        yield text[sent:]
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/plain")

    # -- recurring runs ---------------------------------------------------------------------

    @app.post(f"{API_PREFIX}/recurringruns", tags=["recurring runs"])
    def create_recurring_run(body: CreateRecurringRun, ns: Namespace) -> RecurringRunBody:
        spec_json, arguments = checked_source(ns, body)
        cron, periodic = body.trigger.cron_schedule, body.trigger.periodic_schedule
        window = cron or periodic
        assert window is not None  # validated: one of the two
        try:  # the same checks the scheduler will make, with the field named
            Trigger(
                cron=cron.cron if cron else None,
                interval_seconds=periodic.interval_second if periodic else None,
                start_time=window.start_time,
                end_time=window.end_time,
            )
        except ValueError as exc:
            raise InvalidArgument("recurring_run", "trigger", str(exc)) from exc
        created = store.create_recurring_run(
            ns,
            display_name=body.display_name,
            description=body.description,
            pipeline_spec=spec_json,
            pipeline_version_id=body.pipeline_version_id,
            arguments=arguments,
            experiment_id=body.experiment_id or store.default_experiment(ns).experiment_id,
            cron=cron.cron if cron else None,
            interval_seconds=periodic.interval_second if periodic else None,
            start_time=window.start_time,
            end_time=window.end_time,
            max_concurrency=body.max_concurrency,
            no_catchup=body.no_catchup,
            enabled=body.mode == "ENABLE",
        )
        return RecurringRunBody.of(created)

    @app.get(f"{API_PREFIX}/recurringruns", tags=["recurring runs"])
    def list_recurring_runs(
        ns: Namespace,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
        sort_by: str = "-created_at",
        experiment_id: str | None = None,
    ) -> ListRecurringRuns:
        page = store.list_recurring_runs(
            ns,
            RecurringRunFilter(experiment_id=experiment_id),
            sort=_sort(sort_by),
            page_size=page_size,
            page_token=page_token,
        )
        return ListRecurringRuns(
            recurringRuns=[RecurringRunBody.of(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    @app.get(f"{API_PREFIX}/recurringruns/{{recurring_run_id}}", tags=["recurring runs"])
    def get_recurring_run(recurring_run_id: str, ns: Namespace) -> RecurringRunBody:
        return RecurringRunBody.of(store.get_recurring_run(ns, recurring_run_id))

    @app.post(f"{API_PREFIX}/recurringruns/{{recurring_run_id}}:enable", tags=["recurring runs"])
    def enable_recurring_run(recurring_run_id: str, ns: Namespace) -> RecurringRunBody:
        return RecurringRunBody.of(store.set_recurring_run_enabled(ns, recurring_run_id, True))

    @app.post(f"{API_PREFIX}/recurringruns/{{recurring_run_id}}:disable", tags=["recurring runs"])
    def disable_recurring_run(recurring_run_id: str, ns: Namespace) -> RecurringRunBody:
        return RecurringRunBody.of(store.set_recurring_run_enabled(ns, recurring_run_id, False))

    @app.delete(f"{API_PREFIX}/recurringruns/{{recurring_run_id}}", tags=["recurring runs"])
    def delete_recurring_run(recurring_run_id: str, ns: Namespace) -> dict[str, Any]:
        store.delete_recurring_run(ns, recurring_run_id)
        return {}

    return app


# -- helpers ------------------------------------------------------------------------------


def _namespace_dependency(tokens: Tokens) -> Callable[[Request], str]:
    def namespace_of(request: Request) -> str:
        if not tokens.required:
            return DEFAULT_NAMESPACE
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        namespace = tokens.namespace_of(token.strip()) if scheme.lower() == "bearer" else None
        if namespace is None:
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return namespace

    return namespace_of


def _install_error_handlers(app: FastAPI, namespace_of: Callable[[Request], str]) -> None:
    for error, status in _STATUS.items():

        def handler(_: Request, exc: Exception, status: int = status) -> JSONResponse:
            return JSONResponse(ErrorBody(error=str(exc), code=status).model_dump(), status)

        app.add_exception_handler(error, handler)

    def load_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (SpecLoadError, PipelineArgumentError))
        details = [
            {"field": p.field, "task": p.task, "path": p.path, "message": p.message}
            for p in exc.problems
        ]
        return JSONResponse(ErrorBody(error=str(exc), code=400, details=details).model_dump(), 400)

    app.add_exception_handler(SpecLoadError, load_error)
    app.add_exception_handler(PipelineArgumentError, load_error)

    async def refused(request: Request) -> Response | None:
        """A 401 for a caller without a valid token: FastAPI reads and checks a body
        before the token, so an unknown caller would learn how its body was wrong."""
        try:
            namespace_of(request)
        except HTTPException as exc:
            return await http_exception_handler(request, exc)
        return None

    async def unreadable_body(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # "There was an error parsing the body"
            return await refused(request) or await http_exception_handler(request, exc)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, unreadable_body)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if (refusal := await refused(request)) is not None:
            return refusal
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        text = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return JSONResponse(ErrorBody(error=text, code=400, details=details).model_dump(), 400)

    app.add_exception_handler(RequestValidationError, invalid_request)


def _header_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _sort(sort_by: str) -> Any:
    allowed = ("created_at", "-created_at", "name", "-name")
    if sort_by not in allowed:
        raise InvalidArgument("list", "sort_by", f"one of {', '.join(allowed)}, got {sort_by!r}")
    return sort_by


def _spec(document: dict[str, Any] | None, text: str | None) -> PipelineSpec:
    """A compiled pipeline from the request: raypipe's IR or KFP's, checked."""
    source = json.dumps(document) if document is not None else text or ""
    return loads(source, source="the request's pipeline_spec")


def _arguments(spec: PipelineSpec, parameters: dict[str, Any]) -> dict[str, Any]:
    """The run's arguments, checked against the pipeline's inputs before anything runs."""
    bind_arguments(spec, parameters)  # raises PipelineArgumentError naming the input
    return parameters


def _new_run_id() -> str:
    import uuid

    return uuid.uuid4().hex
