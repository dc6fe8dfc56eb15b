"""Backends for coordinator tests: every DB-touching test runs on SQLite and on PostgreSQL.

PostgreSQL: LIBRA_TEST_POSTGRES_URL (default the local trust-auth server). Each test gets a
fresh, uniquely named schema (search_path via the libpq ``options`` connect argument) that is
dropped afterwards. An unreachable server skips those tests locally and fails them when CI=true.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError

from coordinator.db import create_schema, make_engine
from protocol.keys import NodeKey

from .helpers import fixed_key

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)

_postgres_state: dict[str, str | None] = {}


@dataclass(frozen=True)
class Backend:
    name: str
    # A URL a config file can carry (the PostgreSQL one selects the test schema itself).
    url: str
    engine: Engine


def _postgres_url() -> str:
    url = os.environ.get("LIBRA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    host = make_url(url).host or "localhost"
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            pytest.fail(f"LIBRA_TEST_POSTGRES_URL must point at loopback, not {host}")
    return url


def _postgres_unavailable(url: str) -> str | None:
    """None when the server answers, else the reason (checked once per test session)."""
    if "reason" not in _postgres_state:
        probe = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            _postgres_state["reason"] = None
        except OperationalError as exc:
            _postgres_state["reason"] = f"PostgreSQL at {url} is unreachable: {exc.orig}"
        finally:
            probe.dispose()
    return _postgres_state["reason"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'coordinator.db'}"
        engine = make_engine(url)
        create_schema(engine)
        yield Backend("sqlite", url, engine)
        engine.dispose()
        return

    base_url = _postgres_url()
    reason = _postgres_unavailable(base_url)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires PostgreSQL)")
        pytest.skip(reason)
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
