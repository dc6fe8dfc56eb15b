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


# --------------------------------------------------------------------------- issue 12: no config

# Every command that opens the database (or the data directory), with the arguments it needs.
DATABASE_COMMANDS: list[list[str]] = [
    ["token", "create", "--name", "n", "--role", "viewer"],
    ["token", "list"],
    ["token", "revoke", "tok1"],
    ["node", "add", "--node-id", "node-a", "--country", "DE", "--public-key",
     fixed_key(1).public_key_b64],
    ["node", "list"],
    ["node", "revoke", "--node-id", "node-a"],
    ["node", "approve", "node-a"],
    ["invite", "create", "--country", "DE"],
    ["invite", "list"],
    ["audit", "verify"],
    ["audit", "show"],
    ["snapshot", "key"],
    ["db", "upgrade"],
    ["db", "current"],
    ["serve"],
]  # fmt: skip


@pytest.fixture
def bare_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no LIBRA_COORDINATOR_* variable at all."""
    import os

    for name in list(os.environ):
        if name.startswith("LIBRA_COORDINATOR_"):
            monkeypatch.delenv(name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.mark.parametrize("args", DATABASE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_without_config_every_database_command_refuses_and_creates_nothing(
    bare_cwd: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("serve started"))
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "no coordinator configuration found" in result.output
    assert "--config" in result.output and "coordinator init" in result.output
    assert _tree(bare_cwd) == []  # no var/coordinator/coordinator.db, no signing key


def test_config_naming_a_missing_database_refuses_and_creates_nothing(bare_cwd: Path) -> None:
    db = bare_cwd / "elsewhere" / "coordinator.db"
    config = bare_cwd / "coordinator.toml"
    config.write_text(f'database_url = "sqlite:///{db}"\n', encoding="utf-8")
    for args in (["token", "create", "--name", "n", "--role", "viewer"], ["db", "current"]):
        result = invoke(*args, "--config", str(config))
        assert result.exit_code == 2, result.output
        assert f"no coordinator database at {db}" in result.output
        assert "coordinator init" in result.output
    assert _tree(bare_cwd) == [config]
    # Found in the current folder without --config: same refusal.
    assert invoke("token", "list").exit_code == 2
    assert _tree(bare_cwd) == [config]


def test_empty_database_file_is_refused(bare_cwd: Path) -> None:
    db = bare_cwd / "empty.db"
    db.write_bytes(b"")
    config = bare_cwd / "coordinator.toml"
    config.write_text(f'database_url = "sqlite:///{db}"\n', encoding="utf-8")
    result = invoke("node", "list")
    assert result.exit_code == 2 and "holds no coordinator schema" in result.output


def test_init_creates_config_and_database_then_commands_find_them(
    bare_cwd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.auth import authenticate
    from coordinator.db import make_engine, new_session
    from protocol.models import utcnow

    made = invoke("init")
    assert made.exit_code == 0, made.output
    config = bare_cwd / "coordinator.toml"
    db = bare_cwd / "var" / "coordinator" / "coordinator.db"
    assert config.is_file() and db.is_file()
    assert "at revision" in made.output
    # The data directory is absolute: the same config works from any folder.
    assert f'data_dir = "{(bare_cwd / "var" / "coordinator").resolve()}"' in config.read_text()

    created = invoke("token", "create", "--name", "ops", "--role", "viewer")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    listed = invoke("token", "list", "--config", str(config))
    assert listed.exit_code == 0 and "ops" in listed.output
    assert _tree(other) == []
    engine = make_engine(f"sqlite:///{db}")
    try:
        with new_session(engine) as session:
            assert authenticate(session, token, utcnow()).role == "viewer"
    finally:
        engine.dispose()

    again = invoke("init", "--config", str(config))
    assert again.exit_code == 1 and "already exists" in again.output


def test_init_with_explicit_paths(bare_cwd: Path, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "c.toml"
    data = tmp_path / "data"
    made = invoke("init", "--config", str(config), "--data-dir", str(data))
    assert made.exit_code == 0, made.output
    assert (data / "coordinator.db").is_file() and config.is_file()
    assert _tree(bare_cwd) == []
    assert invoke("node", "list", "--config", str(config)).exit_code == 0


def test_environment_alone_is_a_configuration(
    bare_cwd: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Containers configure by environment only (Dockerfile, docker-compose.yml).
    monkeypatch.setenv("LIBRA_COORDINATOR_DATABASE_URL", backend.url)
    result = invoke("node", "list")
    assert result.exit_code == 0 and "no nodes registered" in result.output
    assert _tree(bare_cwd) == []


def test_unreachable_database_is_a_clear_error(bare_cwd: Path) -> None:
    from tests.node.fake_coordinator import free_port

    config = bare_cwd / "coordinator.toml"
    url = f"postgresql+psycopg://libra:hunter2@127.0.0.1:{free_port()}/libra"
    config.write_text(f'database_url = "{url}"\n', encoding="utf-8")
    result = invoke("token", "list")
    assert result.exit_code == 2, result.output
    assert "cannot open database" in result.output and "hunter2" not in result.output
