"""Viewer tier (suppression, no per-node detail), waterbed shifts, CSV, signed snapshots."""

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
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from coordinator.app import create_app
from coordinator.cli import app as cli
from coordinator.config import CoordinatorSettings
from protocol.keys import NodeKey
from protocol.models import Report

from .conftest import NOW
from .helpers import DAY_START, bearer, cell, envelope_bytes, make_report, make_token, register

DAY2 = DAY_START + timedelta(days=1)
# The DAY2 reports are created (and the coordinator runs) a day after NOW: a period must have
# begun when its report is signed (protocol.md §3).
LATER = NOW + timedelta(days=1)


@pytest.fixture
def app_client(
    engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey
) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5, picture_min_nodes=2)
    with TestClient(create_app(settings, engine=engine, clock=lambda: LATER)) as client:
        day1_a = [
            cell(hoster="Big", matches=10),
            cell(hoster="Tiny", asn=64999, matches=1, distinct=1),
        ]
        day1_b = [
            cell(hoster="Big", matches=4),
            cell(country="FR", hoster="Solo", asn=64777, matches=9),
        ]
        day2_a = [cell(hoster="Big", matches=2), cell(hoster="New", asn=64555, matches=7)]
        day2_b = [
            cell(hoster="Big", matches=3),
            cell(hoster="New", asn=64555, matches=1, distinct=1),
        ]
        for seq, (key, node, cells, start) in enumerate(
            [
                (key_a, "node-a", day1_a, DAY_START),
                (key_b, "node-b", day1_b, DAY_START),
                (key_a, "node-a", day2_a, DAY2),
                (key_b, "node-b", day2_b, DAY2),
            ],
            start=1,
        ):
            body = envelope_bytes(
                make_report(
                    key, node, sequence=seq, created_at=LATER, period_start=start, cells=cells
                ),
                key,
            )
            json_type = {"content-type": "application/json"}
            assert client.post("/v1/reports", content=body, headers=json_type).status_code == 200
        yield client


def test_viewer_tier_suppresses_small_cells(app_client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    admin = bearer(make_token(engine, "admin", NOW))
    full = app_client.get("/v1/picture", headers=admin).json()
    seen = app_client.get("/v1/picture", headers=viewer).json()
    assert full["tier"] == "full" and seen["tier"] == "viewer"
    full_hosters = {r["hoster"] for r in full["by_hoster"]}
    assert full_hosters == {"Big", "Tiny", "Solo", "New"}
    # Big: 19 matches from 2 nodes; New: 8 from 2; Tiny: 1 match; Solo: one node only.
    assert {r["hoster"] for r in seen["by_hoster"]} == {"Big", "New"}
    assert seen["suppression"]["by_hoster"] == 2
    assert {r["country"] for r in seen["by_country"]} == {"DE"}  # FR: one node
    assert seen["totals"] == full["totals"]
    # Which node reported what: admins only (policy off).
    assert (
        app_client.get("/v1/picture", params={"include_nodes": True}, headers=viewer).status_code
        == 403
    )
    nodes = app_client.get("/v1/picture", params={"include_nodes": True}, headers=admin).json()
    assert {(r["node_id"], r["matches"]) for r in nodes["by_node"]} == {
        ("node-a", 20),
        ("node-b", 17),
    }
    assert seen["by_node"] is None
    assert all(
        n["reports"] is None for n in app_client.get("/v1/nodes", headers=viewer).json()["nodes"]
    )


def test_policy_may_show_nodes_to_viewers(engine: Engine, tmp_path: Path, key_a: NodeKey) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, viewer_node_detail=True)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        viewer = bearer(make_token(engine, "viewer", NOW))
        got = client.get("/v1/picture", params={"include_nodes": True}, headers=viewer)
        assert got.status_code == 200 and got.json()["by_node"] == []
        assert client.get("/v1/nodes", headers=viewer).json()["nodes"][0]["reports"] == 0


