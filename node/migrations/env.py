"""Alembic environment: always online, on the connection node.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import node.db  # noqa: F401  (registers every node table on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run node migrations through node.migrate (libra node db upgrade)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
    compare_type=True,
    # Its own name: a node and a coordinator may share one PostgreSQL database (tests, labs).
    version_table="node_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
