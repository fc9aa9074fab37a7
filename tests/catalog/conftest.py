"""Catalogue fixtures: one fresh catalogue per test, on SQLite and (when given) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from ferry.catalog import Catalog

# scripts/postgres-dev start DIR PORT prints url=...; export it as FERRY_TEST_POSTGRES_URL. The
# role in it must be allowed to create schemas in its database: every test gets its own.
POSTGRES_SKIP_REASON = (
    "no PostgreSQL test server (FERRY_TEST_POSTGRES_URL unset; "
    "scripts/postgres-dev start DIR PORT prints one)"
)


def postgres_url() -> str:
    url = os.environ.get("FERRY_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("FERRY_REQUIRE_POSTGRES"):
            pytest.fail(f"FERRY_REQUIRE_POSTGRES is set but {POSTGRES_SKIP_REASON}")
        pytest.skip(POSTGRES_SKIP_REASON)
    return url


# No "postgres" marker: pyproject's marker list is not this package's to extend, and
# `-k postgresql` / `-k sqlite` select a backend as well.
@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def catalog_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that no other test uses."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with fresh_postgres() as url:
        yield url


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a new, empty schema, dropped afterwards."""
    # A schema per test, made the connection's search_path: as isolated as a database of
    # its own for the catalogue's unqualified names, and a third of the cost to create.
    admin_url = make_url(postgres_url())
    name = f"ferry_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = admin_url.update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """A migrated, empty catalogue."""
    cat = Catalog(catalog_url)
    cat.migrate()
    yield cat
    cat.close()
