"""Backends for coordinator tests: every DB-touching test runs on SQLite and on PostgreSQL.

PostgreSQL: LIBRA_TEST_POSTGRES_URL (default the local trust-auth server). Each test gets a
fresh, uniquely named schema (search_path via the libpq ``options`` connect argument) that is
dropped afterwards. An unreachable server skips those tests locally and fails them when CI=true.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from coordinator.db import create_schema, make_engine
from protocol.keys import NodeKey
from tests.services import require_postgres

from .helpers import fixed_key

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Backend:
    name: str
    # A URL a config file can carry (the PostgreSQL one selects the test schema itself).
    url: str
    engine: Engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'coordinator.db'}"
        engine = make_engine(url)
        create_schema(engine)
        yield Backend("sqlite", url, engine)
        engine.dispose()
        return

    base_url = require_postgres()  # skips, or fails under CI=true, when it is absent
    schema = f"libra_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    options = f"-csearch_path={schema}"
    engine = make_engine(base_url, connect_args={"options": options})
    try:
        create_schema(engine)
        separator = "&" if "?" in base_url else "?"
        url = f"{base_url}{separator}options={quote(options)}"
        yield Backend("postgres", url, engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(backend: Backend) -> Engine:
    return backend.engine


@pytest.fixture
def key_a() -> NodeKey:
    return fixed_key(1)


@pytest.fixture
def key_b() -> NodeKey:
    return fixed_key(2)
