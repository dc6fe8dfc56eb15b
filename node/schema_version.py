"""Is the node database already at the newest migration? Answered without importing Alembic.

Every node command opens the database, and Alembic's import and script scan cost ~0.3 s of a
command's start-up (issue 17: `libra node list match` answers in well under a second). The
newest revision is the highest ``nNNNN`` prefix among the shipped migration files (their
naming rule; tests/node/test_schema_version.py checks it equals Alembic's head). When the
database's version row names it, there is nothing to migrate; otherwise node.migrate runs.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

VERSIONS_DIR = Path(__file__).parent / "migrations" / "versions"
VERSION_TABLE = "node_alembic_version"  # node.migrate.VERSION_TABLE
_SELECT_VERSION = text("SELECT version_num FROM node_alembic_version")
_REVISION_FILE = re.compile(r"^(n\d{4})_\w+\.py$")


@cache
def newest_revision() -> str:
    """The newest shipped revision id, from the migration file names."""
    found = [m.group(1) for p in VERSIONS_DIR.iterdir() if (m := _REVISION_FILE.match(p.name))]
    if not found:
        raise RuntimeError(f"no migration files in {VERSIONS_DIR}")
    return max(found)


def at_newest(engine: Engine) -> bool:
    """True when the database records the newest revision (False on any doubt: no table yet,
    another revision, several rows)."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(_SELECT_VERSION).all()
    except SQLAlchemyError:
        return False
    return [row[0] for row in rows] == [newest_revision()]
