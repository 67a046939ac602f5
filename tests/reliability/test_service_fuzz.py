"""The service's schemathesis API fuzz without a token: with no tokens configured (the
open, single-user service), and with tokens configured but none sent.

The authenticated pass (tokens configured, a valid bearer token on every request; with
unknown ids, ids of records that exist, and along inferred links) is
``tests/test_service_fuzz.py``; this module reuses its document, seed and app
(:func:`fuzz_schema`, :func:`fuzz_app`). Checked here:

* open service: every operation's generated requests, valid and malformed, never get a
  5xx, malformed ones get a 4xx, 200 bodies match the document (the same checks);
* tokens configured, none sent (and a wrong one): every route but ``/healthz`` answers
  401 to every generated request, whatever its parameters and body, never a 5xx and
  never data (a method the path does not declare, which schemathesis also sends, is a
  405).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI

from raypipe.api.store import Store
from tests.test_service_fuzz import CHECKS, DOCUMENT, fuzz_app, fuzz_schema

EXAMPLES = 6  # per operation: the authenticated pass runs 12

open_schema = fuzz_schema({}, EXAMPLES)
anonymous_schema = fuzz_schema({}, EXAMPLES)
wrong_token_schema = fuzz_schema({"Authorization": "Bearer not-a-token"}, 3)


@pytest.fixture(scope="module")
def open_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """No tokens configured: everything in the ``default`` namespace."""
    with Store(f"sqlite:///{tmp_path_factory.mktemp('open') / 'service.db'}") as store:
        yield fuzz_app(store, tokens="")


@pytest.fixture(scope="module")
def guarded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """Tokens configured; the requests here send none (or a wrong one)."""
    with Store(f"sqlite:///{tmp_path_factory.mktemp('guarded') / 'service.db'}") as store:
        store.create_experiment("team", "kept")  # data a leak would show
        yield fuzz_app(store, tokens="right-token:team")


@open_schema.parametrize()
def test_open_service_never_answers_a_server_error(
    case: schemathesis.Case, open_app: FastAPI
) -> None:
    case.call_and_validate(app=open_app, checks=CHECKS)


def _refused(case: schemathesis.Case, app: FastAPI) -> None:
    response = case.call(app=app)
    if case.method.lower() not in DOCUMENT["paths"][case.path]:
        # schemathesis also sends methods a path does not declare (TRACE...): no route
        assert response.status_code == 405, (case.method, case.path, response.status_code)
        return
    if case.path == "/healthz":
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 401, (case.method, case.path, response.status_code)
    assert "kept" not in response.text


@anonymous_schema.parametrize()
def test_without_a_token_every_route_but_health_answers_401(
    case: schemathesis.Case, guarded_app: FastAPI
) -> None:
    _refused(case, guarded_app)


@wrong_token_schema.parametrize()
def test_with_a_wrong_token_every_route_but_health_answers_401(
    case: schemathesis.Case, guarded_app: FastAPI
) -> None:
    _refused(case, guarded_app)
