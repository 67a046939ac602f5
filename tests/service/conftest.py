"""Store tests run twice, on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``RAYPIPE_TEST_POSTGRES_URL`` (``make test`` sets it after starting
a private server, see ``make test-postgres``), else from that server's address. When it
cannot be reached the PostgreSQL cases fail and say how to get one: they never skip.
Each case gets an empty schema of its own, so parallel sessions share one server safely.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.exc import OperationalError

from raypipe.api.store import Store
from raypipe.api.store.database import sqlalchemy_url

POSTGRES_URL_ENV = "RAYPIPE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://raypipe:raypipe@127.0.0.1:54329/raypipe_test"
"""What ``make test-postgres`` starts (keep the two in step)."""


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """The store needs no Ray: this replaces the suite's session-wide Ray start here."""
    yield


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a reachable PostgreSQL database, or a failure that says how to get one."""
    url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    engine = sqlalchemy.create_engine(sqlalchemy_url(url), connect_args={"connect_timeout": 5})
    problem = None
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        problem = str(exc.orig).strip()
    finally:
        engine.dispose()
    if problem is not None:
        shown = sqlalchemy_url(url).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is not reachable at {shown}: {problem}\n"
            "The store tests run against PostgreSQL as well as SQLite. `make test-postgres`\n"
            "(which `make test` runs) installs the Debian postgresql package if needed and\n"
            f"starts a private server on 127.0.0.1:54329; or point {POSTGRES_URL_ENV}\n"
            "at a database whose user may create schemas in it.",
            pytrace=False,
        )
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema (on the search path
    of every connection made with this URL), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    server = sqlalchemy_url(request.getfixturevalue("postgres_server"))
    schema = f"store_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = server.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on ``store_url``."""
    with Store(store_url) as store:
        yield store
