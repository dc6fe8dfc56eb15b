"""`libra node federation ...` against a real coordinator process on loopback: two agencies
join with invitations, one seals the federation key for the other."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.db import create_schema, make_engine, new_session
from coordinator.membership import approve, create_invitation
from node.cli.main import app
from node.keys.files import load_federation_key
from protocol.models import utcnow
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


def _invite(db_url: str, country: str) -> str:
    engine = make_engine(db_url)
    with new_session(engine) as session:
        code = create_invitation(
            session, country=country, ttl=timedelta(hours=1), now=utcnow(), actor="test"
        ).code
    engine.dispose()
    return code


def _approve(db_url: str, node_id: str) -> None:
    engine = make_engine(db_url)
    with new_session(engine) as session:
        approve(session, node_id, now=utcnow(), actor="test")
    engine.dispose()


def _init(tmp_path: Path, name: str, country: str, url: str) -> list[str]:
    directory = tmp_path / name
    made = runner.invoke(
        app,
        ["init", "--dir", str(directory), "--node-id", name, "--country", country,
         "--coordinator-url", url],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return ["--config", str(directory / "node.toml")]


def test_two_agencies_join_and_share_the_key(
    coordinator: tuple[Coordinator, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    proc, db_url = coordinator
    first = _init(tmp_path, "bka-de-1", "DE", proc.url)
    second = _init(tmp_path, "politie-nl-1", "NL", proc.url)

    ok = runner.invoke(
        app,
        [
            "federation",
            "enroll",
            "--invitation",
            _invite(db_url, "DE"),
            "--operator",
            "BKA",
            *first,
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "pending" in ok.output
    token_file = tmp_path / "bka-de-1" / "coordinator.token"
    assert oct(os.stat(token_file).st_mode & 0o777) == "0o600"
    reused = runner.invoke(
        app,
        ["federation", "enroll", "--invitation", _invite(db_url, "DE"), "--operator", "X", *second],
    )
    assert reused.exit_code == 1 and "invalid_invitation" in reused.output  # NL node, DE invite
    joined = runner.invoke(
        app,
        [
            "federation",
            "enroll",
            "--invitation",
            _invite(db_url, "NL"),
            "--operator",
            "NP",
            *second,
        ],
    )
    assert joined.exit_code == 0, joined.output
    _approve(db_url, "bka-de-1")

    # The first node sponsors; the second fetches (its init-made key differs: --replace).
    sponsored = runner.invoke(app, ["federation", "sponsor", *first])
    assert sponsored.exit_code == 0 and "politie-nl-1" in sponsored.output, sponsored.output
    refused = runner.invoke(app, ["federation", "fetch-key", *second])
    assert refused.exit_code == 1 and "--replace" in refused.output
    fetched = runner.invoke(app, ["federation", "fetch-key", "--replace", *second])
    assert fetched.exit_code == 0, fetched.output
    key_one = load_federation_key(tmp_path / "bka-de-1" / "federation.key")
    assert load_federation_key(tmp_path / "politie-nl-1" / "federation.key") == key_one
    again = runner.invoke(app, ["federation", "fetch-key", *second])
    assert again.exit_code == 0 and "already in" in again.output
    # The coordinator's database holds the sealed blob, never the key.
    files = [p for p in tmp_path.iterdir() if p.name.startswith("coordinator.db")]  # + WAL
    for encoded in (key_one, base64.b64encode(key_one), key_one.hex().encode()):
        assert not any(encoded in p.read_bytes() for p in files)


def test_enroll_without_coordinator_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    config = _init(tmp_path, "node-x1", "DE", f"http://127.0.0.1:{_free_port()}")
    result = runner.invoke(
        app, ["federation", "enroll", "--invitation", "inv_x", "--operator", "X", *config]
    )
    assert result.exit_code == 1 and "cannot reach the coordinator" in result.output
    missing = runner.invoke(app, ["federation", "sponsor", *config])
    assert missing.exit_code == 1 and "enroll first" in missing.output
