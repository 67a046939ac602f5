"""Fuzzing the service's REST API from its own OpenAPI document, with schemathesis.

The app is ``create_app(store, execute=False, tokens=...)`` (records only: nothing is run)
on a SQLite store, called in-process through its ASGI interface. Every operation of
``/openapi.json`` gets generated requests, valid ones and malformed ones (wrong types,
missing fields, out-of-range numbers, unknown enum values, extra properties), and

* no request may get a 5xx (``not_a_server_error``; in-process, an exception the app does
  not handle reaches the test as that exception, which fails it just the same);
* a malformed request must get a 4xx (``negative_data_rejection``, with only 4xx
  accepted, where schemathesis would also accept a 5xx);
* a 200 body must match the response schema the document declares.

Three passes: ids as generated (mostly unknown: 404s); the path's ids (and the body's, for
creating runs) replaced by records that exist, a fresh set per request; and chains of
calls along the links schemathesis infers from the document (create an experiment, get,
archive, delete it; ...), each chain on an empty store. Then: every route but ``/healthz``
refuses a request without a valid token; and no route serves a file that is not one of
the run's own artifacts under the artifact root (``..``, absolute paths, encoded dots,
a symbolic link a step made, an imported file outside the root, another namespace's run).

Deterministic: a fixed seed, ``deterministic`` generation (Hypothesis derandomized, no
example database), a few examples per operation. About 40 s on 2 cores, plus the
session's Ray start (the traversal test runs two small pipelines).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

import raypipe
from raypipe import dsl
from raypipe.api.app import API_PREFIX, create_app
from raypipe.api.auth import parse_tokens
from raypipe.api.store import RunState, Store
from raypipe.dsl import Dataset, Input, Output
from tests.pipelines import addition

TOKEN = "fuzz-token"
NAMESPACE = "fuzz"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 20261129
EXAMPLES_PER_OPERATION = 12
STATEFUL_SCENARIOS = 25

CHECKS = [not_a_server_error, negative_data_rejection, response_schema_conformance]


def _app(store: Store) -> FastAPI:
    return fuzz_app(store, tokens=f"{TOKEN}:{NAMESPACE}")


def fuzz_app(store: Store, *, tokens: str) -> FastAPI:
    """The app under fuzz: records only, nothing runs; ``tokens`` as in
    ``RAYPIPE_API_TOKENS`` (``""``: none configured, the service is open)."""
    return create_app(store, execute=False, tokens=parse_tokens(tokens))


def _openapi_document() -> dict[str, Any]:
    """The app's ``/openapi.json`` (it does not depend on the store's contents)."""
    with tempfile.TemporaryDirectory(prefix="raypipe-fuzz-") as folder:
        with Store(f"sqlite:///{Path(folder) / 'openapi.db'}") as store:
            document: dict[str, Any] = _app(store).openapi()
            return document


DOCUMENT = _openapi_document()


def fuzz_schema(headers: dict[str, str], examples: int = EXAMPLES_PER_OPERATION) -> Any:
    """The schemathesis schema of ``DOCUMENT``: every request sends ``headers``, a fixed
    seed, deterministic generation of valid and invalid data."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "generation": {
                "mode": "all",
                "max-examples": examples,
                "deterministic": True,
            },
            # schemathesis also accepts a 5xx for invalid data by default: here, a 4xx
            "checks": {"negative_data_rejection": {"expected-statuses": ["4xx"]}},
        }
    )
    return schemathesis.openapi.from_dict(DOCUMENT, config=config)


schema = fuzz_schema(AUTH)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One app and store for the module's cases (records pile up across examples)."""
    database = tmp_path_factory.mktemp("fuzz") / "service.db"
    with Store(f"sqlite:///{database}") as store:
        yield _app(store)


@schema.parametrize()
def test_no_request_gets_a_server_error(case: schemathesis.Case, app: FastAPI) -> None:
    case.call_and_validate(app=app, checks=CHECKS)


SPEC = raypipe.compile(addition)


def _seed(store: Store, number: int) -> dict[str, str]:
    """A fresh set of records (names made unique by ``number``): what each path
    parameter of the document names, and its id."""
    experiment = store.create_experiment(NAMESPACE, f"experiment-{number}")
    pipeline = store.create_pipeline(NAMESPACE, f"pipeline-{number}")
    version = store.create_pipeline_version(
        NAMESPACE, pipeline.pipeline_id, "v1", SPEC.model_dump_json()
    )
    runs = [
        store.create_run(
            NAMESPACE,
            display_name=f"run-{number}-{i}",
            pipeline_version_id=version.pipeline_version_id,
            arguments={"a": 1, "b": 2},
            experiment_id=experiment.experiment_id,
        )
        for i in range(2)
    ]
    # one run ended (deleted, retried, archived as a finished run is), one still pending
    store.transition_run(NAMESPACE, runs[0].run_id, [RunState.PENDING], RunState.FAILED)
    recurring = store.create_recurring_run(
        NAMESPACE,
        display_name=f"recurring-{number}",
        pipeline_version_id=version.pipeline_version_id,
        arguments={"a": 1, "b": 2},
        experiment_id=experiment.experiment_id,
        interval_seconds=3600,
    )
    return {
        "experiment_id": experiment.experiment_id,
        "pipeline_id": pipeline.pipeline_id,
        "pipeline_version_id": version.pipeline_version_id,
        "run_id": runs[number % 2].run_id,
        "ended_run_id": runs[0].run_id,
        "recurring_run_id": recurring.recurring_run_id,
        "task": "add",
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, FastAPI]]:
    database = tmp_path_factory.mktemp("fuzz-seeded") / "service.db"
    with Store(f"sqlite:///{database}") as store:
        yield store, _app(store)


