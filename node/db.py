"""The node's database: engine creation and schema set-up (SQLModel, SQLite by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from node import audit, models  # noqa: F401  (registers the tables: migrations are checked against them)
from node.discovery import models as discovery_models  # noqa: F401  (issue 14)
from node.keys.list_encryption import ListKey, bind_list_key, check_list_key
from node.models import NodeState
from node.notices import models as notice_models  # noqa: F401  (issue 7: notice tables)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets `report` read while a crawl writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, list_key: ListKey | None = None) -> Engine:
    """Create the engine and the schema; for SQLite also the database's directory.

    With ``list_key`` list values are stored encrypted; a key that does not decrypt the
    lists already stored raises ListKeyError here, before anything else runs.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    bind_list_key(engine, list_key)
    init_db(engine)
    if list_key is not None:
        check_list_key(engine)
    return engine


def init_db(engine: Engine) -> None:
    # Migrations, not create_all: an upgraded node brings an older database forward.
    # A database already at the newest revision skips Alembic entirely (start-up time).
    from node.schema_version import at_newest

    if at_newest(engine):
        return
    from node.migrate import upgrade

    upgrade(engine)
    with Session(engine) as session:
        if session.get(NodeState, 1) is None:
            session.add(NodeState(id=1, next_sequence=1))
            session.commit()
