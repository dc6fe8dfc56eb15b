"""Engine construction and schema creation for SQLite (default) and PostgreSQL.

``create_schema`` is the single place tables come into being; it runs the Alembic migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_S = 15.0


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones, so values are stored as naive UTC there and made aware again on
    the way out; comparisons in SQL stay correct because every stored value is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets the picture be read while a report is being written.
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def make_engine(url: str, *, connect_args: dict[str, Any] | None = None) -> Engine:
    """Create an engine; for SQLite, create the parent directory and set safe pragmas."""
    parsed = make_url(url)
    args: dict[str, Any] = dict(connect_args or {})
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # FastAPI runs sync work in a thread pool; each pooled connection is used by one
        # thread at a time, so sharing across threads is safe.
        args.setdefault("check_same_thread", False)
        args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
        engine = create_engine(url, connect_args=args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, connect_args=args, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema with the Alembic migrations (idempotent)."""
    from .migrate import upgrade

    upgrade(engine)


def new_session(engine: Engine) -> Session:
    # Rows stay readable after commit: ingest returns data from rows it just stored.
    return Session(engine, expire_on_commit=False)