_seeds = iter(range(1_000_000))


@schema.include(path_regex=r"\{").parametrize()
def test_operations_on_existing_records(
    case: schemathesis.Case, seeded: tuple[Store, FastAPI]
) -> None:
    """The same checks with the path's ids (and the body's, for POST /runs and
    /recurringruns) pointing at records that exist: a fresh set for every request."""
    store, app = seeded
    ids = _seed(store, next(_seeds))
    if "/logs/" in case.path:
        # ?follow=true streams until the run ends, and nothing runs here: an ended run
        ids["run_id"] = ids["ended_run_id"]
    if isinstance(case.path_parameters, dict):
        for name in case.path_parameters:
            if isinstance(case.path_parameters[name], str) and name in ids:
                case.path_parameters[name] = ids[name]
    case.call_and_validate(app=app, checks=CHECKS)


@schema.include(path_regex=r"^/apis/v2beta1/(runs|recurringruns)$", method="POST").parametrize()
def test_creating_runs_of_an_existing_version(
    case: schemathesis.Case, seeded: tuple[Store, FastAPI]
) -> None:
    """Runs and recurring runs of a stored version, with fuzzed parameters and fields."""
    store, app = seeded
    number = next(_seeds)
    ids = _seed(store, number)
    body = case.body
    if isinstance(body, dict):
        for name in ("pipeline_version_id", "experiment_id"):
            if isinstance(body.get(name), str):
                body[name] = ids[name]
        if case.meta is not None and case.meta.generation.mode.is_positive:
            # the document cannot say "exactly one source": give the stored version
            body.pop("pipeline_spec", None)
            body.pop("pipeline_spec_yaml", None)
            body["pipeline_version_id"] = ids["pipeline_version_id"]
            if number % 2 and isinstance(body.get("runtime_config"), dict):
                body["runtime_config"]["parameters"] = {"a": number, "b": 2}
    case.call_and_validate(app=app, checks=CHECKS)


