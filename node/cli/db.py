"""`libra node db ...`: the node database's schema revision (Alembic).

Every node command already brings its database to the newest revision when it opens it; these
commands let an operator do that step on its own (before a release goes live, after a
restore) and see where a database stands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from node.cli.common import ConfigOption, console, settings_or_exit

db_app = typer.Typer(help="The node database's schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every pending migration (safe to repeat)."""
    from sqlalchemy import create_engine

    from node.db import make_engine
    from node.migrate import current_revision

    settings = settings_or_exit(config)
    url = settings.effective_database_url
    probe = create_engine(url) if _exists(url) else None
    before = current_revision(probe) if probe is not None else None
    if probe is not None:
        probe.dispose()
    engine = make_engine(url)  # creates the file if needed and migrates to head
    try:
        console.print(f"from {before or 'empty'} to revision {current_revision(engine)} (head)")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Show the database's revision and the newest this release knows."""
    from sqlalchemy import create_engine

    from node.migrate import current_revision, head_revision

    settings = settings_or_exit(config)
    url = settings.effective_database_url
    current = None
    if _exists(url):
        engine = create_engine(url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    console.print(f"current: {current or 'empty'}  head: {head_revision()}")


def _exists(url: str) -> bool:
    """False for a SQLite file not made yet (looking must not create it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return True
    return Path(parsed.database).exists()
