"""Where the tests find the machine's services, and what to do when one is missing.

A test that needs PostgreSQL or Redis skips with the reason when the service is absent,
except in CI (CI=true), where the absence is a failure.
"""

from __future__ import annotations

import ipaddress
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_reasons: dict[str, str | None] = {}


def postgres_url() -> str:
    """The test server's URL; refuses anything but loopback."""
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


def require_postgres() -> str:
    """The URL of a reachable server, or skip (fail under CI) with the reason."""
    url = postgres_url()
    if url not in _reasons:
        probe = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            _reasons[url] = None
        except OperationalError as exc:
            _reasons[url] = f"PostgreSQL at {url} is unreachable: {exc.orig}"
        finally:
            probe.dispose()
    reason = _reasons[url]
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires PostgreSQL)")
        pytest.skip(reason)
    return url
