"""`libra node psi ...` against a real coordinator process on loopback (issue 15): two nodes
with their own lists (benign random hex values, a known overlap) learn the overlap's size and
nothing else; the coordinator's database never holds a list value; a node that has not
consented sends nothing; a third node cannot read the session; both nodes audit the run."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import LargeBinary, String, Text, inspect, select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from coordinator.db import create_schema, make_engine, new_session
from coordinator.membership import approve, create_invitation
from node import audit
from node.cli.main import app
from node.config import load_settings
from node.keys.files import load_signing_key
from node.service import open_engine
from protocol.models import utcnow
from tests.node.test_outbox_restart import Coordinator, _free_port

pytestmark = pytest.mark.e2e
runner = CliRunner()

A, B, C = "bka-de-1", "politie-nl-1", "ocrvp-fr-1"
SIZES = {A: 1000, B: 800}
COMMON = 300
SESSION_RE = re.compile(r"\b([0-9a-f]{32})\b")


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


def _cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _join(tmp_path: Path, db_url: str, url: str, name: str, country: str) -> list[str]:
    directory = tmp_path / name
    made = _cli(
        "init", "--dir", str(directory), "--node-id", name, "--country", country,
        "--coordinator-url", url,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    config = ["--config", str(directory / "node.toml")]
    engine = make_engine(db_url)
    with new_session(engine) as session:
        code = create_invitation(
            session, country=country, ttl=timedelta(hours=1), now=utcnow(), actor="test"
        ).code
    enrolled = _cli("federation", "enroll", "--invitation", code, "--operator", name, *config)
    assert enrolled.exit_code == 0, enrolled.output
    with new_session(engine) as session:
        approve(session, name, now=utcnow(), actor="test")
    engine.dispose()
    return config


def _import(tmp_path: Path, config: list[str], values: list[str], algorithm: str) -> None:
    path = tmp_path / f"list-{secrets.token_hex(4)}.txt"
    path.write_text("\n".join(values) + "\n", encoding="ascii")
    done = _cli("list", "import", str(path), "--algorithm", algorithm, *config)
    assert done.exit_code == 0, done.output
    path.unlink()  # the values now live only in the node's (encrypted) database


def _node_engine(config: list[str]) -> Engine:
    return open_engine(load_settings(Path(config[1])))


def _key_id(config: list[str]) -> str:
    return load_signing_key(load_settings(Path(config[1])).signing_key_path).key_id


def _token(tmp_path: Path, name: str) -> str:
    return (tmp_path / name / "coordinator.token").read_text().strip()


def _coordinator_texts(db_url: str) -> tuple[str, bytes]:
    """Every text and blob value of every coordinator table, joined."""
    engine = make_engine(db_url)
    texts: list[str] = []
    blobs: list[bytes] = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            columns = inspect(engine).get_columns(table)
            wanted = [
                c["name"] for c in columns if isinstance(c["type"], String | Text | LargeBinary)
            ]
            if not wanted:
                continue
            names = ", ".join(f'"{name}"' for name in wanted)
            for row in conn.execute(text(f'SELECT {names} FROM "{table}"')):
                for value in row:
                    if isinstance(value, str):
                        texts.append(value)
                    elif isinstance(value, bytes | memoryview):
                        blobs.append(bytes(value))
    engine.dispose()
    return "\n".join(texts).lower(), b"\n".join(blobs)


def _psi_messages(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT sender, step FROM psi_messages")).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def _run(config: list[str], session_id: str) -> Any:
    return _cli("psi", "run", session_id, *config)


def test_two_nodes_learn_the_overlap_and_nothing_leaks(
    coordinator: tuple[Coordinator, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    proc, db_url = coordinator
    a = _join(tmp_path, db_url, proc.url, A, "DE")
    b = _join(tmp_path, db_url, proc.url, B, "NL")
    _join(tmp_path, db_url, proc.url, C, "FR")

    common = [secrets.token_hex(32) for _ in range(COMMON)]
    only_a = [secrets.token_hex(32) for _ in range(SIZES[A] - COMMON)]
    only_b = [secrets.token_hex(32) for _ in range(SIZES[B] - COMMON)]
    _import(tmp_path, a, common + only_a, "sha256")
    _import(tmp_path, b, common + only_b, "sha256")
    # Another family is not compared: B's SHA-1 entries never enter a sha256 session.
    _import(tmp_path, b, [secrets.token_hex(20) for _ in range(50)], "sha1")

    offered = _cli("psi", "offer", "--peer", B, "--family", "sha256", *a)
    assert offered.exit_code == 0, offered.output
    match = SESSION_RE.search(offered.output)
    assert match is not None, offered.output
    session_id = match.group(1)

    # Before B consents: B refuses to run, A only waits; nothing is sent by either.
    refused = _run(b, session_id)
    assert refused.exit_code == 1 and "not accepted" in refused.output
    waiting = _run(a, session_id)
    assert waiting.exit_code == 0 and f"waiting for {B}'s consent" in waiting.output
    assert _psi_messages(db_url) == []

    # A third node cannot see or post to the session (it does not exist for it).
    with httpx.Client(
        base_url=proc.url, headers={"authorization": f"Bearer {_token(tmp_path, C)}"}
    ) as third:
        for path in (f"/v1/psi/sessions/{session_id}", f"/v1/psi/sessions/{session_id}/messages"):
            denied = third.get(path)
            assert denied.status_code == 404 and denied.json()["error"]["code"] == "not_found"
        assert third.get("/v1/psi/sessions").json() == {"sessions": []}
        posted = third.post(f"/v1/psi/sessions/{session_id}/messages", json={"payloadType": "x"})
        assert posted.status_code == 404

    listed = _cli("psi", "offers", *b)
    assert listed.exit_code == 0 and session_id in listed.output, listed.output
    accepted = _cli("psi", "accept", session_id, *b)
    assert accepted.exit_code == 0, accepted.output
    assert _cli("psi", "offers", *b).output.strip() == "no offer awaits this node's answer"

    first = _run(a, session_id)  # A: its request
    assert first.exit_code == 0 and "sent: request" in first.output, first.output
    second = _run(b, session_id)  # B: its request, and its answer to A's
    assert second.exit_code == 0 and "sent: request, setup, response" in second.output
    assert f"waiting for {A}'s setup and response" in second.output
    third_run = _run(a, session_id)  # A: its answer to B's request, and A's result
    assert third_run.exit_code == 0, third_run.output
    assert "sent: setup, response" in third_run.output
    result = f"intersection {COMMON}"
    assert f"{result}; this node's set {SIZES[A]}, peer's set {SIZES[B]}" in third_run.output
    assert f"{B} signed with key {_key_id(b)}" in third_run.output  # to compare out of band
    fourth = _run(b, session_id)
    assert f"{result}; this node's set {SIZES[B]}, peer's set {SIZES[A]}" in fourth.output
    assert f"{A} signed with key {_key_id(a)}" in fourth.output
    again = _run(a, session_id)  # idempotent: nothing sent again, same answer
    assert again.exit_code == 0 and "sent:" not in again.output and result in again.output
    assert sorted(_psi_messages(db_url)) == sorted(
        (node, step) for node in (A, B) for step in ("request", "setup", "response")
    )
    listing = _cli("psi", "list", *a)
    assert session_id in listing.output and "accepted" in listing.output

    # Audit on both nodes: offer / accept, each sending run, one result; no value anywhere.
    all_values = common + only_a + only_b
    for config, peer, own, action, sends in (
        (a, B, SIZES[A], "psi.offer", 2),  # its request; later its setup and response
        (b, A, SIZES[B], "psi.accept", 1),  # all three in one run
    ):
        engine = _node_engine(config)
        events = audit.entries(engine, "psi.")
        engine.dispose()
        actions = [e.action for e in reversed(events)]
        assert actions[0] == action and actions.count("psi.result") == 1
        assert actions.count("psi.send") == sends
        (done,) = [e for e in events if e.action == "psi.result"]
        assert done.subject == f"psi:{session_id}"
        assert done.details == {
            "peer": peer,
            "family": "sha256",
            "own_size": own,
            "peer_size": SIZES[A] + SIZES[B] - own,
            "cardinality": COMMON,
        }
        dumped = json.dumps([e.details for e in events])
        assert not any(value in dumped for value in all_values)

    # The coordinator's database holds no list value: not as hex, not as bytes, not base64.
    texts, blobs = _coordinator_texts(db_url)
    assert "psi_messages" in inspect(make_engine(db_url)).get_table_names()
    files = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("coordinator.db")
    )
    for value in all_values:
        raw = bytes.fromhex(value)
        assert value not in texts
        assert raw not in blobs and raw not in files and value.encode() not in files
        assert base64.b64encode(raw).decode() not in texts


def test_a_declined_offer_sends_nothing(
    coordinator: tuple[Coordinator, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIBRA_NODE_CONFIG", raising=False)
    proc, db_url = coordinator
    a = _join(tmp_path, db_url, proc.url, A, "DE")
    b = _join(tmp_path, db_url, proc.url, B, "NL")
    _import(tmp_path, a, [secrets.token_hex(16) for _ in range(20)], "md5")
    offered = _cli("psi", "offer", "--peer", B, "--family", "md5", *a)
    match = SESSION_RE.search(offered.output)
    assert offered.exit_code == 0 and match is not None, offered.output
    session_id = match.group(1)
    declined = _cli("psi", "decline", session_id, *b)
    assert declined.exit_code == 0 and "declined" in declined.output
    for config in (a, b):
        stopped = _run(config, session_id)
        assert stopped.exit_code == 1 and f"declined by {B}" in stopped.output
    assert _cli("psi", "accept", session_id, *b).exit_code == 1  # a decision stands
    assert _psi_messages(db_url) == []
    bad = _cli("psi", "offer", "--peer", B, "--family", "pdq", *a)
    assert bad.exit_code == 1 and "family must be one of" in bad.output
    engine = make_engine(db_url)
    with engine.connect() as conn:
        status = conn.execute(select(text("status")).select_from(text("psi_sessions"))).scalar()
    engine.dispose()
    assert status == "declined"
