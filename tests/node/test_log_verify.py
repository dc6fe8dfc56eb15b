"""`libra node log verify` against in-process coordinators (FastAPI app, real HTTP stack via
httpx transports): honest logs verify and get cosigned; a coordinator that drops a report, or
shows two nodes different histories (a forked log signed with the same key), is caught.

The fork is two coordinator databases behind one signing key: what a dishonest operator would
run to show different parties different pictures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema
from coordinator.db import make_engine as coordinator_engine
from node.db import make_engine as node_engine
from node.federation import outbox
from node.federation.tlog_witness import (
    LogVerifyError,
    compare_with_peer,
    last_checkpoint,
    verify_log,
)
from node.models import OutboxItem, SentReport
from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import sign
from protocol.keys import NodeKey
from protocol.tlog_note import parse_note
from tests.coordinator.conftest import NOW
from tests.coordinator.helpers import fixed_key, make_report, register

URL = "http://testserver"


@dataclass
class Coordinator:
    engine: Engine
    client: TestClient

    def deliver(self, node: Engine) -> list[str]:
        """Flush the node's outbox to this coordinator through the real outbox code."""
        transport = httpx.ASGITransport(app=self.client.app)
        result = asyncio.run(outbox.flush(node, URL, transport=transport))
        assert result.all_delivered, result
        return result.delivered


@pytest.fixture
def keys() -> dict[str, NodeKey]:
    return {"node-a": fixed_key(1), "node-b": fixed_key(2)}


def _coordinator(tmp_path: Path, name: str, keys: dict[str, NodeKey]) -> Coordinator:
    engine = coordinator_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    create_schema(engine)
    for node_id, key in keys.items():
        register(engine, node_id, "DE", key, NOW)
    # The same signing key file: both "views" carry valid signatures of one log.
    settings = CoordinatorSettings(signing_key_file=tmp_path / "coordinator.key")
    client = TestClient(create_app(settings, engine=engine, clock=lambda: NOW))
    return Coordinator(engine, client)


@pytest.fixture
def honest(tmp_path: Path, keys: dict[str, NodeKey]) -> Iterator[Coordinator]:
    coordinator = _coordinator(tmp_path, "honest", keys)
    with coordinator.client:
        yield coordinator


@pytest.fixture
def forked(tmp_path: Path, keys: dict[str, NodeKey]) -> Iterator[Coordinator]:
    coordinator = _coordinator(tmp_path, "forked", keys)
    with coordinator.client:
        yield coordinator


def _node(tmp_path: Path, node_id: str) -> Engine:
    return node_engine(f"sqlite:///{tmp_path / f'{node_id}.sqlite3'}")


def _queue(node: Engine, key: NodeKey, node_id: str, sequence: int) -> None:
    report = make_report(key, node_id, sequence=sequence, created_at=NOW)
    envelope = sign(report.to_payload(), REPORT_PAYLOAD_TYPE, key)
    with Session(node) as session:
        session.add(
            OutboxItem(
                report_id=report.report_id,
                sequence=sequence,
                period_start=report.period.start,
                period_end=report.period.end,
                envelope=envelope.model_dump_json(by_alias=True),
            )
        )
        session.commit()


def _verify(node: Engine, coordinator: Coordinator, key: NodeKey, node_id: str) -> int:
    return verify_log(node, URL, key, node_id, NOW, client=coordinator.client).size


def test_honest_log_verifies_grows_and_is_cosigned(
    tmp_path: Path, honest: Coordinator, keys: dict[str, NodeKey]
) -> None:
    node = _node(tmp_path, "node-a")
    for seq in (1, 2):
        _queue(node, keys["node-a"], "node-a", seq)
    assert len(honest.deliver(node)) == 2
    with Session(node) as session:
        assert len(session.exec(select(SentReport)).all()) == 2
    assert _verify(node, honest, keys["node-a"], "node-a") == 2
    _queue(node, keys["node-a"], "node-a", 3)
    honest.deliver(node)
    result = verify_log(node, URL, keys["node-a"], "node-a", NOW, client=honest.client)
    assert (result.previous_size, result.size, result.newly_proven) == (2, 3, 1)
    served = parse_note(honest.client.get("/v1/log/checkpoint").text)
    assert [s.name for s in served.signatures][-1] == "libra.node/node-a"