def test_waterbed_shifts(app_client: TestClient, engine: Engine) -> None:
    params = {
        "before_start": DAY_START.isoformat(), "before_end": DAY2.isoformat(),
        "after_start": DAY2.isoformat(), "after_end": (DAY2 + timedelta(days=1)).isoformat(),
    }  # fmt: skip
    admin = bearer(make_token(engine, "admin", NOW))
    full = app_client.get("/v1/picture/shifts", params=params, headers=admin).json()
    rows = {r["hoster"]: r for r in full["by_hoster"]}
    assert (rows["Big"]["matches_before"], rows["Big"]["matches_after"], rows["Big"]["delta"]) == (
        14,
        5,
        -9,
    )
    assert rows["Big"]["direction"] == "fell"
    assert rows["New"]["direction"] == "appeared" and rows["New"]["delta"] == 8
    assert rows["Tiny"]["direction"] == "vanished" and rows["Solo"]["direction"] == "vanished"
    countries = {r["country"]: r for r in full["by_country"]}
    assert countries["DE"]["delta"] == 13 - 15 and countries["FR"]["matches_after"] == 0

    viewer = bearer(make_token(engine, "viewer", NOW))
    seen = app_client.get("/v1/picture/shifts", params=params, headers=viewer).json()
    assert {r["hoster"] for r in seen["by_hoster"]} == {"Big", "New"}
    assert seen["suppressed_rows"] >= 2 and seen["tier"] == "viewer"

    as_csv = app_client.get("/v1/picture/shifts", params={**params, "format": "csv"}, headers=admin)
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["hoster"] for r in table if r["hoster"]} == {"Big", "New", "Tiny", "Solo"}
    bad = app_client.get(
        "/v1/picture/shifts", params={**params, "after_end": DAY_START.isoformat()}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_csv_export(app_client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    response = app_client.get("/v1/picture.csv", params={"section": "by_hoster"}, headers=admin)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    picture = app_client.get("/v1/picture", headers=admin).json()
    assert [(r["hoster"], int(r["matches"])) for r in rows] == [
        (r["hoster"], r["matches"]) for r in picture["by_hoster"]
    ]
    viewer = bearer(make_token(engine, "viewer", NOW))
    assert (
        app_client.get("/v1/picture.csv", params={"section": "by_node"}, headers=viewer).status_code
        == 403
    )


def test_snapshot_verifies_offline(app_client: TestClient, engine: Engine, tmp_path: Path) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    envelope = app_client.get("/v1/picture/snapshot", headers=viewer).json()
    key = app_client.get("/v1/coordinator/key").json()
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(envelope), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(cli, ["snapshot", "verify", str(snap), "--public-key", key["public_key"]])
    assert ok.exit_code == 0, ok.output
    assert "verifies" in ok.output and "tier viewer" in ok.output

    # Altered figures, or another coordinator's key: refused.
    import base64

    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["totals"]["matches"] += 1
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    snap.write_text(json.dumps(envelope), encoding="utf-8")
    bad = runner.invoke(cli, ["snapshot", "verify", str(snap), "--public-key", key["public_key"]])
    assert bad.exit_code == 1 and "bad_signature" in bad.output
    other = NodeKey.generate().public_key_b64
    wrong = runner.invoke(cli, ["snapshot", "verify", str(snap), "--public-key", other])
    assert wrong.exit_code == 1 and "unknown_key" in wrong.output


def test_waterbed_direction_beside_a_withheld_value_is_withheld(
    engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey
) -> None:
    # "Solo": 40 matches from one node on day 1 (withheld: one node), 6 from two on day 2.
    # "fell" beside the hidden 40 would tell a viewer it was more than 6.
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5, picture_min_nodes=2)
    with TestClient(create_app(settings, engine=engine, clock=lambda: LATER)) as client:
        reports = [
            (key_a, "node-a", [cell(hoster="Solo", matches=40)], DAY_START),
            (key_a, "node-a", [cell(hoster="Solo", matches=3)], DAY2),
            (key_b, "node-b", [cell(hoster="Solo", matches=3)], DAY2),
        ]
        for seq, (key, node, cells, start) in enumerate(reports, start=1):
            report = make_report(
                key, node, sequence=seq, created_at=LATER, period_start=start, cells=cells
            )
            assert (
                client.post(
                    "/v1/reports",
                    content=envelope_bytes(report, key),
                    headers={"content-type": "application/json"},
                ).status_code
                == 200
            )
        params = {
            "before_start": DAY_START.isoformat(), "before_end": DAY2.isoformat(),
            "after_start": DAY2.isoformat(), "after_end": (DAY2 + timedelta(days=1)).isoformat(),
        }  # fmt: skip
        admin = bearer(make_token(engine, "admin", NOW))
        full = client.get("/v1/picture/shifts", params=params, headers=admin).json()
        assert full["by_hoster"][0]["direction"] == "fell"
        viewer = bearer(make_token(engine, "viewer", NOW))
        (row,) = client.get("/v1/picture/shifts", params=params, headers=viewer).json()["by_hoster"]
        assert (row["matches_before"], row["matches_after"]) == (None, 6)
        assert row["direction"] == "withheld" and row["delta"] is None


def test_waterbed_refuses_periods_of_unequal_length(app_client: TestClient, engine: Engine) -> None:
    admin = bearer(make_token(engine, "admin", NOW))
    params = {
        "before_start": DAY_START.isoformat(), "before_end": DAY2.isoformat(),
        "after_start": DAY2.isoformat(), "after_end": (DAY2 + timedelta(days=2)).isoformat(),
    }  # fmt: skip
    bad = app_client.get("/v1/picture/shifts", params=params, headers=admin)
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"] == (
        "the two periods differ in length (1 day before, 2 days after): "
        "compare periods of equal length"
    )


