"""The candidate review API (served with the notices API): token auth, the queue, verdicts,
held matches; 401/404/409/422 as JSON errors, never 500; every call audited with the token."""

from __future__ import annotations

import random
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from node import audit
from node.config import DiscoverySettings
from node.discovery.flood import hold_floods
from node.discovery.models import CONFIRMED, PENDING, Candidate
from node.matching.matcher import MatchIndex
from node.notices.api import create_app, create_token, revoke_token
from tests.node.candidates_kit import (
    T0,
    add_candidate,
    add_cycle,
    add_entries,
    add_sightings,
    keyed_engine,
)
from tests.node.conftest import flip_bits, rand_hex


def _error(response: object, status: int, code: str) -> None:
    from httpx import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_auth_queue_and_verdicts(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(60)
    cycle = add_cycle(engine)
    a = add_candidate(engine, cycle, rng, score=90)
    b = add_candidate(engine, cycle, rng, score=50, country="NL")
    token = create_token(engine, "ana")
    old = create_token(engine, "old")
    revoke_token(engine, "old")
    client = TestClient(create_app(engine, clock=lambda: T0))
    auth = {"Authorization": f"Bearer {token}"}

    _error(client.get("/v1/candidates"), 401, "unauthorized")
    _error(
        client.get("/v1/candidates", headers={"Authorization": f"Bearer {old}"}),
        401,
        "unauthorized",
    )
    assert audit.entries(engine, "candidate.") == []

    listed = client.get("/v1/candidates", headers=auth)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["candidates"]] == [a.id, b.id]
    nl = client.get("/v1/candidates", params={"country": "NL", "min_score": 10}, headers=auth)
    assert [r["id"] for r in nl.json()["candidates"]] == [b.id]
    _error(
        client.get("/v1/candidates", params={"state": "maybe"}, headers=auth), 422, "invalid_filter"
    )
    _error(
        client.get("/v1/candidates", params={"limit": "x"}, headers=auth), 422, "invalid_request"
    )

    shown = client.get(f"/v1/candidates/{a.id}", headers=auth)
    assert shown.status_code == 200 and "hashes" not in shown.json()
    assert a.sha256 not in shown.text
    hashed = client.get(f"/v1/candidates/{a.id}", params={"hashes": "true"}, headers=auth)
    assert hashed.json()["hashes"]["sha256"] == a.sha256
    _error(client.get("/v1/candidates/999", headers=auth), 404, "not_found")
    _error(client.get(f"/v1/candidates/{2**64}", headers=auth), 422, "invalid_request")
    _error(client.get("/v1/candidates/0", headers=auth), 422, "invalid_request")
    consults = audit.entries(engine, "candidate.consult")
    assert {e.actor for e in consults} == {"api:ana"} and len(consults) == 4
    assert consults[0].details == {"hashes": True}

    _error(
        client.post(f"/v1/candidates/{a.id}/confirm", json={}, headers=auth), 422, "invalid_request"
    )
    _error(
        client.post(
            f"/v1/candidates/{a.id}/confirm", json={"category": "A1", "x": 1}, headers=auth
        ),
        422,
        "invalid_request",
    )
    confirmed = client.post(
        f"/v1/candidates/{a.id}/confirm", json={"category": "A1", "reason": "seen"}, headers=auth
    )
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["state"] == CONFIRMED and len(body["entry_ids"]) == 4
    assert a.sha256 not in confirmed.text  # the new entries' ids, never their values
    _error(
        client.post(f"/v1/candidates/{a.id}/reject", json={"reason": "no"}, headers=auth),
        409,
        "already_decided",
    )
    _error(
        client.post("/v1/candidates/999/confirm", json={"category": "A1"}, headers=auth),
        404,
        "not_found",
    )
    _error(
        client.post(f"/v1/candidates/{b.id}/reject", json={}, headers=auth), 422, "reason_required"
    )
    rejected = client.post(f"/v1/candidates/{b.id}/reject", json={"reason": "a dog"}, headers=auth)
    assert rejected.status_code == 200 and rejected.json()["negative_added"] == 4
    with Session(engine) as session:
        states = {c.id: c.state for c in session.exec(select(Candidate)).all()}
    assert states[a.id] == CONFIRMED and states[b.id] != PENDING
    decisions = audit.entries(engine, "candidate.")
    assert [(e.action, e.actor) for e in decisions[:2]] == [
        ("candidate.reject", "api:ana"),
        ("candidate.confirm", "api:ana"),
    ]


def test_reject_uses_the_serving_process_index(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(61)
    pdq = rand_hex(rng, 256)
    (entry,) = add_entries(engine, "pdq", [pdq])
    c = add_candidate(engine, add_cycle(engine), rng, pdq=flip_bits(pdq, [1, 2, 3]))
    app = create_app(engine)
    app.state.match_index = lambda: MatchIndex.from_db(engine)
    app.state.flag_after_rejections = 1
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {create_token(engine, 'ana')}"}
    body = client.post(f"/v1/candidates/{c.id}/reject", json={"reason": "x"}, headers=auth).json()
    assert body["matched_entries"] == {str(entry): 1} and body["flagged"] == [entry]


def test_held_release_and_discard(tmp_path: Path) -> None:
    engine, _ = keyed_engine(tmp_path)
    rng = random.Random(62)
    a, b = add_entries(engine, "pdq", [rand_hex(rng, 256), rand_hex(rng, 256)])
    cycle = add_cycle(engine)
    add_sightings(engine, cycle, a, 50, tag="a")
    add_sightings(engine, cycle, b, 50, tag="b")
    hold_floods(engine, cycle, DiscoverySettings())
    client = TestClient(create_app(engine))
    auth = {"Authorization": f"Bearer {create_token(engine, 'ana')}"}

    _error(client.get("/v1/held"), 401, "unauthorized")
    held = client.get("/v1/held", headers=auth)
    assert held.status_code == 200
    assert sorted(r["entry_id"] for r in held.json()["held"]) == [a, b]
    assert "s.test" not in held.text  # per entry counts, no URL
    _error(client.get("/v1/held", params={"state": "odd"}, headers=auth), 422, "invalid")

    released = client.post(f"/v1/held/{a}/release", json={}, headers=auth)
    assert released.status_code == 200 and released.json()["sightings"] == 50
    _error(client.post(f"/v1/held/{a}/release", json={}, headers=auth), 404, "not_found")
    _error(client.post(f"/v1/held/{b}/discard", json={}, headers=auth), 422, "reason_required")
    discarded = client.post(f"/v1/held/{b}/discard", json={"reason": "collision"}, headers=auth)
    assert discarded.status_code == 200 and discarded.json()["flagged"] == [b]
    _error(
        client.post("/v1/held/999/discard", json={"reason": "x"}, headers=auth), 404, "not_found"
    )
    actions = [(e.action, e.actor) for e in audit.entries(engine, "sighting.")]
    assert ("sighting.discard", "api:ana") in actions and ("sighting.release", "api:ana") in actions
    assert audit.entries(engine, "candidate.consult")[0].subject == "held"