def test_a_dropped_report_is_reported_missing(
    tmp_path: Path, honest: Coordinator, keys: dict[str, NodeKey]
) -> None:
    node = _node(tmp_path, "node-a")
    _queue(node, keys["node-a"], "node-a", 1)
    honest.deliver(node)
    with Session(node) as session:  # acknowledged, but never logged by this coordinator
        session.add(SentReport(report_id="r-dropped", node_id="node-a", payload_sha256="0" * 64))
        session.commit()
    with pytest.raises(LogVerifyError, match="report r-dropped missing from the log"):
        _verify(node, honest, keys["node-a"], "node-a")


def test_a_non_extending_checkpoint_is_a_split_view(
    tmp_path: Path, honest: Coordinator, forked: Coordinator, keys: dict[str, NodeKey]
) -> None:
    a, b = _node(tmp_path, "node-a"), _node(tmp_path, "node-b")
    _queue(a, keys["node-a"], "node-a", 1)
    honest.deliver(a)
    assert _verify(a, honest, keys["node-a"], "node-a") == 1
    # The fork holds node-b's report first, then the same report of node-a: a different history
    # in which node-a's report is still included, signed with the same key.
    _queue(b, keys["node-b"], "node-b", 1)
    forked.deliver(b)
    # Re-send node-a's report to the fork (the coordinator replays it there).
    _queue(a, keys["node-a"], "node-a", 2)
    forked.deliver(a)
    with pytest.raises(LogVerifyError, match="split view"):
        _verify(a, forked, keys["node-a"], "node-a")


def test_two_witnesses_comparing_checkpoints_detect_a_fork(
    tmp_path: Path, honest: Coordinator, forked: Coordinator, keys: dict[str, NodeKey]
) -> None:
    a, b = _node(tmp_path, "node-a"), _node(tmp_path, "node-b")
    _queue(a, keys["node-a"], "node-a", 1)
    _queue(b, keys["node-b"], "node-b", 1)
    honest.deliver(a)
    forked.deliver(b)
    # Each view is self-consistent: each node alone is satisfied and cosigns.
    assert _verify(a, honest, keys["node-a"], "node-a") == 1
    assert _verify(b, forked, keys["node-b"], "node-b") == 1
    b_note = last_checkpoint(b)
    assert b_note is not None
    with pytest.raises(LogVerifyError, match="split view: the coordinator signed two different"):
        compare_with_peer(a, URL, b_note, client=honest.client)
    # Different sizes: the coordinator must prove the smaller prefixes the larger, and cannot.
    _queue(b, keys["node-b"], "node-b", 2)
    forked.deliver(b)
    assert _verify(b, forked, keys["node-b"], "node-b") == 2
    b_note = last_checkpoint(b)
    assert b_note is not None
    with pytest.raises(LogVerifyError, match="split view"):
        compare_with_peer(a, URL, b_note, client=honest.client)


def test_two_witnesses_of_an_honest_log_agree(
    tmp_path: Path, honest: Coordinator, keys: dict[str, NodeKey]
) -> None:
    a, b = _node(tmp_path, "node-a"), _node(tmp_path, "node-b")
    _queue(a, keys["node-a"], "node-a", 1)
    honest.deliver(a)
    assert _verify(a, honest, keys["node-a"], "node-a") == 1
    _queue(b, keys["node-b"], "node-b", 1)
    honest.deliver(b)
    assert _verify(b, honest, keys["node-b"], "node-b") == 2
    b_note = last_checkpoint(b)
    assert b_note is not None
    assert compare_with_peer(a, URL, b_note, client=honest.client) == 2


def test_a_checkpoint_signed_by_another_key_is_refused(
    tmp_path: Path, honest: Coordinator, keys: dict[str, NodeKey]
) -> None:
    node = _node(tmp_path, "node-a")
    assert _verify(node, honest, keys["node-a"], "node-a") == 0  # pins the key
    (tmp_path / "other").mkdir()
    other = _coordinator(tmp_path / "other", "other", keys)  # its own, different signing key
    with (
        other.client,
        pytest.raises(LogVerifyError, match=r"checkpoint is for log libra\.coordinator/"),
    ):
        _verify(node, other, keys["node-a"], "node-a")
