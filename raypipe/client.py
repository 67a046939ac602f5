"""A Python client of the raypipe service (``raypipe server``), with ``kfp.Client``'s methods.

Each method is one or two REST calls under ``/apis/v2beta1`` and returns the server's
body as a pydantic model (:mod:`raypipe.api.schemas`). A refused call raises
:class:`raypipe.ApiError` with the status code and the server's message, which names the
field at fault.

Example:
    >>> client = raypipe.Client("http://127.0.0.1:8888", token="s3cret")  # doctest: +SKIP
    >>> run = client.create_run_from_pipeline_func(addition, arguments={"a": 1, "b": 2})
    >>> client.wait_for_run_completion(run.run_id, timeout=60).state
    'SUCCEEDED'
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from raypipe.errors import ApiError

if TYPE_CHECKING:  # imported when used: `import raypipe` stays free of httpx and SQLAlchemy
    import httpx

    from raypipe.api.schemas import (
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
    from raypipe.dsl.pipeline import Pipeline
    from raypipe.spec.models import PipelineSpec

__all__ = ["DEFAULT_HOST", "Client", "RunPipelineResult"]

DEFAULT_HOST = "http://127.0.0.1:8888"
"""Where ``raypipe server`` listens by default."""

API_PREFIX = "/apis/v2beta1"
ENDED_STATES = ("SUCCEEDED", "FAILED", "CANCELED")

PathLike = str | os.PathLike[str]
"""A file path: a string or a :class:`pathlib.Path`."""

Filter = str | Mapping[str, Any]
"""A list filter: KFP's filter JSON (``{"predicates": [...]}``), or the service's query
parameters as a mapping (``{"name_contains": "nightly", "storage_state": "ARCHIVED"}``)."""


class Client:
    """A connection to a raypipe service, with ``kfp.Client``'s method names.

    Example:
        >>> with raypipe.Client("http://127.0.0.1:8888") as client:  # doctest: +SKIP
        ...     client.create_experiment("churn").experiment_id
        '5f0c...'

    Args:
        host: the service's URL (``http://`` is assumed when no scheme is given).
        token: a bearer token, when the service asks for one (``RAYPIPE_API_TOKENS``);
            it also chooses the namespace the calls see.
        timeout: seconds to wait for each answer.
        transport: an ``httpx`` transport to send requests through (tests, proxies).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.host = (host if "://" in host else f"http://{host}").rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.host, headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"raypipe.Client({self.host!r})"

    def close(self) -> None:
        """Close the connections (the client is unusable afterwards)."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def healthz(self) -> dict[str, Any]:
        """The service's liveness answer, e.g. ``{"status": "ok", "database": "sqlite"}``."""
        found: dict[str, Any] = self._request("GET", "/healthz", prefix="")
        return found

    # -- experiments ----------------------------------------------------------------------

    def create_experiment(self, name: str, description: str = "") -> ExperimentBody:
        """Create an experiment, or return the one of that name (as ``kfp.Client`` does).

        Example:
            >>> client.create_experiment("churn", "weekly churn models").display_name
            'churn'
        """
        from raypipe.api.schemas import ExperimentBody

        try:
            body = {"display_name": name, "description": description}
            return ExperimentBody.model_validate(self._request("POST", "/experiments", json=body))
        except ApiError as exc:
            if exc.status_code != 409:
                raise
        return self.get_experiment(experiment_name=name)

    def get_experiment(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> ExperimentBody:
        """The experiment with this id, or else with this display name.

        Example:
            >>> client.get_experiment(experiment_name="churn").experiment_id
            '5f0c...'

        Raises:
            ApiError: 404, no such experiment in the token's namespace.
            ValueError: neither an id nor a name was given.
        """
        from raypipe.api.schemas import ExperimentBody

        if experiment_id is not None:
            return ExperimentBody.model_validate(
                self._request("GET", f"/experiments/{experiment_id}")
            )
        if experiment_name is None:
            raise ValueError("get_experiment: give experiment_id or experiment_name")
        page_token = ""
        while True:
            page = self.list_experiments(
                page_token=page_token, page_size=200, filter={"name_contains": experiment_name}
            )
            for found in page.experiments:
                if found.display_name == experiment_name:
                    return found
            if not page.next_page_token:
                raise ApiError(
                    404,
                    f"experiment {experiment_name!r} not found",
                    method="GET",
                    path=f"{API_PREFIX}/experiments",
                )
            page_token = page.next_page_token

    def list_experiments(
        self,
        page_token: str = "",
        page_size: int = 50,
        sort_by: str = "",
        filter: Filter | None = None,
    ) -> ListExperiments:
        """One page of experiments; pass ``next_page_token`` back for the next.

        Example:
            >>> client.list_experiments(sort_by="name").experiments[0].display_name
            'churn'

        Args:
            sort_by: ``created_at`` or ``name``, ``-`` first (or `` desc`` after) for
                descending; empty for the newest first.
            filter: see :data:`Filter`; keys ``name_contains`` and ``storage_state``.
        """
        from raypipe.api.schemas import ListExperiments

        params = _page(page_token, page_size, sort_by) | _filter(filter)
        return ListExperiments.model_validate(self._request("GET", "/experiments", params=params))

    def archive_experiment(self, experiment_id: str) -> ExperimentBody:
        """Archive an experiment (and its runs): they leave default lists."""
        from raypipe.api.schemas import ExperimentBody

        path = f"/experiments/{experiment_id}:archive"
        return ExperimentBody.model_validate(self._request("POST", path))

    def unarchive_experiment(self, experiment_id: str) -> ExperimentBody:
        """Bring an archived experiment back."""
        from raypipe.api.schemas import ExperimentBody

        path = f"/experiments/{experiment_id}:unarchive"
        return ExperimentBody.model_validate(self._request("POST", path))

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment (refused, 409, while it has runs that have not ended)."""
        self._request("DELETE", f"/experiments/{experiment_id}")

    # -- pipelines --------------------------------------------------------------------------

    def upload_pipeline(
        self,
        pipeline_package_path: PathLike,
        pipeline_name: str | None = None,
        description: str | None = None,
    ) -> PipelineBody:
        """Store a compiled pipeline (raypipe's or KFP's YAML or JSON) as a new pipeline
        with its first version, ``v1``.

        Example:
            >>> raypipe.compile(addition, "addition.yaml")
            >>> client.upload_pipeline("addition.yaml").display_name
            'addition'

        Args:
            pipeline_name: the pipeline's display name (default: the file's name without
                its suffix).

        Raises:
            ApiError: 409 a pipeline of that name exists; 400 the file is not a valid
                pipeline (nothing is left stored).
        """
        path = Path(pipeline_package_path)
        text = path.read_text(encoding="utf-8")
        return self._upload(text, pipeline_name or path.stem, description or "")

    def upload_pipeline_from_pipeline_func(
        self,
        pipeline_func: Pipeline | PipelineSpec,
        pipeline_name: str | None = None,
        description: str | None = None,
    ) -> PipelineBody:
        """Compile a ``@dsl.pipeline`` and store it as a new pipeline with version ``v1``.

        Example:
            >>> client.upload_pipeline_from_pipeline_func(addition).display_name
            'addition'
        """
        from raypipe.spec.io import compile, dumps

        spec = compile(pipeline_func)
        text = dumps(spec, format="json")
        return self._upload(text, pipeline_name or spec.name, description or spec.description or "")

    def _upload(self, text: str, name: str, description: str) -> PipelineBody:
        from raypipe.api.schemas import PipelineBody

        body = {"display_name": name, "description": description}
        pipeline = PipelineBody.model_validate(self._request("POST", "/pipelines", json=body))
        try:
            self._create_version(pipeline.pipeline_id, "v1", text, description)
        except ApiError:
            try:  # leave no pipeline without a version behind
                self.delete_pipeline(pipeline.pipeline_id, cascade=True)
            except ApiError:
                pass  # the version's error below is the one to report
            raise
        return pipeline

    def upload_pipeline_version(
        self,
        pipeline_package_path: PathLike,
        pipeline_version_name: str,
        pipeline_id: str | None = None,
        pipeline_name: str | None = None,
        description: str | None = None,
    ) -> PipelineVersionBody:
        """Add a version to a stored pipeline, named by id or by display name.

        Example:
            >>> client.upload_pipeline_version("addition.yaml", "v2", pipeline_name="addition")

        Raises:
            ApiError: 404 no such pipeline; 400 the file is not a valid pipeline.
            ValueError: neither ``pipeline_id`` nor ``pipeline_name`` was given.
        """
        if pipeline_id is None:
            if pipeline_name is None:
                raise ValueError("upload_pipeline_version: give pipeline_id or pipeline_name")
            pipeline_id = self.get_pipeline_id(pipeline_name)
            if pipeline_id is None:
                raise ApiError(
                    404,
                    f"pipeline {pipeline_name!r} not found",
                    method="GET",
                    path=f"{API_PREFIX}/pipelines",
                )
        text = Path(pipeline_package_path).read_text(encoding="utf-8")
        return self._create_version(pipeline_id, pipeline_version_name, text, description or "")

    def get_pipeline_id(self, name: str) -> str | None:
        """The id of the pipeline with this display name; ``None`` if there is none."""
        page_token = ""
        while True:
            page = self.list_pipelines(
                page_token=page_token, page_size=200, filter={"name_contains": name}
            )
            for found in page.pipelines:
                if found.display_name == name:
                    return found.pipeline_id
            if not page.next_page_token:
                return None
            page_token = page.next_page_token

    def list_pipelines(
        self,
        page_token: str = "",
        page_size: int = 50,
        sort_by: str = "",
        filter: Filter | None = None,
    ) -> ListPipelines:
        """One page of pipelines (``filter`` key: ``name_contains``)."""
        from raypipe.api.schemas import ListPipelines

        params = _page(page_token, page_size, sort_by) | _filter(filter)
        return ListPipelines.model_validate(self._request("GET", "/pipelines", params=params))

    def get_pipeline(self, pipeline_id: str) -> PipelineBody:
        """The pipeline with this id."""
        from raypipe.api.schemas import PipelineBody

        return PipelineBody.model_validate(self._request("GET", f"/pipelines/{pipeline_id}"))

    def list_pipeline_versions(
        self, pipeline_id: str, page_token: str = "", page_size: int = 50, sort_by: str = ""
    ) -> ListPipelineVersions:
        """One page of a pipeline's versions (without their IR: ``get_pipeline_version``)."""
        from raypipe.api.schemas import ListPipelineVersions

        params = _page(page_token, page_size, sort_by)
        found = self._request("GET", f"/pipelines/{pipeline_id}/versions", params=params)
        return ListPipelineVersions.model_validate(found)

    def get_pipeline_version(
        self, pipeline_id: str, pipeline_version_id: str
    ) -> PipelineVersionBody:
        """One version of a pipeline, with its compiled IR (``pipeline_spec``)."""
        from raypipe.api.schemas import PipelineVersionBody

        path = f"/pipelines/{pipeline_id}/versions/{pipeline_version_id}"
        return PipelineVersionBody.model_validate(self._request("GET", path))

    def delete_pipeline(self, pipeline_id: str, *, cascade: bool = False) -> None:
        """Delete a pipeline; it must have no versions unless ``cascade`` (runs made from
        them keep their IR).

        Raises:
            ApiError: 409 the pipeline has versions and ``cascade`` is false.
        """
        params = {"cascade": "true"} if cascade else {}
        self._request("DELETE", f"/pipelines/{pipeline_id}", params=params)

    def _create_version(
        self, pipeline_id: str, name: str, text: str, description: str
    ) -> PipelineVersionBody:
        from raypipe.api.schemas import PipelineVersionBody

        body = {"display_name": name, "description": description, "pipeline_spec_yaml": text}
        found = self._request("POST", f"/pipelines/{pipeline_id}/versions", json=body)
        return PipelineVersionBody.model_validate(found)

    # -- runs -------------------------------------------------------------------------------

    def create_run_from_pipeline_func(
        self,
        pipeline_func: Pipeline | PipelineSpec,
        arguments: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        experiment_name: str | None = None,
        experiment_id: str | None = None,
    ) -> RunPipelineResult:
        """Compile a ``@dsl.pipeline`` and run it on the service.

        The IR travels inline with the run; nothing is stored as a pipeline.

        Example:
            >>> result = client.create_run_from_pipeline_func(addition, {"a": 1, "b": 2})
            >>> result.wait_for_run_completion(timeout=60).state
            'SUCCEEDED'

        Args:
            run_name: the run's display name (default: the pipeline's name and the time).
            experiment_name: created when missing (default: the namespace's ``Default``).
            experiment_id: or else the experiment's id.

        Raises:
            ApiError: 400 an argument is missing, unknown or of the wrong type (named).
        """
        from raypipe.spec.io import compile

        spec = compile(pipeline_func)
        body = {"pipeline_spec": spec.to_dict()}
        name = run_name or _run_name(spec.name)
        return self._start(body, arguments, name, experiment_name, experiment_id)

    def create_run_from_pipeline_package(
        self,
        pipeline_file: PathLike,
        arguments: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        experiment_name: str | None = None,
        experiment_id: str | None = None,
    ) -> RunPipelineResult:
        """Run a compiled pipeline file (raypipe's or KFP's YAML or JSON) on the service.

        Example:
            >>> client.create_run_from_pipeline_package("add_numbers.yaml", {"a": 1, "b": 2})
        """
        path = Path(pipeline_file)
        body = {"pipeline_spec_yaml": path.read_text(encoding="utf-8")}
        name = run_name or _run_name(path.stem)
        return self._start(body, arguments, name, experiment_name, experiment_id)

    def run_pipeline(
        self,
        experiment_id: str | None,
        job_name: str,
        pipeline_package_path: PathLike | None = None,
        params: Mapping[str, Any] | None = None,
        pipeline_id: str | None = None,
        version_id: str | None = None,
    ) -> RunBody:
        """Start a run of a compiled file, of a stored version, or of a stored pipeline's
        latest version.

        Example:
            >>> pipeline = client.upload_pipeline("addition.yaml")
            >>> client.run_pipeline(None, "nightly", params={"a": 1, "b": 2},
            ...                     pipeline_id=pipeline.pipeline_id).state
            'PENDING'

        Args:
            experiment_id: the run's experiment (``None``: the namespace's ``Default``).
            job_name: the run's display name.

        Raises:
            ApiError: 404 no such pipeline or version (or the version is another
                pipeline's); 400 a wrong argument.
            ValueError: no pipeline was named, or a file together with a stored one.
        """
        body = self._source(pipeline_package_path, pipeline_id, version_id)
        return self._create_run(body, params, job_name, experiment_id)

    def get_run(self, run_id: str) -> RunBody:
        """The run with this id, with its state, arguments, error and IR snapshot."""
        from raypipe.api.schemas import RunBody

        return RunBody.model_validate(self._request("GET", f"/runs/{run_id}"))

    def list_runs(
        self,
        page_token: str = "",
        page_size: int = 50,
        sort_by: str = "",
        experiment_id: str | None = None,
        state: str | Sequence[str] | None = None,
        filter: Filter | None = None,
    ) -> ListRuns:
        """One page of runs, of one experiment and in some states if given.

        Example:
            >>> client.list_runs(state=["FAILED", "CANCELED"]).runs

        Args:
            filter: see :data:`Filter`; keys ``name_contains``, ``storage_state`` and
                ``pipeline_version_id``.
        """
        from raypipe.api.schemas import ListRuns

        params = _page(page_token, page_size, sort_by) | _filter(filter)
        if experiment_id is not None:
            params["experiment_id"] = experiment_id
        if state is not None:
            params["state"] = [state] if isinstance(state, str) else list(state)
        return ListRuns.model_validate(self._request("GET", "/runs", params=params))

    def wait_for_run_completion(
        self, run_id: str, timeout: float, sleep_duration: float = 1.0
    ) -> RunBody:
        """Poll a run until it ends (SUCCEEDED, FAILED or CANCELED) and return it.

        Example:
            >>> client.wait_for_run_completion(run.run_id, timeout=300).state
            'SUCCEEDED'

        Raises:
            TimeoutError: the run did not end within ``timeout`` seconds (naming it and its
                state).
        """
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.state in ENDED_STATES:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"run {run_id} ({run.display_name!r}) is still {run.state} after {timeout:g} s"
                )
            time.sleep(min(sleep_duration, left))

    def terminate_run(self, run_id: str) -> RunBody:
        """Cancel a run: CANCELING now, CANCELED once its steps stopped.

        Raises:
            ApiError: 409 the run has already ended.
        """
        from raypipe.api.schemas import RunBody

        return RunBody.model_validate(self._request("POST", f"/runs/{run_id}:terminate"))

    def retry_run(self, run_id: str) -> RunBody:
        """Run a failed or canceled run again under its id; finished steps come from the
        cache.

        Raises:
            ApiError: 409 the run has not failed or been canceled.
        """
        from raypipe.api.schemas import RunBody

        return RunBody.model_validate(self._request("POST", f"/runs/{run_id}:retry"))

    def archive_run(self, run_id: str) -> RunBody:
        """Archive a run: it leaves default lists."""
        from raypipe.api.schemas import RunBody

        return RunBody.model_validate(self._request("POST", f"/runs/{run_id}:archive"))

    def unarchive_run(self, run_id: str) -> RunBody:
        """Bring an archived run back."""
        from raypipe.api.schemas import RunBody

        return RunBody.model_validate(self._request("POST", f"/runs/{run_id}:unarchive"))

    def delete_run(self, run_id: str) -> None:
        """Delete a run's record (refused, 409, while it has not ended)."""
        self._request("DELETE", f"/runs/{run_id}")

    # -- recurring runs ---------------------------------------------------------------------

    def create_recurring_run(
        self,
        experiment_id: str | None,
        job_name: str,
        pipeline_package_path: PathLike | None = None,
        params: Mapping[str, Any] | None = None,
        cron_expression: str | None = None,
        interval_second: int | None = None,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        max_concurrency: int = 1,
        no_catchup: bool = False,
        enabled: bool = True,
        pipeline_id: str | None = None,
        version_id: str | None = None,
        description: str | None = None,
    ) -> RecurringRunBody:
        """Schedule runs: one per tick of a cron expression or of an interval.

        Example:
            >>> client.create_recurring_run(None, "nightly", "addition.yaml",
            ...                             params={"a": 1, "b": 2},
            ...                             cron_expression="0 0 2 * * *").status
            'ENABLED'

        Args:
            experiment_id: the runs' experiment (``None``: the namespace's ``Default``).
            job_name: the recurring run's display name.
            cron_expression: KFP's six fields (seconds first) or the usual five.
            interval_second: or else a tick every this many seconds.
            start_time, end_time: the window of ticks; a naive datetime is local time.
            no_catchup: after the service was away, start only the latest missed tick.
            enabled: False to create it paused (``enable_recurring_run`` starts it).

        Raises:
            ApiError: 400 a wrong cron expression, window or argument (named).
            ValueError: not exactly one of ``cron_expression`` and ``interval_second``.
        """
        from raypipe.api.schemas import RecurringRunBody

        if (cron_expression is None) == (interval_second is None):
            raise ValueError("give exactly one of cron_expression and interval_second")
        window = {"start_time": _time(start_time), "end_time": _time(end_time)}
        trigger = (
            {"cron_schedule": {"cron": cron_expression, **window}}
            if cron_expression is not None
            else {"periodic_schedule": {"interval_second": interval_second, **window}}
        )
        body = {
            "display_name": job_name,
            "description": description or "",
            "experiment_id": experiment_id,
            "runtime_config": {"parameters": dict(params or {})},
            "trigger": trigger,
            "max_concurrency": max_concurrency,
            "no_catchup": no_catchup,
            "mode": "ENABLE" if enabled else "DISABLE",
            **self._source(pipeline_package_path, pipeline_id, version_id),
        }
        return RecurringRunBody.model_validate(self._request("POST", "/recurringruns", json=body))

    def list_recurring_runs(
        self,
        page_token: str = "",
        page_size: int = 50,
        sort_by: str = "",
        experiment_id: str | None = None,
    ) -> ListRecurringRuns:
        """One page of recurring runs (``recurringRuns``, KFP's field name)."""
        from raypipe.api.schemas import ListRecurringRuns

        params = _page(page_token, page_size, sort_by)
        if experiment_id is not None:
            params["experiment_id"] = experiment_id
        found = self._request("GET", "/recurringruns", params=params)
        return ListRecurringRuns.model_validate(found)

    def get_recurring_run(self, recurring_run_id: str) -> RecurringRunBody:
        """The recurring run with this id, with its trigger and status."""
        from raypipe.api.schemas import RecurringRunBody

        found = self._request("GET", f"/recurringruns/{recurring_run_id}")
        return RecurringRunBody.model_validate(found)

    def enable_recurring_run(self, recurring_run_id: str) -> RecurringRunBody:
        """Start ticking again (status ``ENABLED``)."""
        from raypipe.api.schemas import RecurringRunBody

        found = self._request("POST", f"/recurringruns/{recurring_run_id}:enable")
        return RecurringRunBody.model_validate(found)

    def disable_recurring_run(self, recurring_run_id: str) -> RecurringRunBody:
        """Stop starting runs (status ``DISABLED``); runs already started go on."""
        from raypipe.api.schemas import RecurringRunBody

        found = self._request("POST", f"/recurringruns/{recurring_run_id}:disable")
        return RecurringRunBody.model_validate(found)

    def delete_recurring_run(self, recurring_run_id: str) -> None:
        """Delete a recurring run; the runs it started stay."""
        self._request("DELETE", f"/recurringruns/{recurring_run_id}")

    def _start(
        self,
        body: dict[str, Any],
        arguments: Mapping[str, Any] | None,
        run_name: str,
        experiment_name: str | None,
        experiment_id: str | None,
    ) -> RunPipelineResult:
        if experiment_name is not None and experiment_id is None:
            experiment_id = self.create_experiment(experiment_name).experiment_id
        return RunPipelineResult(self, self._create_run(body, arguments, run_name, experiment_id))

    def _create_run(
        self,
        source: dict[str, Any],
        arguments: Mapping[str, Any] | None,
        run_name: str,
        experiment_id: str | None,
    ) -> RunBody:
        from raypipe.api.schemas import RunBody

        body = {
            "display_name": run_name,
            "experiment_id": experiment_id,
            "runtime_config": {"parameters": dict(arguments or {})},
            **source,
        }
        return RunBody.model_validate(self._request("POST", "/runs", json=body))

    def _source(
        self,
        pipeline_package_path: PathLike | None,
        pipeline_id: str | None,
        version_id: str | None,
    ) -> dict[str, Any]:
        """The request fields naming what a run (or recurring run) runs."""
        if pipeline_package_path is not None:
            if pipeline_id is not None or version_id is not None:
                raise ValueError("give pipeline_package_path, or pipeline_id/version_id, not both")
            text = Path(pipeline_package_path).read_text(encoding="utf-8")
            return {"pipeline_spec_yaml": text}
        if version_id is not None:
            if pipeline_id is not None:  # 404 when the version is another pipeline's
                self.get_pipeline_version(pipeline_id, version_id)
            return {"pipeline_version_id": version_id}
        if pipeline_id is None:
            raise ValueError("give pipeline_package_path, pipeline_id or version_id")
        latest = self.list_pipeline_versions(pipeline_id, page_size=1, sort_by="-created_at")
        if not latest.pipeline_versions:
            raise ApiError(
                404,
                f"pipeline {pipeline_id} has no version to run",
                method="GET",
                path=f"{API_PREFIX}/pipelines/{pipeline_id}/versions",
            )
        return {"pipeline_version_id": latest.pipeline_versions[0].pipeline_version_id}

    # -- transport --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        prefix: str = API_PREFIX,
    ) -> Any:
        """Send one request; the decoded JSON answer, or ApiError."""
        import httpx

        full = prefix + path
        try:
            response = self._http.request(method, full, json=json, params=params)
        except httpx.TransportError as exc:  # refused, unreachable, timed out
            raise ApiError(
                None,
                f"cannot reach the raypipe service at {self.host}: {type(exc).__name__}: {exc}",
                method=method,
                path=full,
            ) from exc
        if response.is_error:
            raise _api_error(response, method, full)
        return response.json()


