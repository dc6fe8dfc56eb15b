"""deploy/register_nodes.py, the compose `coordinator-register` job: registers the nodes of
deploy/node-*.toml with their public keys, is safe on every `docker compose up`, and refuses
what the registry refuses, with a clear line and a non-zero status."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

from coordinator.db import create_schema, make_engine, new_session
from coordinator.registry import list_nodes, revoke_node
from protocol.keys import NodeKey
from tests.services import require_postgres

REPO = Path(__file__).resolve().parents[2]
NODE_A = REPO / "deploy" / "node-a.toml"
NODE_B = REPO / "deploy" / "node-b.toml"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location(
        "register_nodes", REPO / "deploy" / "register_nodes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


register_nodes = _load()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A migrated coordinator database (PostgreSQL as in docker-compose.yml, and SQLite),
    found through the environment as in the container."""
    monkeypatch.delenv("LIBRA_COORDINATOR_CONFIG", raising=False)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'coordinator.db'}"
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
        monkeypatch.setenv("LIBRA_COORDINATOR_DATABASE_URL", url)
        yield url
        return
    base_url = require_postgres()  # skips, or fails under CI=true, when it is absent
    schema = f"libra_deploy_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    options = f"-csearch_path={schema}"
    url = f"{base_url}{'&' if '?' in base_url else '?'}options={quote(options)}"
    try:
        engine = make_engine(url)
        create_schema(engine)
        engine.dispose()
        monkeypatch.setenv("LIBRA_COORDINATOR_DATABASE_URL", url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def public_key_file(directory: Path, name: str) -> tuple[Path, NodeKey]:
    key = NodeKey.generate()
    path = directory / name
    path.write_text(key.public_key_b64 + "\n")
    return path, key


def nodes(url: str) -> dict[str, tuple[str, list[str]]]:
    engine = make_engine(url)
    try:
        with new_session(engine) as session:
            return {v.node_id: (v.country, [k.key_id for k in v.keys]) for v in list_nodes(session)}
    finally:
        engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    status = register_nodes.main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_registers_each_node_from_its_settings_and_again_changes_nothing(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file, a_key = public_key_file(tmp_path, "a.pub")
    b_file, b_key = public_key_file(tmp_path, "b.pub")
    arguments = (f"{NODE_A}={a_file}", f"{NODE_B}={b_file}")
    status, out, err = run(capsys, *arguments)
    assert (status, err) == (0, "")
    assert "node-a: registered node" in out and "node-b: registered node" in out
    expected = {"node-a": ("DE", [a_key.key_id]), "node-b": ("NL", [b_key.key_id])}
    assert nodes(database) == expected
    status, out, err = run(capsys, *arguments)  # the next `docker compose up`
    assert (status, err) == (0, "")
    assert out.count("already registered") == 2
    assert nodes(database) == expected


def test_a_new_key_for_a_known_node_is_added_as_a_rotation(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_file, old = public_key_file(tmp_path, "old.pub")
    assert run(capsys, f"{NODE_A}={old_file}")[0] == 0
    new_file, new = public_key_file(tmp_path, "new.pub")
    status, out, _ = run(capsys, f"{NODE_A}={new_file}")
    assert status == 0 and "node-a: added key to node" in out
    assert nodes(database)["node-a"] == ("DE", [old.key_id, new.key_id])


def test_a_key_registered_to_another_node_is_refused(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file, _ = public_key_file(tmp_path, "a.pub")
    assert run(capsys, f"{NODE_A}={a_file}")[0] == 0
    status, _, err = run(capsys, f"{NODE_B}={a_file}")
    assert status == 1 and "refused" in err and "node-a" in err
    assert "node-b" not in nodes(database)


def test_a_revoked_node_is_refused_not_re_registered(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file, _ = public_key_file(tmp_path, "a.pub")
    assert run(capsys, f"{NODE_A}={a_file}")[0] == 0
    engine = make_engine(database)
    with new_session(engine) as session:
        revoke_node(session, "node-a", now=datetime.now(UTC))
    engine.dispose()
    status, _, err = run(capsys, f"{NODE_A}={a_file}")
    assert status == 1 and "node-a is revoked" in err


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("node-a.toml", "expected NODE_TOML=PUBLIC_KEY_FILE"),
        (f"{NODE_A}=/nonexistent.pub", "No such file"),
        (f"/nonexistent.toml={NODE_A}", "No such file"),
        (f"{NODE_A}=BAD", "public key"),
        (f"{NODE_A}=EMPTY", "is empty"),
    ],
)
def test_bad_arguments_stop_before_anything_is_written(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argument: str,
    message: str,
) -> None:
    (tmp_path / "bad.pub").write_text("not base64 at all!\n")
    (tmp_path / "empty.pub").write_text("\n")
    argument = argument.replace("=BAD", f"={tmp_path / 'bad.pub'}")
    argument = argument.replace("=EMPTY", f"={tmp_path / 'empty.pub'}")
    good, _ = public_key_file(tmp_path, "b.pub")
    status, _, err = run(capsys, f"{NODE_B}={good}", argument)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    if "public key" not in message:  # files are read before the database is touched
        assert nodes(database) == {}


def test_without_a_database_setting_it_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in ("LIBRA_COORDINATOR_CONFIG", "LIBRA_COORDINATOR_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("LIBRA_COORDINATOR_DATA_DIR", raising=False)
    a_file, _ = public_key_file(tmp_path, "a.pub")
    status, _, err = run(capsys, f"{NODE_A}={a_file}")
    assert status == 2 and "no coordinator configuration found" in err


def test_a_country_that_differs_from_the_registry_is_refused(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file, _ = public_key_file(tmp_path, "a.pub")
    assert run(capsys, f"{NODE_A}={a_file}")[0] == 0
    moved = tmp_path / "node-a.toml"
    moved.write_text(NODE_A.read_text().replace('country = "DE"', 'country = "FR"'))
    new_file, _ = public_key_file(tmp_path, "new.pub")
    status, _, err = run(capsys, f"{moved}={new_file}")
    assert status == 1 and "country DE, not FR" in err
    assert nodes(database)["node-a"][0] == "DE"
