"""`libra coordinator ...` commands against a real database (both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

import coordinator.cli as cli_module
from coordinator.cli import app
from coordinator.models import NodeKeyRow, NodeRow

from .conftest import Backend
from .helpers import fixed_key

runner = CliRunner()


@pytest.fixture
def config(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LIBRA_COORDINATOR_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "coordinator.toml"
    path.write_text(f'database_url = "{backend.url}"\n', encoding="utf-8")
    return path


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def add(config: Path, node_id: str, key_n: int, country: str = "DE") -> Any:
    return invoke(
        "node", "add", "--node-id", node_id, "--country", country,
        "--public-key", fixed_key(key_n).public_key_b64, "--operator", "Agency X",
        "--config", str(config),
    )  # fmt: skip


def test_add_rotate_list_revoke(config: Path, backend: Backend) -> None:
    first = add(config, "node-a", 1)
    assert first.exit_code == 0, first.output
    assert "registered node node-a" in first.output and fixed_key(1).key_id in first.output

    rotated = add(config, "node-a", 2)
    assert rotated.exit_code == 0, rotated.output
    assert "added a key to node node-a" in rotated.output

    duplicate = add(config, "node-b", 1)
    assert duplicate.exit_code == 1
    assert "already registered to node node-a" in duplicate.output

    listing = invoke("node", "list", "--config", str(config))
    assert listing.exit_code == 0, listing.output
    assert "node-a" in listing.output and "Agency X" in listing.output
    assert fixed_key(1).key_id[:16] in listing.output and fixed_key(2).key_id[:16] in listing.output

    revoked = invoke("node", "revoke", "--key-id", fixed_key(1).key_id, "--config", str(config))
    assert revoked.exit_code == 0, revoked.output
    with Session(backend.engine) as session:
        old = session.get(NodeKeyRow, fixed_key(1).key_id)
        new = session.get(NodeKeyRow, fixed_key(2).key_id)
        assert old is not None and old.revoked_at is not None
        assert new is not None and new.revoked_at is None

    gone = invoke("node", "revoke", "--node-id", "node-a", "--config", str(config))
    assert gone.exit_code == 0, gone.output
    assert "1 active key" in gone.output
    with Session(backend.engine) as session:
        node = session.get(NodeRow, "node-a")
        new = session.get(NodeKeyRow, fixed_key(2).key_id)
        assert node is not None and node.status == "revoked"
        assert new is not None and new.revoked_at is not None

    # A revoked node takes no new keys.
    again = add(config, "node-a", 3)
    assert again.exit_code == 1 and "revoked" in again.output


def test_add_refuses_bad_input(config: Path) -> None:
    assert add(config, "node-a", 1, country="DE").exit_code == 0
    wrong_country = add(config, "node-a", 2, country="FR")
    assert wrong_country.exit_code == 1 and "registered with country DE" in wrong_country.output
    bad_id = add(config, "Node_A", 3)
    assert bad_id.exit_code == 1 and "node id" in bad_id.output
    bad_key = invoke(
        "node", "add", "--node-id", "node-c", "--country", "NL",
        "--public-key", "dGVzdA==", "--config", str(config),
    )  # fmt: skip
    assert bad_key.exit_code == 1 and "32 bytes" in bad_key.output


def test_public_key_from_file(config: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "node.pub"
    key_file.write_text(fixed_key(4).public_key_b64 + "\n", encoding="utf-8")
    result = invoke(
        "node", "add", "--node-id", "node-f", "--country", "nl",
        "--public-key", f"@{key_file}", "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fixed_key(4).key_id in result.output


def test_revoke_needs_exactly_one_target(config: Path) -> None:
    neither = invoke("node", "revoke", "--config", str(config))
    assert neither.exit_code == 2
    unknown = invoke("node", "revoke", "--node-id", "nobody", "--config", str(config))
    assert unknown.exit_code == 1 and "no node" in unknown.output
    unknown_key = invoke("node", "revoke", "--key-id", "ab" * 32, "--config", str(config))
    assert unknown_key.exit_code == 1 and "no key" in unknown_key.output


def test_list_empty(config: Path) -> None:
    result = invoke("node", "list", "--config", str(config))
    assert result.exit_code == 0 and "no nodes registered" in result.output


def test_serve_uses_config_and_overrides(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run(api: Any, **kwargs: Any) -> None:
        calls.append({"api": api, **kwargs})

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = invoke("serve", "--config", str(config), "--port", "8799")
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8799
    assert calls[0]["api"].title == "LIBRA coordinator"


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("node", "list", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_every_command_has_help() -> None:
    for args in (["--help"], ["serve", "--help"], ["node", "--help"], ["node", "add", "--help"],
                 ["node", "list", "--help"], ["node", "revoke", "--help"]):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_redacts_database_password() -> None:
    assert "hunter2" not in cli_module._redact("postgresql+psycopg://u:hunter2@127.0.0.1/db")
