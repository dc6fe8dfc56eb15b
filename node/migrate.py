"""Programmatic Alembic for the node database: the migrations ship inside the package.

``upgrade`` is how node tables come into being (``make_engine`` calls it), so every node
database is at a known revision and an upgraded node brings an older database forward in one
transaction. A database made before migrations existed (tables but no version row) has the
baseline schema: it is stamped at the baseline and upgraded from there.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "node_alembic_version"
BASELINE = "n0001"
# A table every pre-migration node database has: its presence without a version row means
# "made by create_all at the baseline".
_BASELINE_MARKER = "crawl_cycle"
_PG_LOCK_KEY = 0x4C49425241  # "LIBRA": any fixed key the node's database uses for nothing else


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    """One migrator at a time: a crawl, a report and a worker may start together on a new
    database. PostgreSQL: a transaction-scoped advisory lock; SQLite: a lock file beside it."""
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the node database up to ``revision`` (default: the newest); idempotent."""
    config = alembic_config()
    with engine.begin() as connection, _migration_lock(engine, connection):
        config.attributes["connection"] = connection
        if _current(connection) is None and inspect(connection).has_table(_BASELINE_MARKER):
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _current(connection)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
