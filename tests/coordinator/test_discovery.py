"""Issue 14: discovery counts stored at ingest and served per country, hoster and period
(GET /v1/picture/discovery), with the viewer tier's suppression."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.ingest import ingest
from coordinator.models import DiscoveryRow, ReportRow
from protocol.errors import MalformedPayload
from protocol.keys import NodeKey
from protocol.models import HosterDiscovery

from .conftest import NOW
from .helpers import (
    DAY_START,
    bearer,
    envelope_bytes,
    make_report,
    make_token,
    payload_dict,
    register,
    sign_payload,
)

DAY2 = DAY_START + timedelta(days=1)


def found(
    candidates: int,
    confirmed: int = 0,
    rejected: int = 0,
    *,
    country: str = "DE",
    asn: int = 64501,
    hoster: str = "Hoster A Ltd",
) -> HosterDiscovery:
    return HosterDiscovery(
        country=country,
        asn=asn,
        hoster=hoster,
        candidates=candidates,
        confirmed=confirmed,
        rejected=rejected,
    )


def _count(engine: Engine, table: type) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def test_ingest_stores_the_rows(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    report = make_report(key_a, created_at=NOW).model_copy(
        update={"discovery": [found(5, 1, 2), found(0, 1, hoster="Other", asn=64600)]}
    )
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
    with Session(engine) as session:
        rows = {r.hoster: r for r in session.exec(select(DiscoveryRow))}
    assert set(rows) == {"Hoster A Ltd", "Other"}
    stored = rows["Hoster A Ltd"]
    assert (stored.report_id, stored.candidates, stored.confirmed, stored.rejected) == (
        report.report_id,
        5,
        1,
        2,
    )


def test_a_bad_hoster_is_refused_and_nothing_is_stored(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    data = payload_dict(
        make_report(key_a, created_at=NOW).model_copy(update={"discovery": [found(1)]})
    )
    data["discovery"][0]["hoster"] = "bad \ud800"
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    with new_session(engine) as session, pytest.raises(MalformedPayload):
        ingest(session, sign_payload(payload, key_a), NOW)
    assert _count(engine, ReportRow) == 0
    assert _count(engine, DiscoveryRow) == 0


def test_the_protocol_vector_is_accepted_and_stored(engine: Engine) -> None:
    from datetime import datetime

    from coordinator.registry import add_node

    path = Path(__file__).parents[2] / "protocol" / "vectors" / "report-v1-discovery.json"
    vector = json.loads(path.read_text(encoding="utf-8"))
    payload = json.loads(vector["payload_utf8"])
    created = datetime.fromisoformat(payload["created_at"].replace("Z", "+00:00"))
    with new_session(engine) as session:
        add_node(
            session,
            node_id=payload["node_id"],
            country="DE",
            public_key_b64=vector["public_key_b64"],
            now=created - timedelta(days=1),
        )
    with new_session(engine) as session:
        body = json.dumps(vector["envelope"]).encode()
        assert ingest(session, body, created + timedelta(minutes=1)).status == "accepted"
    with Session(engine) as session:
        rows = sorted(
            (r.country, r.candidates, r.confirmed, r.rejected)
            for r in session.exec(select(DiscoveryRow))
        )
    assert rows == [
        (row["country"], row["candidates"], row["confirmed"], row["rejected"])
        for row in sorted(payload["discovery"], key=lambda r: r["country"])
    ]


# --- the endpoint -------------------------------------------------------------------------


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=2, picture_min_nodes=2)
    later = NOW + timedelta(days=1)
    with TestClient(create_app(settings, engine=engine, clock=lambda: later)) as test_client:
        plan = [
            # Hoster A: both nodes; Solo: node-a only; FR's hoster: both nodes, one candidate.
            (key_a, "node-a", DAY_START, [
                found(10, 2, 1), found(7, 3, hoster="Solo", asn=64600),
                found(1, country="FR", hoster="Hébergeur", asn=64700),
            ]),
            (key_b, "node-b", DAY_START, [
                found(4, 0, 2), found(0, country="FR", hoster="Hébergeur", asn=64700),
            ]),
            (key_a, "node-a", DAY2, [found(1, 5, 0)]),
        ]  # fmt: skip
        for seq, (key, node, start, rows) in enumerate(plan, start=1):
            report = make_report(
                key, node, sequence=seq, created_at=later, period_start=start
            ).model_copy(update={"discovery": rows})
            response = test_client.post(
                "/v1/reports",
                content=envelope_bytes(report, key),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
        yield test_client


def _by_hoster(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["hoster"]: row for row in body["rows"]}


def test_counts_add_up_per_hoster_country_and_period(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    body = client.get("/v1/picture/discovery", headers=admin).json()
    assert body["tier"] == "full"
    assert body["period"] == {"start": None, "end": None}
    assert body["totals"] == {"candidates": 23, "confirmed": 10, "rejected": 3, "nodes": 2}
    rows = _by_hoster(body)
    assert rows["Hoster A Ltd"] == {
        "country": "DE",
        "asn": 64501,
        "hoster": "Hoster A Ltd",
        "candidates": 15,
        "confirmed": 7,
        "rejected": 3,
        "nodes": 2,
    }
    assert rows["Hébergeur"]["candidates"] == 1 and rows["Hébergeur"]["nodes"] == 2
    assert [r["hoster"] for r in body["rows"]] == ["Hoster A Ltd", "Solo", "Hébergeur"]
    countries = {r["country"]: r for r in body["by_country"]}
    assert (countries["DE"]["candidates"], countries["DE"]["confirmed"]) == (22, 10)
    assert countries["FR"]["nodes"] == 2
    periods = [(p["period_start"][:10], p["candidates"], p["confirmed"]) for p in body["by_period"]]
    assert periods == [("2026-11-23", 22, 5), ("2026-11-24", 1, 5)]
    assert body["suppressed"] == {"by_country": 0, "by_hoster": 0, "by_period": 0}
    # Counts only: no hash, no URL, no node.
    assert "node-a" not in json.dumps(body)


def test_filters(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    day2 = client.get(
        "/v1/picture/discovery",
        params={
            "period_start": DAY2.isoformat(),
            "period_end": (DAY2 + timedelta(days=1)).isoformat(),
        },
        headers=admin,
    ).json()
    assert set(_by_hoster(day2)) == {"Hoster A Ltd"}
    assert day2["totals"]["confirmed"] == 5
    assert day2["period"]["start"].startswith("2026-11-24")
    fr = client.get("/v1/picture/discovery", params={"country": "fr"}, headers=admin).json()
    assert set(_by_hoster(fr)) == {"Hébergeur"}
    solo = client.get("/v1/picture/discovery", params={"asn": 64600}, headers=admin).json()
    assert set(_by_hoster(solo)) == {"Solo"}
    bad = client.get("/v1/picture/discovery", params={"country": "Germany"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_viewer_tier_withholds_small_groups(client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    body = client.get("/v1/picture/discovery", headers=viewer).json()
    assert body["tier"] == "viewer"
    # Solo: one node. Hébergeur: two nodes but one candidate (min_count 2). Both withheld.
    assert set(_by_hoster(body)) == {"Hoster A Ltd"}
    assert body["suppressed"]["by_hoster"] == 2
    # FR: two nodes, one candidate: withheld; DE shown.
    assert [r["country"] for r in body["by_country"]] == ["DE"]
    # Totals add up the rows shown only: narrowing to a withheld hoster reveals nothing.
    assert body["totals"] == {"candidates": 15, "confirmed": 7, "rejected": 3, "nodes": 2}
    solo = client.get("/v1/picture/discovery", params={"hoster": "Solo"}, headers=viewer).json()
    assert solo["rows"] == [] and solo["suppressed"]["by_hoster"] == 1
    assert solo["totals"] == {"candidates": 0, "confirmed": 0, "rejected": 0, "nodes": 0}


def test_roles_and_csv(client: TestClient, engine: Engine) -> None:
    node = bearer(make_token(engine, "node", NOW, node_id="node-a"))
    assert client.get("/v1/picture/discovery", headers=node).status_code == 403
    assert client.get("/v1/picture/discovery.csv", headers=node).status_code == 403
    assert client.get("/v1/picture/discovery").status_code == 401
    admin = bearer(make_token(engine, "admin", NOW))
    first = client.get("/v1/picture/discovery.csv", headers=admin)
    second = client.get("/v1/picture/discovery", params={"format": "csv"}, headers=admin)
    assert first.headers["content-type"].startswith("text/csv")
    assert first.text == second.text
    parsed = list(csv.DictReader(io.StringIO(first.text)))
    assert list(parsed[0]) == [
        "country", "asn", "hoster", "candidates", "confirmed", "rejected", "nodes",
    ]  # fmt: skip
    assert parsed[0]["hoster"] == "Hoster A Ltd" and parsed[0]["candidates"] == "15"


def test_the_endpoint_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/picture/discovery" in paths
