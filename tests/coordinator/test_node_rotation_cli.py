"""`libra node rotate-signing-key` against a real coordinator process on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from coordinator.db import create_schema, make_engine
from coordinator.models import NodeKeyRow
from node.cli.main import app
from node.keys.files import load_signing_key
from tests.node.test_enroll_cli import _approve, _init, _invite
from tests.node.test_outbox_restart import Coordinator, _free_port

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[Coordinator, str]]:
    port = _free_port()
    db_url = f"sqlite:///{tmp_path / 'coordinator.db'}"
    config = tmp_path / "coordinator.toml"
    config.write_text(f'database_url = "{db_url}"\nport = {port}\ndata_dir = "{tmp_path}"\n')
    engine = make_engine(db_url)
    create_schema(engine)
    engine.dispose()
    proc = Coordinator(config, port, tmp_path / "coordinator.log")
    proc.start()
    yield proc, db_url
    proc.kill()


def test_rotate_signing_key_cli(
    coordinator: tuple[Coordinator, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    proc, db_url = coordinator
    config = _init(tmp_path, "bka-de-1", "DE", proc.url)
    enrolled = runner.invoke(
        app,
        ["federation", "enroll", "--invitation", _invite(db_url, "DE"), "--operator", "BKA",
         *config],
    )  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output
    key_file = tmp_path / "bka-de-1" / "node.key"
    old = load_signing_key(key_file)

    pending = runner.invoke(app, ["rotate-signing-key", *config])
    assert pending.exit_code == 1 and "node_not_active" in pending.output  # not approved yet
    assert load_signing_key(key_file).key_id == old.key_id
    _approve(db_url, "bka-de-1")

    done = runner.invoke(app, ["rotate-signing-key", "--overlap-hours", "2", *config])
    assert done.exit_code == 0, done.output
    new = load_signing_key(key_file)
    assert new.key_id != old.key_id and "rotated" in done.output
    retired = tmp_path / "bka-de-1" / f"node.key.previous-{old.key_id[:16]}"
    assert load_signing_key(retired).key_id == old.key_id
    assert not (tmp_path / "bka-de-1" / "node.key.next").exists()
    engine = make_engine(db_url)
    with Session(engine) as session:
        keys = {k.key_id: k for k in session.exec(select(NodeKeyRow))}
    engine.dispose()
    assert set(keys) == {old.key_id, new.key_id}
    assert keys[old.key_id].valid_until is not None and keys[new.key_id].valid_until is None


def test_rotate_without_coordinator_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    config = _init(tmp_path, "node-x1", "DE", f"http://127.0.0.1:{_free_port()}")
    key_file = tmp_path / "node-x1" / "node.key"
    before = load_signing_key(key_file).key_id
    result = runner.invoke(app, ["rotate-signing-key", *config])
    assert result.exit_code == 1 and "cannot reach the coordinator" in result.output
    assert load_signing_key(key_file).key_id == before
    assert (tmp_path / "node-x1" / "node.key.next").exists()  # reused by the next attempt
