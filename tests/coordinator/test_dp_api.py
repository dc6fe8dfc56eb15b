"""The viewer tier in DP mode through the real app: noisy, labelled, repeatable for free,
refused with privacy_budget_exhausted beyond the budget; admins still see exact counts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import ConfigError, CoordinatorSettings, ViewerSettings
from coordinator.dp.mechanism import scale_for, standard_deviation
from protocol.hashes import HashFamily, ReportFamily
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import bearer, cell, envelope_bytes, make_report, make_token, register
from .test_ingest_theta import with_coverage

HOSTERS = 30  # enough cells that noise leaving every one unchanged is impossible in practice
JSON = {"content-type": "application/json"}
DAY = timedelta(days=1)


def _client(
    engine: Engine, tmp_path: Path, key: NodeKey, budget: float, refresh: timedelta = DAY
) -> TestClient:
    register(engine, "node-a", "DE", key, NOW)
    settings = CoordinatorSettings(
        data_dir=tmp_path,
        picture_min_count=5,
        viewer=ViewerSettings(privacy="dp", epsilon=1.0, budget=budget, refresh=refresh),
    )
    client = TestClient(create_app(settings, engine=engine, clock=lambda: NOW))
    cells = [
        cell(hoster=f"Hoster {i}", asn=64500 + i, matches=1 + 3 * i, distinct=1)
        for i in range(HOSTERS)
    ]
    cells.append(cell(hoster="Hoster 0", asn=64500, family=HashFamily.MD5, matches=2, distinct=1))
    coverage = [("DE", 64500 + i, f"Hoster {i}", 10, 200) for i in range(HOSTERS)]
    coverage.append(("DE", 64999, "Clean", 10, 200))  # crawled, nothing found
    report = with_coverage(make_report(key, created_at=NOW, cells=cells), coverage)
    assert client.post("/v1/reports", content=envelope_bytes(report, key), headers=JSON).is_success
    return client


@pytest.fixture
def dp_client(engine: Engine, tmp_path: Path, key_a: NodeKey) -> Iterator[TestClient]:
    with _client(engine, tmp_path, key_a, budget=20.0) as client:
        yield client


def _matches(picture: dict[str, Any]) -> dict[str, int]:
    return {r["hoster"]: r["matches"] for r in picture["by_hoster"]}


def test_viewer_gets_noisy_labelled_counts_admin_exact(
    dp_client: TestClient, engine: Engine
) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    admin = bearer(make_token(engine, "admin", NOW))
    exact = dp_client.get("/v1/picture", headers=admin).json()
    assert exact["tier"] == "full" and "privacy" not in exact
    # Hoster 0: 1 PDQ match and 2 MD5 matches.
    assert _matches(exact) == {
        f"Hoster {i}": 1 + 3 * i + (2 if i == 0 else 0) for i in range(HOSTERS)
    }

    response = dp_client.get("/v1/picture", headers=viewer)
    assert response.status_code == 200
    assert response.headers["libra-privacy"].startswith("mechanism=discrete_laplace; epsilon=1;")
    noisy = response.json()
    assert noisy["tier"] == "viewer" and noisy["suppression"] is None
    label = noisy["privacy"]
    assert label["mechanism"] == "discrete_laplace"
    assert label["epsilon"] == 1.0 and label["delta"] == 0.0
    assert label["sensitivity"] == 3 and label["scale"] == scale_for(1.0, 3) == 3.0
    assert "matched image URL" in label["unit"] and label["windows_charged"] == 1
    seen = _matches(noisy)
    assert set(seen) <= {f"Hoster {i}" for i in range(HOSTERS)} | {"Clean"}
    assert all(m > 0 for m in seen.values())  # noisy zeros are left out, never negative
    truth = {h: _matches(exact).get(h, 0) for h in seen}
    assert seen != truth  # noise was added
    # Derived by post-processing: countries sum their hosters' noisy counts, the total the
    # families' (unrounded, so unbiased): within 10 standard deviations of the exact sums.
    sd = standard_deviation(label["scale"])
    (country,) = noisy["by_country"]
    assert country["country"] == "DE"
    assert (
        abs(country["matches"] - exact["by_country"][0]["matches"]) < 10 * sd * (HOSTERS + 1) ** 0.5
    )
    total = exact["totals"]["matches"]
    assert abs(noisy["totals"]["matches"] - total) < 10 * sd * len(ReportFamily) ** 0.5
    assert noisy["totals"]["by_method"]["unspecified"] == noisy["totals"]["matches"]
    withheld = {"distinct": 0, "distinct_exact": False, "distinct_lower": 0, "distinct_upper": 0}
    assert {k: noisy["totals"][k] for k in withheld} == withheld
    assert noisy["totals"]["prevalence"] is None and exact["totals"]["prevalence"] is not None
    assert all(r["distinct"] == 0 and r["nodes"] == 0 for r in noisy["by_hoster"])
    assert all(r["prevalence"] is None and r["images_hashed"] is None for r in noisy["by_hoster"])
    # Exact figures a single match cannot change stay exact.
    assert noisy["reports"] == exact["reports"] == 1
    assert noisy["totals"]["images_hashed"] == exact["totals"]["images_hashed"]


def test_same_query_returns_the_same_release(dp_client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    first = dp_client.get("/v1/picture", headers=viewer).json()
    for _ in range(5):
        assert dp_client.get("/v1/picture", headers=viewer).json() == first
    # The CSV of the same query is the same release, with its label in a header.
    csv = dp_client.get("/v1/picture.csv", params={"section": "by_hoster"}, headers=viewer)
    assert csv.status_code == 200
    assert csv.headers["libra-privacy"].startswith("mechanism=discrete_laplace; epsilon=1;")
    rows = {line.split(",")[0]: int(line.split(",")[3]) for line in csv.text.splitlines()[1:]}
    assert rows == _matches(first)
    # The signed snapshot carries the same noisy counts and the label.
    snapshot = dp_client.get("/v1/picture/snapshot", headers=viewer)
    assert snapshot.status_code == 200
    signed = json.loads(base64.b64decode(snapshot.json()["payload"]))
    assert signed["privacy"] == first["privacy"] and _matches(signed) == _matches(first)


def test_per_node_breakdown_is_refused(dp_client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    nodes = dp_client.get("/v1/picture", params={"include_nodes": "true"}, headers=viewer)
    assert nodes.status_code == 403


EXACT_VIEWS = (
    "/v1/coverage",
    "/v1/flows",
    "/v1/picture/removals",
    "/v1/picture/removals.csv",
    "/v1/picture/discovery",
    "/v1/picture/discovery.csv",
)


@pytest.mark.parametrize("path", EXACT_VIEWS)
def test_views_with_exact_counts_are_admins_only(
    dp_client: TestClient, engine: Engine, path: str
) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    refused = dp_client.get(path, headers=viewer)
    assert refused.status_code == 404  # the dashboard: "does not serve these figures"
    assert refused.json()["error"]["code"] == "not_published"
    admin = bearer(make_token(engine, "admin", NOW))
    assert dp_client.get(path, headers=admin).status_code == 200
    assert dp_client.get(path).status_code == 401  # no token: as before


@pytest.mark.parametrize("path", EXACT_VIEWS[:3])
def test_suppression_mode_still_serves_viewers(
    engine: Engine, tmp_path: Path, key_a: NodeKey, path: str
) -> None:
    register(engine, "node-a", "DE", key_a, NOW)
    settings = CoordinatorSettings(data_dir=tmp_path, picture_min_count=5)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as client:
        viewer = bearer(make_token(engine, "viewer", NOW))
        assert client.get(path, headers=viewer).status_code == 200
        assert "privacy" not in client.get("/v1/picture", headers=viewer).json()


def test_shifts_compare_two_noisy_pictures(dp_client: TestClient, engine: Engine) -> None:
    viewer = bearer(make_token(engine, "viewer", NOW))
    before = {"before_start": "2026-11-22T00:00:00Z", "before_end": "2026-11-23T00:00:00Z"}
    after = {"after_start": "2026-11-23T00:00:00Z", "after_end": "2026-11-24T00:00:00Z"}
    response = dp_client.get("/v1/picture/shifts", params={**before, **after}, headers=viewer)
    assert response.status_code == 200
    shifts = response.json()
    assert shifts["privacy"]["releases"] == 2 and shifts["privacy"]["epsilon"] == 1.0
    assert response.headers["libra-privacy"].startswith("mechanism=discrete_laplace")
    # The later period's picture is the release the shifts were made from: asking is free
    # and gives the very same noisy counts.
    picture = dp_client.get(
        "/v1/picture",
        params={"period_start": after["after_start"], "period_end": after["after_end"]},
        headers=viewer,
    ).json()
    hosters = {r["hoster"]: r["matches_after"] for r in shifts["by_hoster"] if r["matches_after"]}
    assert hosters == _matches(picture)
    for row in shifts["by_hoster"]:
        assert row["delta"] == row["matches_after"] - row["matches_before"]
        assert row["prevalence_after"] is None
    # Admins still get exact shifts.
    admin = bearer(make_token(engine, "admin", NOW))
    exact = dp_client.get("/v1/picture/shifts", params={**before, **after}, headers=admin).json()
    assert "privacy" not in exact and exact["tier"] == "full"
    unequal = {**after, "after_end": "2026-11-25T00:00:00Z"}
    refused = dp_client.get("/v1/picture/shifts", params={**before, **unequal}, headers=viewer)
    assert refused.status_code == 422


@pytest.mark.parametrize("refresh", [DAY, timedelta(0)])
def test_new_reports_and_the_refresh_interval(
    engine: Engine, tmp_path: Path, key_a: NodeKey, refresh: timedelta
) -> None:
    with _client(engine, tmp_path, key_a, budget=5.0, refresh=refresh) as client:
        viewer = bearer(make_token(engine, "viewer", NOW))
        first = client.get("/v1/picture", headers=viewer).json()
        cells = [cell(hoster="Hoster 1", asn=64501, matches=50, distinct=1)]
        report = with_coverage(
            make_report(key_a, sequence=2, created_at=NOW, cells=cells),
            [("DE", 64501, "Hoster 1", 10, 200)],
        )
        body = envelope_bytes(report, key_a)
        assert client.post("/v1/reports", content=body, headers=JSON).is_success
        again = client.get("/v1/picture", headers=viewer).json()
        if refresh:  # within the interval: the last release, new data or not
            assert again == first
        else:  # new data, new release: charged to the same window again
            assert again != first and again["reports"] == 2
            assert client.get("/v1/picture", headers=viewer).json() == again


def test_budget_exhaustion_is_a_clear_429(engine: Engine, tmp_path: Path, key_a: NodeKey) -> None:
    with _client(engine, tmp_path, key_a, budget=2.0) as client:
        viewer = bearer(make_token(engine, "viewer", NOW))
        first = client.get("/v1/picture", headers=viewer)
        second = client.get("/v1/picture", params={"hash_family": "pdq"}, headers=viewer)
        assert first.status_code == second.status_code == 200
        refused = client.get("/v1/picture", params={"hash_family": "md5"}, headers=viewer)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "privacy_budget_exhausted"
        assert "2 of 2" in error["message"]
        # Answered queries stay answered; admins are not limited.
        assert client.get("/v1/picture", headers=viewer).json() == first.json()
        admin = bearer(make_token(engine, "admin", NOW))
        exact = client.get("/v1/picture", params={"hash_family": "md5"}, headers=admin)
        assert exact.status_code == 200


def test_viewer_settings_are_checked(tmp_path: Path) -> None:
    assert CoordinatorSettings(data_dir=tmp_path).viewer.privacy == "suppression"
    with pytest.raises(ValueError, match="budget"):
        ViewerSettings(privacy="dp", epsilon=2.0, budget=1.0)
    with pytest.raises(ValueError, match="privacy"):
        ViewerSettings(privacy="noise")
    toml = tmp_path / "c.toml"
    toml.write_text('[viewer]\nprivacy = "dp"\nepsilon = 0.5\nbudget = 5\n')
    from coordinator.config import load_settings

    loaded = load_settings(toml)
    assert loaded.viewer == ViewerSettings(privacy="dp", epsilon=0.5, budget=5.0)
    toml.write_text('[viewer]\nprivacy = "dp"\nepsilson = 0.5\n')
    with pytest.raises(ConfigError, match="epsilson"):
        load_settings(toml)