class RunPipelineResult:
    """A started run, as ``kfp.Client.create_run_from_pipeline_func`` returns it.

    Example:
        >>> result = client.create_run_from_pipeline_func(addition, {"a": 1, "b": 2})
        >>> result.run_id, result.wait_for_run_completion(60).state
        ('9b1e...', 'SUCCEEDED')
    """

    def __init__(self, client: Client, run_info: RunBody) -> None:
        self._client = client
        self.run_id = run_info.run_id
        self.run_info = run_info

    def __repr__(self) -> str:
        return f"RunPipelineResult(run_id={self.run_id!r})"

    def wait_for_run_completion(self, timeout: float | None = None) -> RunBody:
        """Wait until the run ends (``timeout`` seconds at most; ``None``: no limit)."""
        return self._client.wait_for_run_completion(
            self.run_id, float("inf") if timeout is None else timeout
        )


# -- helpers ------------------------------------------------------------------------------

_SORT_KEYS = {"created_at": "created_at", "name": "name", "display_name": "name"}


def _page(page_token: str, page_size: int, sort_by: str) -> dict[str, Any]:
    """Paging query parameters; KFP's ``"created_at desc"`` becomes ``"-created_at"``."""
    params: dict[str, Any] = {"page_size": page_size}
    if page_token:
        params["page_token"] = page_token
    if sort_by:
        key, _, order = sort_by.strip().partition(" ")
        descending = key.startswith("-") or order.strip().lower() == "desc"
        key = _SORT_KEYS.get(key.lstrip("-"), key)  # an unknown key: the server names it
        params["sort_by"] = f"-{key}" if descending else key
    return params


