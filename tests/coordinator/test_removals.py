"""Removal statistics and attribution sources: stored at ingest, served per hoster."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from datasketches import kll_floats_sketch
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.ingest import ingest, ingest_batch
from coordinator.models import AttributionSourceRow, RemovalRow, ReportRow
from coordinator.registry import add_node
from protocol.errors import MalformedPayload
from protocol.keys import NodeKey
from protocol.models import AttributionSource, ReportAck

from .conftest import NOW
from .helpers import (
    DAY_START,
    bearer,
    envelope_bytes,
    kll_b64,
    make_report,
    make_token,
    payload_dict,
    register,
    removal,
    sign_payload,
)

VECTOR = Path(__file__).parents[2] / "protocol" / "vectors" / "report-v1-removals.json"
GEO = AttributionSource(name="GeoLite2-Country", version="2026-11-20T00:00:00Z")
ASN_DB = AttributionSource(name="GeoLite2-ASN", version="2026-11-20T00:00:00Z")


def _count(engine: Engine, table: type) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def test_ingest_stores_removals_and_sources(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    report = make_report(
        key_a,
        created_at=NOW,
        removals=[removal([3600, 90_000]), removal([], hoster="Quiet", asn=64502)],
        attribution_sources=[GEO, ASN_DB],
    )
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
    with Session(engine) as session:
        rows = {r.hoster: r for r in session.exec(select(RemovalRow))}
        sources = [(s.name, s.version) for s in session.exec(select(AttributionSourceRow))]
    assert set(rows) == {"Hoster A Ltd", "Quiet"}
    busy = rows["Hoster A Ltd"]
    assert (busy.removed, busy.removed_within_24h, busy.removed_within_72h) == (2, 1, 2)
    assert busy.removal_sketch == report.removals[0].removal_sketch
    assert rows["Quiet"].median_seconds is None and rows["Quiet"].removal_sketch is None
    assert sorted(sources) == sorted([(GEO.name, GEO.version), (ASN_DB.name, ASN_DB.version)])


def test_batch_ingest_stores_removals(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    bodies = [
        envelope_bytes(
            make_report(
                key, node, created_at=NOW, removals=[removal([60.0])], attribution_sources=[GEO]
            ),
            key,
        )
        for key, node in ((key_a, "node-a"), (key_b, "node-b"))
    ]
    with new_session(engine) as session:
        outcomes = ingest_batch(session, bodies, NOW)
    assert all(isinstance(o, ReportAck) and o.status == "accepted" for o in outcomes)
    assert _count(engine, RemovalRow) == 2
    assert _count(engine, AttributionSourceRow) == 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.update(removal_sketch="bm90IGEgc2tldGNo"), "not a base64"),
        (lambda r: r.update(removal_sketch=kll_b64([1.0, 2.0])), "holds 2 times"),
        (lambda r: r.update(removal_sketch=kll_b64([-5.0])), "negative"),
        (lambda r: r.update(hoster="bad \ud800"), None),
    ],
)
def test_bad_removals_are_refused_and_nothing_is_stored(
    engine: Engine, key_a: NodeKey, mutate: object, message: str | None
) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    report = make_report(key_a, created_at=NOW, removals=[removal([30.0])])
    data = payload_dict(report)
    mutate(data["removals"][0])  # type: ignore[operator]
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    with new_session(engine) as session, pytest.raises(MalformedPayload) as caught:
        ingest(session, sign_payload(payload, key_a), NOW)
    if message is not None:
        assert message in caught.value.message
    assert _count(engine, ReportRow) == 0
    assert _count(engine, RemovalRow) == 0


def test_protocol_vector_with_removals_is_accepted(engine: Engine) -> None:
    vector = json.loads(VECTOR.read_text(encoding="utf-8"))
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
    body = json.dumps(vector["envelope"]).encode()
    with new_session(engine) as session:
        assert ingest(session, body, created + timedelta(minutes=1)).status == "accepted"
    with Session(engine) as session:
        row = session.exec(select(RemovalRow)).one()
    sketch = kll_floats_sketch.deserialize(base64.b64decode(row.removal_sketch or ""))
    assert sketch.n == row.removed == len(vector["removal_seconds"])
    assert (sketch.get_quantile(0.5), sketch.get_quantile(0.9)) == (86400.0, 200000.0)
    assert _count(engine, AttributionSourceRow) == 2


# --- the endpoint -------------------------------------------------------------------------


DAY2 = DAY_START + timedelta(days=1)


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=2, picture_min_nodes=2)
    # Issue 12: the DAY2 report's period must end before it is created, so it runs a day later.
    later = NOW + timedelta(days=1)
    with TestClient(create_app(settings, engine=engine, clock=lambda: later)) as test_client:
        plan = [
            # node-a, day 1: Big (with sketch), Solo (only node-a ever), Mixed (no sketch)
            (key_a, "node-a", DAY_START, [
                removal([600, 7200, 100_000]),
                removal([50, 70], hoster="Solo", asn=64600).model_copy(
                    update={"median_seconds": 60}  # the node's exact median of 50 and 70
                ),
                removal([1000], hoster="Mixed", asn=64700, with_sketch=False),
            ], [GEO]),
            (key_b, "node-b", DAY_START, [
                removal([30, 300_000], notices_sent=5),
                removal([2000], hoster="Mixed", asn=64700),
                removal([], country="FR", hoster="Slow", asn=64800, notices_sent=9),
            ], [GEO, ASN_DB]),
            (key_a, "node-a", DAY2, [
                removal([40_000]),
                removal([], country="FR", hoster="Slow", asn=64800, notices_sent=3),
            ], [ASN_DB]),
        ]  # fmt: skip
        for seq, (key, node, start, rows, sources) in enumerate(plan, start=1):
            report = make_report(
                key,
                node,
                sequence=seq,
                created_at=later,
                period_start=start,
                removals=rows,
                attribution_sources=sources,
            )
            response = test_client.post(
                "/v1/reports",
                content=envelope_bytes(report, key),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
        yield test_client


def _by_hoster(body: dict[str, object]) -> dict[str, dict[str, object]]:
    rows = body["rows"]
    assert isinstance(rows, list)
    return {row["hoster"]: row for row in rows}


def test_counts_add_up_and_quantiles_merge(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    body = client.get("/v1/picture/removals", headers=admin).json()
    assert body["tier"] == "full" and body["suppressed"] == 0
    assert body["period"] == {"start": None, "end": None}
    rows = _by_hoster(body)
    big = rows["Hoster A Ltd"]
    times = [600, 7200, 100_000, 30, 300_000, 40_000]
    assert big["removed"] == 6 and big["nodes"] == 2
    assert big["notices_sent"] == 4 + 5 + 2 and big["urls_noticed"] == 6
    assert big["removed_within_24h"] == 4 and big["removed_within_72h"] == 5
    assert big["share_removed_24h"] == pytest.approx(4 / 6)
    assert big["share_removed_72h"] == pytest.approx(5 / 6)
    # Small n: the merged KLL sketch is exact, so it equals one sketch of all times.
    everything = kll_floats_sketch(200)
    for value in times:
        everything.update(value)
    assert big["median_seconds"] == round(everything.get_quantile(0.5))
    assert big["p90_seconds"] == round(everything.get_quantile(0.9))
    # One contributing row: that node's exact figures.
    assert (rows["Solo"]["median_seconds"], rows["Solo"]["p90_seconds"]) == (60, 70)
    # Two rows, one without a sketch: no merged figure, counts still add up.
    mixed = rows["Mixed"]
    assert mixed["removed"] == 2 and mixed["median_seconds"] is None
    # Nothing removed: no shares, no times.
    slow = rows["Slow"]
    assert slow["notices_sent"] == 12 and slow["removed"] == 0
    assert slow["share_removed_24h"] is None and slow["median_seconds"] is None
    assert slow["nodes"] == 2


def test_filters(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    day2 = client.get(
        "/v1/picture/removals",
        params={
            "period_start": DAY2.isoformat(),
            "period_end": (DAY2 + timedelta(days=1)).isoformat(),
        },
        headers=admin,
    ).json()
    assert set(_by_hoster(day2)) == {"Hoster A Ltd", "Slow"}
    assert _by_hoster(day2)["Hoster A Ltd"]["median_seconds"] == 40_000
    assert day2["period"]["start"].startswith("2026-11-24")
    fr = client.get("/v1/picture/removals", params={"country": "fr"}, headers=admin).json()
    assert set(_by_hoster(fr)) == {"Slow"}
    one = client.get("/v1/picture/removals", params={"hoster": "Mixed"}, headers=admin).json()
    assert set(_by_hoster(one)) == {"Mixed"}
    asn = client.get("/v1/picture/removals", params={"asn": 64600}, headers=admin).json()
    assert set(_by_hoster(asn)) == {"Solo"}
    bad = client.get("/v1/picture/removals", params={"country": "Germany"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    backwards = client.get(
        "/v1/picture/removals",
        params={"period_start": DAY2.isoformat(), "period_end": DAY_START.isoformat()},
        headers=admin,
    )
    assert backwards.status_code == 422


def test_viewer_tier_suppresses_small_cells(client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    body = client.get("/v1/picture/removals", headers=viewer).json()
    assert body["tier"] == "viewer"
    # Solo: one node, withheld. Mixed: two nodes and 4 notices (min_count 2): shown.
    assert set(_by_hoster(body)) == {"Hoster A Ltd", "Mixed", "Slow"}
    assert body["suppressed"] == 1
    assert "node_id" not in json.dumps(body)


def test_roles(client: TestClient, engine: Engine) -> None:
    node = bearer(make_token(engine, "node", NOW, node_id="node-a"))
    auditor = bearer(make_token(engine, "auditor", NOW))
    for headers in (node, auditor):
        assert client.get("/v1/picture/removals", headers=headers).status_code == 403
        assert client.get("/v1/picture/removals.csv", headers=headers).status_code == 403
    assert client.get("/v1/picture/removals").status_code == 401


def test_csv_twins(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    as_json = client.get("/v1/picture/removals", headers=admin).json()
    first = client.get("/v1/picture/removals.csv", headers=admin)
    second = client.get("/v1/picture/removals", params={"format": "csv"}, headers=admin)
    assert first.headers["content-type"].startswith("text/csv")
    assert first.text == second.text
    parsed = list(csv.DictReader(io.StringIO(first.text)))
    assert [r["hoster"] for r in parsed] == [r["hoster"] for r in as_json["rows"]]
    assert list(parsed[0]) == [
        "country", "asn", "hoster", "notices_sent", "urls_noticed", "removed",
        "removed_within_24h", "removed_within_72h", "share_removed_24h", "share_removed_72h",
        "median_seconds", "p90_seconds", "nodes",
    ]  # fmt: skip
    slow = next(r for r in parsed if r["hoster"] == "Slow")
    assert slow["median_seconds"] == "" and slow["share_removed_24h"] == ""


def test_registry_shows_latest_sources_to_admins_only(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    viewer = bearer(make_token(engine, "viewer", NOW))
    nodes = {n["node_id"]: n for n in client.get("/v1/nodes", headers=admin).json()["nodes"]}
    # node-a's latest report (sequence 3) named only the ASN database.
    assert nodes["node-a"]["attribution_sources"] == [ASN_DB.model_dump()]
    assert nodes["node-b"]["attribution_sources"] == [GEO.model_dump(), ASN_DB.model_dump()]
    seen = client.get("/v1/nodes", headers=viewer).json()["nodes"]
    assert all(n["attribution_sources"] is None for n in seen)


def test_report_without_removals_keeps_old_bytes(engine: Engine, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    report = make_report(key_a, created_at=NOW)
    assert b"removals" not in report.to_payload()
    with new_session(engine) as session:
        assert ingest(session, envelope_bytes(report, key_a), NOW).status == "accepted"
    assert _count(engine, RemovalRow) == 0
