"""The start-up shortcut past Alembic (node/schema_version.py) agrees with Alembic itself."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from node import migrate
from node.db import make_engine
from node.schema_version import VERSION_TABLE, at_newest, newest_revision


def test_newest_revision_is_alembics_head() -> None:
    assert newest_revision() == migrate.head_revision()
    assert VERSION_TABLE == migrate.VERSION_TABLE


def test_a_new_database_is_migrated_then_recognised(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}")
    assert migrate.current_revision(engine) == newest_revision()
    assert at_newest(engine)


def test_an_older_database_is_still_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.sqlite3'}"
    engine = make_engine(url)
    migrate.downgrade(engine, "n0004")
    assert not at_newest(engine)
    engine.dispose()
    again = make_engine(url)  # the shortcut must not skip a pending migration
    assert migrate.current_revision(again) == newest_revision()


def test_no_version_table_is_not_current(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert not at_newest(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE node_alembic_version (version_num TEXT)"))
        connection.execute(text("INSERT INTO node_alembic_version VALUES ('n0001')"))
    assert not at_newest(engine)
