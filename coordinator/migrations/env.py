"""Alembic environment: always online, on the connection coordinator.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import coordinator.dp.models  # issue 15: the DP tables, in their own module
import coordinator.psi.models  # noqa: F401  (issue 15: the PSI relay tables)
from coordinator.models import CoordinatorModel

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run coordinator migrations through coordinator.migrate (libra coordinator db)"
    )

context.configure(
    connection=connection,
    target_metadata=CoordinatorModel.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
