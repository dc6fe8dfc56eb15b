"""Verified ingest: each defect is refused with its own error code and leaves nothing stored."""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

import coordinator.ingest as ingest_module
from coordinator.db import new_session
from coordinator.ingest import IngestPolicy, ingest
from coordinator.models import CellRow, DenominatorRow, NodeRow, ReportRow
from coordinator.registry import revoke_key, revoke_node
from protocol import REPORT_PAYLOAD_TYPE
from protocol.canonical import canonical_json
from protocol.dsse import parse_envelope, verify
from protocol.errors import ProtocolError
from protocol.keys import NodeKey, decode_public_key
from protocol.models import ReportAck

from .conftest import NOW
from .helpers import (
    cell,
    envelope_bytes,
    fixed_key,
    make_report,
    payload_dict,
    register,
    sign_payload,
    stored_counts,
)


@pytest.fixture
def registered(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    return engine


def run(engine: Engine, body: bytes, now: datetime = NOW) -> ReportAck:
    with new_session(engine) as session:
        return ingest(session, body, now)


def assert_rejected(engine: Engine, body: bytes, code: str, now: datetime = NOW) -> ProtocolError:
    before = stored_counts(engine)
    with pytest.raises(ProtocolError) as info:
        run(engine, body, now)
    assert info.value.code == code, info.value.message
    assert stored_counts(engine) == before
    return info.value


def test_accepts_and_stores_everything(registered: Engine, key_a: NodeKey) -> None:
    report = make_report(
        key_a,
        created_at=NOW,
        cells=[cell(), cell(country="NL", asn=64502, hoster="Hoster B", matches=7, distinct=5)],
    )
    body = envelope_bytes(report, key_a)
    ack = run(registered, body)
    assert ack == ReportAck(report_id=report.report_id, status="accepted")
    assert stored_counts(registered) == (1, 2, 1)
    with Session(registered) as session:
        row = session.get(ReportRow, report.report_id)
        assert row is not None
        assert (row.node_id, row.key_id, row.sequence) == ("node-a", key_a.key_id, 1)
        assert row.period_start == report.period.start and row.period_end == report.period.end
        assert row.created_at == NOW and row.received_at == NOW
        # The stored envelope still verifies and yields the exact signed payload.
        kid, payload = verify(
            parse_envelope(row.envelope), REPORT_PAYLOAD_TYPE, lambda _k: key_a.verify_key
        )
        assert kid == key_a.key_id and payload == report.to_payload()
        cells = session.exec(select(CellRow).order_by(CellRow.country)).all()
        assert [(c.country, c.asn, c.hoster, c.matches, c.distinct) for c in cells] == [
            ("DE", 64501, "Hoster A Ltd", 3, 2),
            ("NL", 64502, "Hoster B", 7, 5),
        ]
        denominators = session.get(DenominatorRow, report.report_id)
        assert denominators is not None and denominators.images_hashed == 40
        node = session.get(NodeRow, "node-a")
        assert node is not None and node.last_sequence == 1


def test_tampered_payload_is_bad_signature(registered: Engine, key_a: NodeKey) -> None:
    envelope = json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    payload = base64.b64decode(envelope["payload"]).replace(b'"matches":3', b'"matches":9')
    envelope["payload"] = base64.b64encode(payload).decode()
    assert_rejected(registered, json.dumps(envelope).encode(), "bad_signature")


def test_tampered_signature_is_bad_signature(registered: Engine, key_a: NodeKey) -> None:
    envelope = json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    assert_rejected(registered, json.dumps(envelope).encode(), "bad_signature")


def test_unregistered_key_is_unknown_key(registered: Engine) -> None:
    stranger = fixed_key(9)
    body = envelope_bytes(make_report(stranger, created_at=NOW), stranger)
    assert_rejected(registered, body, "unknown_key")


def test_key_of_another_node_is_key_mismatch(registered: Engine, key_b: NodeKey) -> None:
    # node-b's valid key signs a report that claims to come from node-a.
    body = envelope_bytes(make_report(key_b, node_id="node-a", created_at=NOW), key_b)
    assert_rejected(registered, body, "key_mismatch")


def test_payload_key_id_differs_from_signer_is_key_mismatch(
    registered: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    report = make_report(key_a, created_at=NOW, key_id=key_b.key_id)
    assert_rejected(registered, envelope_bytes(report, key_a), "key_mismatch")


def test_unknown_node(registered: Engine, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, node_id="ghost-node", created_at=NOW), key_a)
    assert_rejected(registered, body, "unknown_node")


def test_revoked_key(registered: Engine, key_a: NodeKey) -> None:
    with new_session(registered) as session:
        revoke_key(session, key_a.key_id, now=NOW - timedelta(hours=1))
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    assert_rejected(registered, body, "revoked_key")


def test_revoked_node(registered: Engine, key_a: NodeKey) -> None:
    with new_session(registered) as session:
        assert revoke_node(session, "node-a", now=NOW - timedelta(hours=1)) == [key_a.key_id]
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    assert_rejected(registered, body, "revoked_key")


def test_key_revoked_later_is_still_valid_now(registered: Engine, key_a: NodeKey) -> None:
    with new_session(registered) as session:
        revoke_key(session, key_a.key_id, now=NOW + timedelta(days=1))
    ack = run(registered, envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    assert ack.status == "accepted"


def test_rotated_key_works_alongside_old(registered: Engine, key_a: NodeKey) -> None:
    new_key = fixed_key(3)
    register(registered, "node-a", "DE", new_key, NOW)
    assert run(registered, envelope_bytes(make_report(key_a, created_at=NOW), key_a)).status == (
        "accepted"
    )
    report = make_report(new_key, sequence=2, created_at=NOW)
    assert run(registered, envelope_bytes(report, new_key)).status == "accepted"


def test_exact_resend_is_duplicate_and_stored_once(registered: Engine, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    first = run(registered, body)
    second = run(registered, body)
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert first.report_id == second.report_id
    assert stored_counts(registered) == (1, 1, 1)


def test_resend_with_other_whitespace_is_duplicate(registered: Engine, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    run(registered, body)
    spaced = json.dumps(json.loads(body), indent=4).encode()
    assert run(registered, spaced).status == "duplicate"
    assert stored_counts(registered) == (1, 1, 1)


def test_replayed_report_id_with_other_bytes(registered: Engine, key_a: NodeKey) -> None:
    first = make_report(key_a, created_at=NOW)
    run(registered, envelope_bytes(first, key_a))
    # Same report id, different content (and a higher sequence, so only the replay rule fires).
    again = make_report(key_a, created_at=NOW, sequence=2, report_id=first.report_id)
    assert_rejected(registered, envelope_bytes(again, key_a), "replayed_report")


def test_report_id_of_another_node_is_replayed(
    registered: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    first = make_report(key_a, created_at=NOW)
    run(registered, envelope_bytes(first, key_a))
    copy = make_report(key_b, node_id="node-b", created_at=NOW, report_id=first.report_id)
    assert_rejected(registered, envelope_bytes(copy, key_b), "replayed_report")


@pytest.mark.parametrize("sequence", [5, 4, 1])
def test_sequence_must_increase(registered: Engine, key_a: NodeKey, sequence: int) -> None:
    run(registered, envelope_bytes(make_report(key_a, sequence=5, created_at=NOW), key_a))
    later = make_report(key_a, sequence=sequence, created_at=NOW)
    assert_rejected(registered, envelope_bytes(later, key_a), "sequence_regression")
    # Gaps are fine: the node may have lost a queued report.
    nxt = make_report(key_a, sequence=9, created_at=NOW)
    assert run(registered, envelope_bytes(nxt, key_a)).status == "accepted"


def test_sequences_are_per_node(registered: Engine, key_a: NodeKey, key_b: NodeKey) -> None:
    run(registered, envelope_bytes(make_report(key_a, sequence=5, created_at=NOW), key_a))
    report_b = make_report(key_b, node_id="node-b", sequence=1, created_at=NOW)
    assert run(registered, envelope_bytes(report_b, key_b)).status == "accepted"


@pytest.mark.parametrize(
    "offset",
    [-timedelta(days=7, seconds=1), -timedelta(days=30), timedelta(minutes=5, seconds=1)],
    ids=["just-stale", "old", "future"],
)
def test_timestamp_window(registered: Engine, key_a: NodeKey, offset: timedelta) -> None:
    # The period ends at created_at, so only the freshness window is wrong.
    created = NOW + offset
    report = make_report(key_a, created_at=created, period_start=created - timedelta(days=1))
    assert_rejected(registered, envelope_bytes(report, key_a), "stale_timestamp")


@pytest.mark.parametrize(
    "offset", [-timedelta(days=7), timedelta(minutes=5)], ids=["oldest", "skewed"]
)
def test_timestamp_window_edges_accepted(
    registered: Engine, key_a: NodeKey, offset: timedelta
) -> None:
    created = NOW + offset
    report = make_report(key_a, created_at=created, period_start=created - timedelta(days=1))
    assert run(registered, envelope_bytes(report, key_a)).status == "accepted"


def test_policy_window_is_configurable(registered: Engine, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, created_at=NOW - timedelta(hours=2)), key_a)
    with new_session(registered) as session, pytest.raises(ProtocolError) as info:
        ingest(session, body, NOW, policy=IngestPolicy(max_report_age=timedelta(hours=1)))
    assert info.value.code == "stale_timestamp"


def test_wrong_payload_type(registered: Engine, key_a: NodeKey) -> None:
    report = make_report(key_a, created_at=NOW)
    body = envelope_bytes(report, key_a, payload_type="application/vnd.in-toto+json")
    assert_rejected(registered, body, "unknown_payload_type")


def test_unsupported_protocol_version(registered: Engine, key_a: NodeKey) -> None:
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["protocol_version"] = 2
    assert_rejected(registered, sign_payload(canonical_json(data), key_a), "unsupported_version")


def test_signed_garbage_payload_is_malformed_payload(registered: Engine, key_a: NodeKey) -> None:
    assert_rejected(registered, sign_payload(b"not json at all", key_a), "malformed_payload")
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["sequence"] = 0
    assert_rejected(registered, sign_payload(canonical_json(data), key_a), "malformed_payload")


def test_undecodable_sketch_is_malformed_payload(registered: Engine, key_a: NodeKey) -> None:
    for bogus in (base64.b64encode(b"garbage, not a sketch").decode(), "not base64 !"):
        report = make_report(key_a, created_at=NOW, cells=[cell(sketch=bogus)])
        assert_rejected(registered, envelope_bytes(report, key_a), "malformed_payload")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b'{"payloadType": "x"}',
        json.dumps(
            {
                "payloadType": REPORT_PAYLOAD_TYPE,
                "payload": "!!!",
                "signatures": [{"keyid": "k", "sig": "s"}],
            }
        ).encode(),
        b"\xff\xfe\x00garbage",
    ],
    ids=["empty", "text", "list", "missing", "bad-base64", "binary"],
)
def test_malformed_envelope(registered: Engine, body: bytes) -> None:
    assert_rejected(registered, body, "malformed_envelope")


def test_two_signatures_is_malformed(registered: Engine, key_a: NodeKey) -> None:
    envelope = json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    envelope["signatures"].append(envelope["signatures"][0])
    assert_rejected(registered, json.dumps(envelope).encode(), "malformed_envelope")


def test_failure_while_storing_leaves_nothing(
    registered: Engine, key_a: NodeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ingest_module._store

    def store_then_fail(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest_module, "_store", store_then_fail)
    report = make_report(key_a, sequence=1, created_at=NOW, cells=[cell(), cell(country="NL")])
    body = envelope_bytes(report, key_a)
    with pytest.raises(RuntimeError):
        run(registered, body)
    assert stored_counts(registered) == (0, 0, 0)
    with Session(registered) as session:
        node = session.get(NodeRow, "node-a")
        assert node is not None and node.last_sequence is None
    monkeypatch.setattr(ingest_module, "_store", original)
    assert run(registered, body).status == "accepted"
    assert stored_counts(registered) == (1, 2, 1)


def test_concurrent_identical_resends_store_once(registered: Engine, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    results = _race(registered, [body] * 6)
    assert sorted(results) == ["accepted"] + ["duplicate"] * 5
    assert stored_counts(registered) == (1, 1, 1)


def test_concurrent_same_sequence_accepts_one(registered: Engine, key_a: NodeKey) -> None:
    bodies = [
        envelope_bytes(make_report(key_a, sequence=3, created_at=NOW), key_a) for _ in range(6)
    ]
    results = _race(registered, bodies)
    assert sorted(results) == ["accepted"] + ["sequence_regression"] * 5
    assert stored_counts(registered) == (1, 1, 1)


def _race(engine: Engine, bodies: list[bytes]) -> list[str]:
    barrier = threading.Barrier(len(bodies))
    results: list[str] = []
    lock = threading.Lock()

    def worker(body: bytes) -> None:
        barrier.wait()
        outcome: str
        try:
            outcome = run(engine, body).status
        except ProtocolError as exc:
            outcome = exc.code
        except Exception as exc:  # surfaced in the assertion below
            outcome = f"unexpected {type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # no deadline of our own: pytest-timeout bounds a hang
    return results


def test_public_key_roundtrip_in_registry(registered: Engine, key_a: NodeKey) -> None:
    from coordinator.models import NodeKeyRow

    with Session(registered) as session:
        row = session.get(NodeKeyRow, key_a.key_id)
        assert row is not None
        assert bytes(decode_public_key(row.public_key)) == bytes(key_a.verify_key)


def test_counts_beyond_safe_integers_are_malformed(registered: Engine, key_a: NodeKey) -> None:
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["cells"][0]["matches"] = 2**63
    assert_rejected(registered, sign_payload(json.dumps(data).encode(), key_a), "malformed_payload")
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["denominators"]["pages_fetched"] = 2**53
    assert_rejected(registered, sign_payload(json.dumps(data).encode(), key_a), "malformed_payload")


@pytest.mark.parametrize("hoster", ["nul\x00byte", "lone \ud800 surrogate", "tab\there"])
def test_unstorable_hoster_text_is_malformed(
    registered: Engine, key_a: NodeKey, hoster: str
) -> None:
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["cells"][0]["hoster"] = hoster
    assert_rejected(registered, sign_payload(json.dumps(data).encode(), key_a), "malformed_payload")


@pytest.mark.parametrize("keyid", ["\x00", "A" * 64, "g" * 64, "ab"])
def test_implausible_key_ids_are_malformed(registered: Engine, key_a: NodeKey, keyid: str) -> None:
    # Issue 12: a keyid that is not 64 lowercase hex is an envelope defect, not an unknown key.
    envelope = json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    envelope["signatures"][0]["keyid"] = keyid
    assert_rejected(registered, json.dumps(envelope).encode(), "malformed_envelope")


def test_non_ascii_hoster_is_fine(registered: Engine, key_a: NodeKey) -> None:
    report = make_report(key_a, created_at=NOW, cells=[cell(hoster="Hébergeur Ünïcode 株式会社")])
    assert run(registered, envelope_bytes(report, key_a)).status == "accepted"
    with Session(registered) as session:
        assert session.exec(select(CellRow.hoster)).one() == "Hébergeur Ünïcode 株式会社"


@pytest.mark.parametrize("field", ["payload", "sig"])
def test_non_ascii_base64_is_malformed_envelope(
    registered: Engine, key_a: NodeKey, field: str
) -> None:
    envelope = json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    if field == "payload":
        envelope["payload"] = "\x80" + envelope["payload"]
    else:
        envelope["signatures"][0]["sig"] = "é" + envelope["signatures"][0]["sig"]
    assert_rejected(registered, json.dumps(envelope).encode(), "malformed_envelope")