def test_linked_calls_on_existing_records(tmp_path: Path) -> None:
    """Chains of calls along the links inferred from the document: create, then read,
    archive, run, delete what was created. Each scenario starts on an empty store, so a
    failing one replays the same way."""
    machine = schema.as_state_machine()
    scenarios = iter(range(1_000_000))

    class Workflow(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            database = tmp_path / f"scenario-{next(scenarios)}.db"
            self.store = Store(f"sqlite:///{database}")
            self.app = _app(self.store)

        def teardown(self) -> None:
            self.store.close()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": self.app}

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


def _operations() -> Iterator[tuple[str, str]]:
    for path, operations in DOCUMENT["paths"].items():
        for method in operations:
            yield method.upper(), path


@pytest.mark.parametrize(("method", "path"), list(_operations()))
def test_every_route_but_health_needs_a_token(method: str, path: str, app: FastAPI) -> None:
    url = path.replace("{", "").replace("}", "")  # path parameters named by themselves
    with TestClient(app) as client:
        anonymous = client.request(method, url)
        wrong = client.request(method, url, headers={"Authorization": "Bearer not-a-token"})
    if path == "/healthz":
        assert anonymous.status_code == 200
        return
    assert anonymous.status_code == 401, anonymous.text
    assert wrong.status_code == 401, wrong.text
    assert anonymous.headers["www-authenticate"] == "Bearer"


# -- path traversal: a run's files, and nothing else ---------------------------------------


@dsl.component
def write_and_link(secret: str, report: Output[Dataset], link: Output[Dataset]) -> str:
    import os

    print("step log line")
    with open(report.path, "w") as f:
        f.write("report")
    os.symlink(secret, link.path)  # an output that points outside the artifact root
    return "done"


@dsl.component
def read_imported(data: Input[Dataset]) -> int:
    with open(data.path) as f:
        return len(f.read())


@dsl.pipeline(name="traversal")
def traversal(secret: str) -> str:
    imported = dsl.importer(artifact_uri=secret, artifact_class=Dataset)
    read_imported(data=imported.output)
    return write_and_link(secret=secret).outputs["Output"]


SECRET = "top secret: outside the artifact root"


def _artifacts(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    """The run's artifacts once its lineage is written (it lands just after the run ends)."""
    deadline = time.monotonic() + 60
    while True:
        listed: list[dict[str, Any]] = client.get(
            f"{API_PREFIX}/runs/{run_id}/artifacts", headers=AUTH
        ).json()["artifacts"]
        if len(listed) >= 2 or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def test_no_route_serves_a_file_outside_the_runs_artifacts(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    result = raypipe.run(traversal, {"secret": str(secret)}, quiet=True, cache=False)
    assert result.status == "SUCCEEDED", result
    other = raypipe.run(traversal, {"secret": str(secret)}, quiet=True, cache=False)
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as store:
        for run_id, namespace in ((result.run_id, NAMESPACE), (other.run_id, "elsewhere")):
            store.create_run(  # the service's record of a run made outside it
                namespace,
                display_name="traversal",
                pipeline_spec=raypipe.compile(traversal).model_dump_json(),
                arguments={"secret": str(secret)},
                run_id=run_id,
            )
        with TestClient(_app(store)) as client:
            base = f"{API_PREFIX}/runs/{result.run_id}"
            artifacts = {a["output"]: a["uri"] for a in _artifacts(client, result.run_id)}
            # the importer's output is the secret itself, recorded as the run's artifact
            assert artifacts.keys() == {"report", "link", "artifact"}, artifacts
            assert artifacts["artifact"] == str(secret)
            report = artifacts["report"]
            ok = client.get(f"{base}/artifacts:download", params={"uri": report}, headers=AUTH)
            assert ok.status_code == 200 and ok.content == b"report"

            root = report.split(f"/{result.run_id}/")[0]  # {root}/{pipeline}/{run}/...
            hidden = client.get(f"{API_PREFIX}/runs/{other.run_id}/artifacts", headers=AUTH)
            assert hidden.status_code == 404  # another namespace's run
            other_report = report.replace(result.run_id, other.run_id)
            attempts = [
                artifacts["link"],  # recorded by the run, but a link to the secret
                artifacts["artifact"],  # recorded by the run, but outside the artifact root
                str(secret),
                f"file://{secret}",
                "/etc/passwd",
                "../../../../../../etc/passwd",
                "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                f"{report}/../../../../../../../etc/passwd",
                f"{report}/../link",
                f"{root}/../secret.txt",
                f"{root}/%2e%2e/secret.txt",
                f"{root}/%252e%252e/secret.txt",
                f"{root}/..%5csecret.txt",
                report.replace("/report", "/../../../../secret.txt"),
                f"{report}\x00.txt",
                f"{report}/.",
                f"{report}/",
                other_report,  # another namespace's run's file
                root,
                "",
            ]
            for uri in attempts:
                refused = client.get(
                    f"{base}/artifacts:download", params={"uri": uri}, headers=AUTH
                )
                assert refused.status_code in (400, 404), (uri, refused.status_code)
                assert SECRET.encode() not in refused.content, uri
            # the same, spelled in the raw query string (no client-side encoding)
            for raw in (
                "..%2F..%2Fetc%2Fpasswd",
                "%2Fetc%2Fpasswd",
                f"{secret}".replace("/", "%2F"),
            ):
                refused = client.get(f"{base}/artifacts:download?uri={raw}", headers=AUTH)
                assert refused.status_code in (400, 404), (raw, refused.status_code)
            # and in the path: the other namespace's run, the logs' {task:path}
            for path in (
                f"{API_PREFIX}/runs/{other.run_id}/artifacts:download?uri={other_report}",
                f"{base}/logs/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                f"{base}/logs/%2Fetc%2Fpasswd",
                f"{base}/logs/write-and-link%2F..%2F..%2F..%2F..%2Fsecret.txt",
                f"{API_PREFIX}/runs/..%2F..%2F..%2Fetc/artifacts",
            ):
                refused = client.get(path, headers=AUTH)
                assert refused.status_code in (400, 404), (path, refused.status_code)
                assert SECRET.encode() not in refused.content, path
            log = client.get(f"{base}/logs/write-and-link", headers=AUTH)
            assert log.status_code == 200 and "step log line" in log.text


@dsl.component
def say(text: str) -> str:
    print(text)
    return text


@dsl.pipeline(name="saying")
def saying(text: str = "hello") -> str:
    return say(text=text).output


def test_following_a_missing_attempt_is_not_found(tmp_path: Path) -> None:
    result = raypipe.run(saying, quiet=True, cache=False)
    with Store(f"sqlite:///{tmp_path / 'service.db'}") as store:
        store.create_run(
            NAMESPACE,
            display_name="saying",
            pipeline_spec=raypipe.compile(saying).model_dump_json(),
            run_id=result.run_id,
        )
        store.transition_run(NAMESPACE, result.run_id, [RunState.PENDING], RunState.SUCCEEDED)
        with TestClient(_app(store)) as client:
            url = f"{API_PREFIX}/runs/{result.run_id}/logs/say"
            assert client.get(url, headers=AUTH).text == "hello\n"
            assert client.get(url, params={"attempt": 9}, headers=AUTH).status_code == 404
            followed = client.get(url, params={"attempt": 9, "follow": "true"}, headers=AUTH)
            assert followed.status_code == 404