def test_waterbed_shows_prevalence_beside_counts(
    engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey
) -> None:
    """Big: 10 matches in 1,000 images hashed, then 12 in 4,000: more matches, lower
    prevalence (the nodes crawled four times as much). node-b's report carries no coverage:
    its matches count in the raw figures only."""
    from protocol.models import Denominators, HosterCoverage

    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5)

    def covered(images: dict[str, int]) -> dict[str, Any]:
        rows = [
            HosterCoverage(country="DE", asn=64501, hoster=h, pages_fetched=5, images_hashed=n)
            for h, n in images.items()
        ]
        return {
            "coverage": rows,
            "denominators": Denominators(
                pages_fetched=5 * len(rows), images_hashed=sum(images.values()), hosts_seen=2
            ),
        }

    with TestClient(create_app(settings, engine=engine, clock=lambda: LATER)) as client:
        reports = [
            (key_a, "node-a", [cell(hoster="Big", matches=10)], DAY_START, {"Big": 1000}),
            (key_a, "node-a", [cell(hoster="Big", matches=12), cell(hoster="Low", matches=3)],
             DAY2, {"Big": 4000, "Low": 50}),
            (key_b, "node-b", [cell(hoster="Big", matches=30)], DAY2, None),
        ]  # fmt: skip
        for seq, (key, node, cells, start, images) in enumerate(reports, start=1):
            report = make_report(
                key, node, sequence=seq, created_at=LATER, period_start=start, cells=cells
            )
            if images is not None:
                report = Report.model_validate({**report.model_dump(), **covered(images)})
            response = client.post(
                "/v1/reports",
                content=envelope_bytes(report, key),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
        params = {
            "before_start": DAY_START.isoformat(), "before_end": DAY2.isoformat(),
            "after_start": DAY2.isoformat(), "after_end": (DAY2 + timedelta(days=1)).isoformat(),
        }  # fmt: skip
        admin = bearer(make_token(engine, "admin", NOW))
        full = client.get("/v1/picture/shifts", params=params, headers=admin).json()
        assert full["period_seconds"] == 86_400
        big = next(r for r in full["by_hoster"] if r["hoster"] == "Big")
        assert (big["matches_before"], big["matches_after"], big["direction"]) == (10, 42, "rose")
        assert (big["images_before"], big["images_after"]) == (1000, 4000)
        before, after = big["prevalence_before"], big["prevalence_after"]
        assert before["per_10k"] == 100.0 and after["per_10k"] == 30.0
        assert before["lower"] < 100.0 < before["upper"] and after["lower"] < 30.0 < after["upper"]
        assert before["confidence"] == 0.95 and before["method"] == "wilson"
        assert big["prevalence_change"] == -70.0
        de = next(r for r in full["by_country"] if r["country"] == "DE")
        assert (de["images_before"], de["images_after"]) == (1000, 4050)
        assert de["prevalence_after"]["per_10k"] == round(15 / 4050 * 10_000, 4)

        # The viewer: "Low" (3 matches) is withheld after, and so is its prevalence.
        viewer = bearer(make_token(engine, "viewer", NOW))
        seen = client.get("/v1/picture/shifts", params=params, headers=viewer).json()
        assert all(r["hoster"] != "Low" for r in seen["by_hoster"])  # nothing left to show
        shown = {r["hoster"]: r for r in seen["by_hoster"]}
        assert shown["Big"]["prevalence_after"] == after

        as_csv = client.get(
            "/v1/picture/shifts", params={**params, "format": "csv"}, headers=admin
        ).text
        rows = {r["hoster"]: r for r in csv.DictReader(io.StringIO(as_csv)) if r["hoster"]}
        assert (rows["Big"]["per_10k_before"], rows["Big"]["per_10k_after"]) == ("100.0", "30.0")
        assert rows["Big"]["per_10k_change"] == "-70.0" and rows["Big"]["images_after"] == "4000"