_PREDICATE_KEYS = {
    ("display_name", "IS_SUBSTRING"): "name_contains",
    ("name", "IS_SUBSTRING"): "name_contains",
    ("storage_state", "EQUALS"): "storage_state",
    ("state", "EQUALS"): "state",
    ("state", "IN"): "state",
    ("pipeline_version_id", "EQUALS"): "pipeline_version_id",
}


def _filter(filter: Filter | None) -> dict[str, Any]:
    """Query parameters from a mapping, or from KFP's filter JSON (the predicates the
    service can answer: name substring, storage state, run state, pipeline version)."""
    if filter is None:
        return {}
    if isinstance(filter, Mapping):
        return {k: v for k, v in filter.items() if v is not None}
    document = json.loads(filter)
    params: dict[str, Any] = {}
    for predicate in document.get("predicates", []):
        key = predicate.get("key")
        operation = predicate.get("operation") or predicate.get("op")
        name = _PREDICATE_KEYS.get((key, operation))
        if name is None:
            supported = ", ".join(f"{k} {o}" for k, o in _PREDICATE_KEYS)
            raise ValueError(f"filter: {key} {operation} is not supported (only {supported})")
        if "string_values" in predicate:
            value: Any = list(predicate["string_values"].get("values", []))
        else:
            value = predicate.get("string_value")
        params[name] = value
    return params


def _time(value: datetime | str | None) -> str | None:
    """An ISO 8601 time with its offset (a naive datetime is taken as local time)."""
    if value is None or isinstance(value, str):
        return value
    return (value if value.tzinfo is not None else value.astimezone()).isoformat()


def _run_name(name: str) -> str:
    return f"{name} {datetime.now().strftime('%Y-%m-%d %H-%M-%S')}"


def _api_error(response: httpx.Response, method: str, path: str) -> ApiError:
    """The server's ``{"error", "code", "details"}`` body (FastAPI's ``{"detail"}`` for
    401 and unknown routes) as an ApiError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("detail") or response.reason_phrase
        details = body.get("details") or []
    else:
        message, details = response.text.strip() or response.reason_phrase, []
    return ApiError(
        response.status_code,
        str(message),
        method=method,
        path=path,
        details=details if isinstance(details, list) else [],
    )
