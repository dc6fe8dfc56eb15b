"""GET /v1/flows over reports ingested through the real app (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import ReportCell
from protocol.theta import item_identity, make_theta

from .conftest import NOW
from .helpers import (
    DAY_START,
    FEDERATION_KEY,
    bearer,
    envelope_bytes,
    make_report,
    make_token,
    register,
)

FIVE = timedelta(minutes=5)
CLOCK = DAY_START + timedelta(hours=1)  # after every 5-minute period below


def items_cell(
    items: range | list[int],
    *,
    country: str = "DE",
    asn: int = 64501,
    hoster: str = "Hoster A",
    family: HashFamily = HashFamily.PDQ,
    with_theta: bool = True,
) -> ReportCell:
    """A cell whose matches are the given list items (one URL each)."""
    ids = [item_identity("pdq", f"{n:064x}") for n in items]
    return ReportCell(
        country=country,
        asn=asn,
        hoster=hoster,
        hash_family=family,
        matches=len(ids),
        distinct=len(ids),
        items=len(ids) if with_theta else None,
        item_theta=make_theta(FEDERATION_KEY, ids) if with_theta else None,
    )


A = {"country": "DE", "asn": 64501, "hoster": "Hoster A"}
B = {"country": "NL", "asn": 64600, "hoster": "Hoster B"}
C = {"country": "NL", "asn": 64601, "hoster": "Hoster C"}


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5)
    app = create_app(settings, engine=engine, clock=lambda: CLOCK)
    # Three 5-minute periods, then one after a gap. Items 0..29 at A; in the second period A
    # removed 20..29 and 0..9 reappear at B (node-b), 10..12 at C; then B removes all.

    def b_cells(hoster: tuple[str, int], items: range | list[int]) -> ReportCell:
        return items_cell(items, country="NL", asn=hoster[1], hoster=hoster[0])

    reports: list[tuple[NodeKey, str, int, list[ReportCell]]] = [
        (key_a, "node-a", 0, [items_cell(range(0, 30))]),
        (key_b, "node-b", 0, [b_cells(("Hoster B", 64600), range(100, 110))]),
        (key_a, "node-a", 1, [items_cell(range(10, 20))]),
        (key_b, "node-b", 1, [
            b_cells(("Hoster B", 64600), [*range(0, 10), *range(100, 110)]),
            b_cells(("Hoster C", 64601), range(20, 23)),
            # An older node's cell: no item sketch, left out.
            items_cell(range(500, 504), country="FR", asn=64700, hoster="Old", with_theta=False),
        ]),
        (key_a, "node-a", 2, [items_cell(range(10, 20))]),
        (key_a, "node-a", 5, [items_cell(range(10, 20))]),
    ]  # fmt: skip
    sequences: dict[str, int] = {}
    with TestClient(app) as tc:
        for key, node, index, cells in reports:
            sequences[node] = sequences.get(node, 0) + 1
            report = make_report(
                key, node, sequence=sequences[node], created_at=CLOCK, cells=cells,
                period_start=DAY_START + index * FIVE,
            )  # fmt: skip
            report = report.model_copy(
                update={
                    "period": report.period.model_copy(update={"end": report.period.start + FIVE})
                }
            )
            response = tc.post(
                "/v1/reports",
                content=envelope_bytes(report, key),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
        yield tc


def exact(n: int) -> dict[str, Any]:
    return {"estimate": n, "lower": n, "upper": n, "exact": True}


def places(step: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["place"]["hoster"]: p for p in step["places"]}


def test_flows_between_hosters(client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    body = client.get("/v1/flows", headers=admin).json()
    assert body["by"] == "hoster" and body["tier"] == "full" and body["suppression"] is None
    starts = [p["start"] for p in body["periods"]]
    assert starts == [
        "2026-11-23T00:00:00Z", "2026-11-23T00:05:00Z", "2026-11-23T00:10:00Z",
        "2026-11-23T00:25:00Z",
    ]  # fmt: skip
    assert [(s["from"]["start"], s["to"]["start"]) for s in body["steps"]] == [
        ("2026-11-23T00:00:00Z", "2026-11-23T00:05:00Z"),
        ("2026-11-23T00:05:00Z", "2026-11-23T00:10:00Z"),
    ]
    assert body["skipped"] == [
        {
            "from": {"start": "2026-11-23T00:10:00Z", "end": "2026-11-23T00:15:00Z"},
            "to": {"start": "2026-11-23T00:25:00Z", "end": "2026-11-23T00:30:00Z"},
            "reason": "gap: the later period starts after the earlier one ends",
        }
    ]
    assert body["left_out"] == {"reports": 1, "cells": 1}
    first, second = body["steps"]
    rows = places(first)
    assert rows["Hoster A"] == {
        "place": A, "before": exact(30), "after": exact(10), "removed": exact(20), "new": exact(0),
    }  # fmt: skip
    assert rows["Hoster B"]["new"] == exact(10) and rows["Hoster C"]["new"] == exact(3)
    assert "Old" not in rows
    assert first["flows"] == [
        {"source": A, "target": B, "items": exact(10)},
        {"source": A, "target": C, "items": exact(3)},
    ]
    # Second step: B and C removed everything; nothing went anywhere that was seen.
    assert second["flows"] == []
    assert places(second)["Hoster B"]["removed"] == exact(20)

    by_country = client.get("/v1/flows", params={"by": "country"}, headers=admin).json()
    step = by_country["steps"][0]
    assert step["flows"] == [
        {"source": {"country": "DE"}, "target": {"country": "NL"}, "items": exact(13)}
    ]
    # A family with no cells: every period is still there, with nothing in it.
    md5 = client.get("/v1/flows", params={"hash_family": "md5"}, headers=admin).json()
    assert len(md5["periods"]) == 4 and all(s["places"] == [] for s in md5["steps"])
    # The window: only the first two periods.
    window = client.get(
        "/v1/flows",
        params={"period_start": "2026-11-23T00:00:00Z", "period_end": "2026-11-23T00:10:00Z"},
        headers=admin,
    ).json()
    assert len(window["steps"]) == 1 and window["left_out"]["reports"] == 1


def test_viewer_tier_and_errors(client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    body = client.get("/v1/flows", headers=viewer).json()
    assert body["tier"] == "viewer"
    first = body["steps"][0]
    # min_count 5: the 3-item flow to C and C's row (3 new items) are withheld.
    assert first["flows"] == [{"source": A, "target": B, "items": exact(10)}]
    assert "Hoster C" not in places(first)
    assert body["suppression"]["flows"] >= 1 and body["suppression"]["places"] >= 1
    assert client.get("/v1/flows").status_code == 401
    for params in (
        {"by": "asn"},
        {"hash_family": "crc32"},
        {"period_start": "2026-11-23T01:00:00Z", "period_end": "2026-11-23T00:00:00Z"},
    ):
        bad = client.get("/v1/flows", params=params, headers=viewer)
        assert bad.status_code == 422, params
        assert bad.json()["error"]["code"] == "invalid_request"
