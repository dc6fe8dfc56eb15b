"""Alembic: the schema comes from migrations, matches the models, and goes down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from coordinator.cli import app
from coordinator.migrate import current_revision, downgrade, head_revision, upgrade
from coordinator.models import CoordinatorModel

from .conftest import Backend

TABLES = {
    "nodes", "node_keys", "reports", "cells", "denominators", "api_tokens", "invitations",
    "audit_log", "sealed_keys", "removals", "attribution_sources", "coverage", "discovery",
}  # fmt: skip


def test_migrated_schema_matches_models(backend: Backend) -> None:
    assert current_revision(backend.engine) == head_revision(backend.engine)
    assert set(inspect(backend.engine).get_table_names()) >= TABLES
    with backend.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), CoordinatorModel.metadata)
    assert diff == []


def test_downgrade_to_empty_and_back(backend: Backend) -> None:
    downgrade(backend.engine, "base")
    assert not TABLES & set(inspect(backend.engine).get_table_names())
    assert current_revision(backend.engine) is None
    upgrade(backend.engine)
    assert set(inspect(backend.engine).get_table_names()) >= TABLES
    upgrade(backend.engine)  # idempotent
    assert current_revision(backend.engine) == head_revision(backend.engine)


def test_cli_db_upgrade_from_empty(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    config = tmp_path / "c.toml"
    config.write_text(f'database_url = "sqlite:///{db}"\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "at revision" in result.output
    current = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert current.exit_code == 0
    head = current.output.split("head:")[1].strip()
    assert current.output.split("current:")[1].split()[0] == head
