"""Node database migrations: the schema comes from Alembic, matches the models, adopts
databases made before migrations existed, and goes down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from node.db import make_engine
from node.migrate import (
    BASELINE,
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from tests.services import require_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
        yield engine
        engine.dispose()
        return
    url = require_postgres()
    schema = f"libra_node_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_migrated_schema_matches_the_models(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    diff = [d for d in _schema_diff(empty_engine) if VERSION_TABLE not in repr(d)]
    assert diff == []


def test_downgrade_to_empty_and_back(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) <= {VERSION_TABLE}
    upgrade(empty_engine)
    upgrade(empty_engine)  # idempotent
    assert current_revision(empty_engine) == head_revision()


def test_audit_log_stays_append_only_after_migration(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_event (at, actor, action, subject, reason, details) "
                "VALUES ('2026-11-24 12:00:00', 'a', 'test', '', '', '{}')"
            )
        )
    with pytest.raises(Exception, match="append-only"), empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))


def test_database_made_before_migrations_is_adopted(empty_engine: Engine) -> None:
    # The baseline schema without a version row is what create_all made before migrations.
    upgrade(empty_engine, BASELINE)
    with empty_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(
            text("INSERT INTO list_version (source, version, format, imported_at, imported, "
                 "duplicates, rejected, family_counts, removed) "
                 "VALUES ('old', '1', 'plain', '2026-01-01 00:00:00', 1, 0, 0, '{}', 0)")
        )  # fmt: skip
    assert current_revision(empty_engine) is None
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT source FROM list_version")).scalar_one() == "old"


def test_make_engine_brings_a_database_to_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_cli_db_current_and_upgrade(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from node.cli.main import app

    config = tmp_path / "node.toml"
    config.write_text(
        f'node_id = "node-t"\ncountry = "DE"\ndata_dir = "{tmp_path / "data"}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert before.exit_code == 0, before.output
    assert "current: empty" in before.output
    assert not (tmp_path / "data").exists()  # looking created nothing
    done = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert f"to revision {head_revision()}" in done.output
    after = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert f"current: {head_revision()}" in after.output
