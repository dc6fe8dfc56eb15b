"""Issue 16 through the real app: coverage rows behind the picture's country and hoster rows,
prevalence (Wilson 95 %) counted over covered reports only, GET /v1/coverage with its filters
and viewer-tier suppression, and the picture CSV's new columns."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.prevalence import Z_95, prevalence
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import Report

from .conftest import NOW
from .helpers import DAY_START, bearer, cell, envelope_bytes, fixed_key, make_report, make_token
from .helpers import register as register_node
from .test_ingest_theta import with_coverage

KEY_C = fixed_key(3)


def _reports(key_a: NodeKey, key_b: NodeKey) -> list[tuple[NodeKey, Report]]:
    """node-a and node-b carry coverage; node-c (an older node) does not."""
    a = make_report(
        key_a,
        "node-a",
        created_at=NOW,
        cells=[
            cell(hoster="Big", matches=10, distinct=8),
            cell(hoster="Big", family=HashFamily.MD5, matches=2, distinct=2),
            cell(hoster="Mid", asn=64502, matches=3, distinct=3),
            cell(hoster="Mixed", asn=64503, matches=2, distinct=2),
        ],
    )
    a = with_coverage(
        a,
        [
            ("DE", 64501, "Big", 20, 4000),
            ("DE", 64502, "Mid", 5, 500),
            ("DE", 64503, "Mixed", 4, 300),
            ("FR", 64600, "Clean", 7, 900),  # crawled, nothing found
        ],
    )
    b = make_report(key_b, "node-b", created_at=NOW, cells=[cell(hoster="Big", matches=6)])
    b = with_coverage(
        b,
        [
            ("DE", 64501, "Big", 10, 2000),
            ("DE", 64503, "Mixed", 2, 200),
            ("FR", 64600, "Clean", 3, 100),
        ],
    )
    c = make_report(
        KEY_C,
        "node-c",
        created_at=NOW,
        cells=[
            cell(hoster="Big", matches=30),
            cell(hoster="Mid", asn=64502, matches=4),
            cell(hoster="Mixed", asn=64503, matches=20),
        ],
    )
    return [(key_a, a), (key_b, b), (KEY_C, c)]


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register_node(engine, "node-a", "DE", key_a, NOW)
    register_node(engine, "node-b", "FR", key_b, NOW)
    register_node(engine, "node-c", "DE", KEY_C, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5, picture_min_nodes=2)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        for key, report in _reports(key_a, key_b):
            response = test_client.post(
                "/v1/reports",
                content=envelope_bytes(report, key),
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text
        test_client.headers.update(bearer(make_token(engine, "admin", NOW)))
        yield test_client


def _per_10k(matches: int, images: int) -> dict[str, Any]:
    found = prevalence(matches, images)
    assert found is not None
    return found.model_dump()


def test_picture_rows_carry_coverage_and_prevalence(client: TestClient) -> None:
    pic = client.get("/v1/picture").json()
    hosters = {r["hoster"]: r for r in pic["by_hoster"]}
    big, mid, mixed = hosters["Big"], hosters["Mid"], hosters["Mixed"]
    # All of Big's matches (node-c's too) are in the row; prevalence only from covered reports.
    assert (big["matches"], big["pages_fetched"], big["images_hashed"]) == (48, 30, 6000)
    assert big["prevalence"] == _per_10k(10 + 2 + 6, 6000)
    assert big["prevalence"]["per_10k"] == 30.0
    assert big["prevalence"]["confidence"] == 0.95 and big["prevalence"]["method"] == "wilson"
    assert (mid["images_hashed"], mid["prevalence"]["per_10k"]) == (500, 60.0)
    assert (mixed["images_hashed"], mixed["prevalence"]["per_10k"]) == (500, 40.0)
    assert "Clean" not in hosters  # no cells: only in /v1/coverage
    (de,) = pic["by_country"]
    assert (de["country"], de["matches"], de["pages_fetched"], de["images_hashed"]) == (
        "DE", 77, 41, 7000,
    )  # fmt: skip
    assert de["prevalence"] == _per_10k(23, 7000)
    # Totals keep every report's denominators; prevalence over covered reports only.
    assert pic["totals"]["images_hashed"] == 8000 + 40  # node-c's report: 40 images
    assert pic["totals"]["prevalence"] == _per_10k(23, 8000)
    # A family filter counts that family's matches over the same images.
    pdq = client.get("/v1/picture", params={"hash_family": "pdq"}).json()
    pdq_big = next(r for r in pdq["by_hoster"] if r["hoster"] == "Big")
    assert pdq_big["images_hashed"] == 6000 and pdq_big["prevalence"] == _per_10k(16, 6000)


def test_coverage_endpoint(client: TestClient) -> None:
    body = client.get("/v1/coverage").json()
    assert body["totals"] == {
        "pages_fetched": 51,
        "images_hashed": 8000,
        "nodes": 2,
        "reports": 2,
        "matches": 23,
        "prevalence": _per_10k(23, 8000),
    }
    countries = {r["country"]: r for r in body["countries"]}
    assert countries["DE"] == {
        "country": "DE", "pages_fetched": 41, "images_hashed": 7000, "hosters": 3, "nodes": 2,
        "matches": 23, "prevalence": _per_10k(23, 7000),
    }  # fmt: skip
    fr = countries["FR"]
    assert (fr["hosters"], fr["images_hashed"], fr["matches"]) == (1, 1000, 0)
    assert fr["prevalence"]["per_10k"] == 0.0 and fr["prevalence"]["upper"] > 0
    hosters = {r["hoster"]: r for r in body["hosters"]}
    assert hosters["Clean"] == {
        "country": "FR", "asn": 64600, "hoster": "Clean", "pages_fetched": 10,
        "images_hashed": 1000, "nodes": 2, "matches": 0, "prevalence": _per_10k(0, 1000),
    }  # fmt: skip
    assert (hosters["Big"]["nodes"], hosters["Big"]["matches"]) == (2, 18)
    assert (hosters["Mid"]["nodes"], hosters["Mid"]["matches"]) == (1, 3)
    assert [r["hoster"] for r in body["hosters"]] == ["Big", "Clean", "Mid", "Mixed"]
    assert body["tier"] == "full" and body["suppression"] is None


def test_coverage_filters(client: TestClient) -> None:
    fr = client.get("/v1/coverage", params={"country": "fr"}).json()
    assert [r["country"] for r in fr["countries"]] == ["FR"]
    assert [r["hoster"] for r in fr["hosters"]] == ["Clean"]
    assert (fr["totals"]["images_hashed"], fr["totals"]["reports"]) == (1000, 2)
    big = client.get("/v1/coverage", params={"hoster": "Big", "asn": 64501}).json()
    assert [r["hoster"] for r in big["hosters"]] == ["Big"]
    assert big["totals"]["images_hashed"] == 6000 and big["countries"][0]["hosters"] == 1
    md5 = client.get("/v1/coverage", params={"hash_family": "md5"}).json()
    assert {r["hoster"]: r["matches"] for r in md5["hosters"]}["Big"] == 2
    later = client.get("/v1/coverage", params={"period_start": "2026-12-01T00:00:00Z"}).json()
    assert later["countries"] == [] and later["totals"]["reports"] == 0
    assert later["totals"]["prevalence"] is None
    bad = client.get("/v1/coverage", params={"country": "Germany"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_viewer_suppression(client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    body = client.get("/v1/coverage", headers=viewer).json()
    hosters = {r["hoster"]: r for r in body["hosters"]}
    assert "Mid" not in hosters  # one node's crawl
    assert hosters["Mixed"]["matches"] is None and hosters["Mixed"]["prevalence"] is None
    assert hosters["Mixed"]["images_hashed"] == 500
    assert hosters["Clean"]["matches"] == 0  # nothing found is not a small count
    assert body["suppression"] == {
        "min_count": 5, "min_nodes": 2, "by_country": 0, "by_hoster": 1, "matches_withheld": 1,
    }  # fmt: skip
    assert "Mid" not in json.dumps(body)

    pic = client.get("/v1/picture", headers=viewer).json()
    rows = {r["hoster"]: r for r in pic["by_hoster"]}
    # Mid's row is shown (nodes a and c), but its coverage is node-a's alone.
    assert rows["Mid"]["matches"] == 7
    assert (rows["Mid"]["images_hashed"], rows["Mid"]["prevalence"]) == (None, None)
    # Mixed: 2 covered matches in 500 images would give the small count back.
    assert rows["Mixed"]["images_hashed"] == 500 and rows["Mixed"]["prevalence"] is None
    assert rows["Big"]["prevalence"]["per_10k"] == 30.0


def test_picture_csv_has_the_new_columns(client: TestClient) -> None:
    text = client.get("/v1/picture.csv", params={"section": "by_hoster"}).text
    rows = {r["hoster"]: r for r in csv.DictReader(io.StringIO(text))}
    big = rows["Big"]
    assert (big["images_hashed"], big["pages_fetched"], big["per_10k"]) == ("6000", "30", "30.0")
    assert float(big["per_10k_lower"]) < 30.0 < float(big["per_10k_upper"])
    assert big["distinct_exact"] == "False" and int(big["distinct_upper"]) >= int(big["distinct"])
    family = client.get("/v1/picture.csv", params={"section": "by_family"}).text
    assert family.splitlines()[0] == (
        "hash_family,matches,distinct,distinct_exact,distinct_lower,distinct_upper,media"
    )


def test_reports_without_coverage_give_nulls(
    engine: Engine, tmp_path: Path, key_a: NodeKey
) -> None:
    register_node(engine, "node-a", "DE", key_a, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        report = make_report(key_a, created_at=NOW, period_start=DAY_START)
        test_client.post(
            "/v1/reports",
            content=envelope_bytes(report, key_a),
            headers={"content-type": "application/json"},
        )
        admin = bearer(make_token(engine, "admin", NOW))
        pic = test_client.get("/v1/picture", headers=admin).json()
        coverage = test_client.get("/v1/coverage", headers=admin).json()
    (row,) = pic["by_hoster"]
    assert (row["pages_fetched"], row["images_hashed"], row["prevalence"]) == (None, None, None)
    assert pic["totals"]["prevalence"] is None
    assert coverage["countries"] == [] and coverage["hosters"] == []


# --- the Wilson interval --------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(images=st.integers(1, 10**9), share=st.floats(0, 1))
def test_wilson_bounds_solve_the_score_equation(images: int, share: float) -> None:
    """The Wilson bounds are the proportions p0 whose score statistic equals z:
    (p - p0)^2 = z^2 p0 (1 - p0) / n; and they hold the observed proportion."""
    matches = min(images, round(share * images))
    found = prevalence(matches, images)
    assert found is not None
    p = matches / images
    assert found.lower <= round(p * 10_000, 4) <= found.upper
    for bound in (found.lower, found.upper):
        p0 = bound / 10_000
        lhs = (p - p0) ** 2
        rhs = Z_95**2 * p0 * (1 - p0) / images
        # 4-decimal rounding per 10,000 moves p0 by at most 5e-9.
        slack = 2 * abs(p - p0) * 5e-9 + Z_95**2 * 5e-9 / images + 1e-15
        assert math.isclose(lhs, rhs, abs_tol=slack) or (bound in (0.0, 10_000.0))


def test_wilson_without_images_is_none() -> None:
    assert prevalence(0, 0) is None
    zero = prevalence(0, 1000)
    assert zero is not None and zero.per_10k == 0.0 and 0 < zero.upper < 40
