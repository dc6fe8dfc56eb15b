"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
coordinator (uvicorn on 127.0.0.1) holding a known picture built from signed test reports.

Skipped when /usr/bin/chromium is absent, unless CI=true (then it fails: .ci/run installs it).
A screenshot of each view is saved under tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, make_engine, new_session
from coordinator.membership import create_invitation

from .conftest import NOW
from .helpers import (
    DAY_START,
    cell,
    envelope_bytes,
    fixed_key,
    make_report,
    make_token,
    register,
    removal,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DAY2 = DAY_START + timedelta(days=1)
MIN_COUNT = 3  # viewer-tier suppression: US (1 match) is withheld

if not CHROMIUM.exists():
    reason = f"{CHROMIUM} is absent (apt-get install chromium); the browser test needs it"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} and CI=true", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is absent")

# Hoster names come from the web: this one must show up as text, never run.
EVIL_HOSTER = '<img src=x onerror="document.body.dataset.pwned=1">'
# Two days, three nodes. Viewer tier with min_count=3: DE, NL, FR shown; US (1 match) withheld.
REPORTS: list[tuple[int, str, Any, list[Any]]] = [
    (1, "node-a", DAY_START, [
        cell(country="DE", hoster="Hoster A", asn=64501, matches=10, distinct=6),
        cell(country="NL", hoster="Hoster N", asn=64600, matches=6, distinct=4),
        cell(country="US", hoster="Tiny", asn=64999, matches=1, distinct=1),
    ]),
    (2, "node-b", DAY_START, [
        cell(country="FR", hoster="=Hoster F", asn=64700, matches=5, distinct=5),
        cell(country="DE", hoster="Hoster A", asn=64501, matches=4, distinct=3),
    ]),
    (1, "node-a", DAY2, [
        cell(country="DE", hoster="Hoster A", asn=64501, matches=2, distinct=2),
        cell(country="NL", hoster="Hoster N", asn=64600, matches=9, distinct=7),
        cell(country="NL", hoster=EVIL_HOSTER, asn=64601, matches=3, distinct=3),
    ]),
    (2, "node-b", DAY2, [cell(country="FR", hoster="=Hoster F", asn=64700, matches=8, distinct=6)]),
]  # fmt: skip
NODES = {"node-a": ("DE", 1), "node-b": ("FR", 2), "node-c": ("NL", 3)}
# node-a noticed Hoster N on day 1: four removals, two within 24 h, all within 72 h.
REMOVALS = {
    ("node-a", DAY_START): [
        removal([3_600, 7_200, 90_000, 200_000], country="NL", asn=64600, hoster="Hoster N")
    ]
}


@dataclass(frozen=True)
class Live:
    base: str
    engine: Engine
    viewer: str
    admin: str

    def api(self, path: str, token: str, **params: Any) -> httpx.Response:
        response = httpx.get(
            self.base + path, params=params, headers={"authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        return response


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("coordinator")
    engine = make_engine(f"sqlite:///{data_dir / 'coordinator.db'}")
    create_schema(engine)
    for node_id, (country, seed) in NODES.items():
        register(engine, node_id, country, fixed_key(seed), NOW)
    settings = CoordinatorSettings(data_dir=data_dir, picture_min_count=MIN_COUNT)
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    sequences: dict[str, int] = {}
    for seq_seed, node_id, start, cells in REPORTS:
        key = fixed_key(seq_seed)
        sequences[node_id] = sequences.get(node_id, 0) + 1
        report = make_report(
            key, node_id, sequence=sequences[node_id], created_at=NOW, period_start=start,
            cells=cells, removals=REMOVALS.get((node_id, start), []),
        )  # fmt: skip
        response = httpx.post(f"{base}/v1/reports", content=envelope_bytes(report, key))
        assert response.status_code == 200, response.text
    with new_session(engine) as session:
        create_invitation(
            session, country="PL", ttl=timedelta(days=2), now=NOW, actor="test", note="Poland"
        )
    try:
        yield Live(
            base, engine, make_token(engine, "viewer", NOW), make_token(engine, "admin", NOW)
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@dataclass
class Watch:
    """What the browser did besides our clicks: requests elsewhere, CSP and script errors."""

    foreign: list[str]
    problems: list[str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        # Root in a container: Chromium's sandbox needs user namespaces it may not have.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[tuple[Any, Watch]]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    watch = Watch([], [])
    origin = urlsplit(live.base).netloc

    def on_request(request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and parts.netloc != origin:
            watch.foreign.append(request.url)

    tab.on("request", on_request)
    tab.on(
        "console",
        lambda m: watch.problems.append(m.text) if m.type in ("error", "warning") else None,
    )
    tab.on("pageerror", lambda e: watch.problems.append(f"{e}\n{e.stack}"))
    try:
        yield tab, watch
    finally:
        context.close()
        assert watch.foreign == [], (
            f"the dashboard reached outside the coordinator: {watch.foreign}"
        )


def login(tab: Any, live: Live, token: str, next_path: str = "/dashboard/") -> None:
    tab.goto(f"{live.base}/dashboard/login?next={next_path}")
    tab.fill("input[name=token]", token)
    tab.click("form[action='/dashboard/login'] button[type=submit]")
    tab.wait_for_url(f"{live.base}{next_path}*")


def ready(tab: Any) -> None:
    tab.wait_for_selector("body[data-ready]", state="attached", timeout=20_000)
    assert tab.get_attribute("body", "data-ready") == "true", tab.inner_text("#status")


def table(tab: Any, selector: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = tab.eval_on_selector_all(
        f"{selector} tbody tr",
        """rows => rows.map(tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]
            .map(td => [td.dataset.col, td.textContent])))""",
    )
    return rows


def number(text: str) -> int:
    return int(text.replace(",", "").replace("+", ""))


def download(tab: Any, button: str) -> tuple[str, str]:
    with tab.expect_download() as info:
        tab.click(button)
    saved = info.value
    path = saved.path()
    return saved.suggested_filename, Path(path).read_text("utf-8")


def screenshot(tab: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    # The whole page, by growing the viewport: Playwright's full_page mode overrides the device
    # metrics mid-frame, which trips ECharts' geo layout (an error in the page, not a bug a
    # user can reach by resizing the window: that path is exercised here too).
    size = tab.viewport_size
    height = tab.evaluate("() => document.documentElement.scrollHeight")
    tab.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    tab.screenshot(path=str(target))
    tab.set_viewport_size(size)
    print(f"screenshot: {target}")


def test_map_shades_the_expected_countries(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    api = live.api("/v1/picture", live.viewer).json()
    assert api["tier"] == "viewer"
    expected = {r["country"]: r for r in api["by_country"]}
    assert set(expected) == {"DE", "NL", "FR"}  # US withheld: 1 match < MIN_COUNT

    state = tab.evaluate(
        """() => {
        const chart = echarts.getInstanceByDom(document.getElementById('map'));
        const option = chart.getOption();
        const data = chart.getModel().getSeriesByIndex(0).getData();
        const fill = (iso) => {
            const i = data.indexOfName(iso);
            return i < 0 ? null : data.getItemVisual(i, 'style').fill;
        };
        return {
            series: option.series[0].data,
            nameProperty: option.series[0].nameProperty,
            regions: echarts.getMap('world').geoJSON.features.map(f => f.properties.iso),
            fills: Object.fromEntries(['DE', 'NL', 'FR', 'US'].map(c => [c, fill(c)])),
        };
    }"""
    )
    assert state["nameProperty"] == "iso"
    # ECharts adds every other region of the map as a data item without a value.
    assert {d["name"]: d["value"] for d in state["series"] if "value" in d} == {
        c: r["matches"] for c, r in expected.items()
    }
    assert {"DE", "NL", "FR", "US"} <= set(state["regions"])
    # Shaded by the visual map, darker for more matches; the withheld country gets no colour
    # from it (it keeps the blank area colour).
    fills = state["fills"]
    assert all(fills[c] for c in ("DE", "NL", "FR")) and fills["US"] is None, fills
    assert len({fills["DE"], fills["NL"], fills["FR"]}) == 3, fills

    shown = {r["country"]: r for r in table(tab, "#country-table")}
    assert set(shown) == set(expected)
    for country, row in expected.items():
        assert number(shown[country]["matches"]) == row["matches"]
        assert number(shown[country]["distinct"]) == row["distinct"]
        assert number(shown[country]["nodes"]) == row["nodes"]
    hosters = {c: sum(1 for h in api["by_hoster"] if h["country"] == c) for c in expected}
    assert {c: number(r["hosters"]) for c, r in shown.items()} == hosters
    assert number(tab.inner_text("dd[data-total='Matches']")) == api["totals"]["matches"]
    assert "rows withheld: 1 countries, 1 hosters" in tab.inner_text("#suppression")

    # Another metric re-shades from the same data.
    tab.select_option("#metric", "distinct")
    data = tab.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('map')).getOption().series[0].data"
    )
    assert {d["name"]: d["value"] for d in data if "value" in d} == {
        c: r["distinct"] for c, r in expected.items()
    }

    name, text = download(tab, "#export-csv")
    assert name.endswith(".csv")
    assert text == live.api("/v1/picture.csv", live.viewer, section="by_country").text
    name, text = download(tab, "#export-json")
    exported = json.loads(text)
    assert {r["country"]: r["matches"] for r in exported["by_country"]} == {
        c: r["matches"] for c, r in expected.items()
    }
    screenshot(tab, "dashboard-map.png")
    assert watch.problems == [], watch.problems


def test_hosters_filters_and_export(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)
    api = live.api("/v1/picture", live.viewer).json()
    shown = table(tab, "#hoster-table")
    assert [(r["hoster"], number(r["matches"])) for r in shown] == [
        (h["hoster"], h["matches"]) for h in api["by_hoster"]
    ]
    assert EVIL_HOSTER in [r["hoster"] for r in shown]  # shown as text
    assert tab.locator("table img").count() == 0
    assert tab.evaluate("() => document.body.dataset.pwned") is None
    # Time to removal where a node reports it (Hoster N), "—" elsewhere.
    removals = live.api("/v1/picture/removals", live.viewer).json()["rows"]
    assert [(r["hoster"], r["share_removed_24h"]) for r in removals] == [("Hoster N", 0.5)]
    by_hoster = {r["hoster"]: r for r in shown}
    hoster_n, noticed = by_hoster["Hoster N"], removals[0]
    assert number(hoster_n["notices_sent"]) == noticed["notices_sent"] == 5
    assert hoster_n["share_removed_24h"] == "50.0 %"
    assert hoster_n["share_removed_72h"] == "100.0 %"
    assert hoster_n["median_seconds"] == f"{noticed['median_seconds'] / 3600:.1f} h"
    assert hoster_n["p90_seconds"] == f"{noticed['p90_seconds'] / 86400:.1f} d"
    others = [r for r in shown if r["hoster"] != "Hoster N"]
    assert {r["median_seconds"] for r in others} == {r["notices_sent"] for r in others} == {"—"}
    asns = {number(r["asn"]): number(r["matches"]) for r in table(tab, "#asn-table")}
    assert asns == {h["asn"]: h["matches"] for h in api["by_hoster"]}

    # The hoster name starts with "=": exported with a leading apostrophe, as the API's CSV.
    _, text = download(tab, "#export-csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert float(next(r for r in rows if r["hoster"] == "Hoster N")["share_removed_24h"]) == 0.5
    assert [(r["hoster"], int(r["matches"])) for r in rows] == [
        ("'" + h["hoster"] if h["hoster"].startswith("=") else h["hoster"], h["matches"])
        for h in api["by_hoster"]
    ]

    # Filters: the second day and one hash family reach the API as query parameters.
    tab.fill("input[name=from]", "2026-11-24")
    tab.fill("input[name=to]", "2026-11-24")
    tab.select_option("select[name=family]", "pdq")
    tab.click("#filters button[type=submit]")
    tab.wait_for_url("**/dashboard/hosters?*")
    ready(tab)
    day2 = live.api(
        "/v1/picture",
        live.viewer,
        period_start="2026-11-24T00:00:00Z",
        period_end="2026-11-25T00:00:00Z",
        hash_family="pdq",
    ).json()
    assert [(r["hoster"], number(r["matches"])) for r in table(tab, "#hoster-table")] == [
        (h["hoster"], h["matches"]) for h in day2["by_hoster"]
    ]
    assert day2["totals"]["matches"] == 2 + 9 + 3 + 8
    _, text = download(tab, "#export-asn-json")
    assert {a["asn"]: a["matches"] for a in json.loads(text)["asns"]} == {
        h["asn"]: h["matches"] for h in day2["by_hoster"]
    }
    screenshot(tab, "dashboard-hosters.png")
    assert watch.problems == [], watch.problems


def test_trends_and_waterbed(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/trends")
    ready(tab)
    series = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-country'))
            .getOption().series.map(s => [s.name, s.data])"""
    )
    # Day 1: DE 10+4, NL 6, FR 5; day 2: DE 2 (withheld: below MIN_COUNT), NL 9+3, FR 8.
    assert dict((name, data) for name, data in series) == {
        "DE": [14, None],
        "NL": [6, 12],
        "FR": [5, 8],
    }
    periods = table(tab, "#period-table")
    assert [number(p["matches"]) for p in periods] == [26, 22]
    assert [number(p["countries_withheld"]) for p in periods] == [1, 1]  # US, then DE

    tab.goto(f"{live.base}/dashboard/waterbed")
    ready(tab)
    assert tab.input_value("input[name=b_from]") == "2026-11-23"
    assert tab.input_value("input[name=a_to]") == "2026-11-24"
    shifts = live.api(
        "/v1/picture/shifts",
        live.viewer,
        before_start="2026-11-23T00:00:00Z",
        before_end="2026-11-24T00:00:00Z",
        after_start="2026-11-24T00:00:00Z",
        after_end="2026-11-25T00:00:00Z",
    ).json()
    shown = table(tab, "#shift-country-table")
    assert [(r["country"], r["direction"]) for r in shown] == [
        (r["country"], r["direction"]) for r in shifts["by_country"]
    ]
    for row, api_row in zip(shown, shifts["by_country"], strict=True):
        for key in ("matches_before", "matches_after", "delta"):
            value = api_row[key]
            assert row[key] == "withheld" if value is None else number(row[key]) == value
    _, text = download(tab, "#export-csv")
    assert (
        text
        == live.api(
            "/v1/picture/shifts",
            live.viewer,
            before_start="2026-11-23T00:00:00Z",
            before_end="2026-11-24T00:00:00Z",
            after_start="2026-11-24T00:00:00Z",
            after_end="2026-11-25T00:00:00Z",
            format="csv",
        ).text
    )
    screenshot(tab, "dashboard-waterbed.png")
    assert watch.problems == [], watch.problems


def test_viewer_cannot_reach_admin_pages(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    assert tab.locator("header nav a.admin").count() == 0
    for path in ("/dashboard/admin/nodes", "/dashboard/admin/invitations"):
        response = tab.goto(live.base + path)
        assert response.status == 403
        assert "for admins" in tab.inner_text("main")
    # The admin API refuses the viewer's session cookie as well.
    status = tab.evaluate("async () => (await fetch('/v1/invitations')).status")
    assert status == 403
    # Logging out ends the session: pages send the browser back to the login form.
    tab.goto(live.base + "/dashboard/")
    tab.click("form.logout button")
    tab.wait_for_url("**/dashboard/login")
    tab.goto(live.base + "/dashboard/hosters")
    assert "/dashboard/login" in tab.url
    assert tab.evaluate("async () => (await fetch('/v1/picture')).status") == 401
    problems = [p for p in watch.problems if "403" not in p and "401" not in p]
    assert problems == [], problems


def test_admin_sees_nodes_and_invitations(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.admin, "/dashboard/admin/nodes")
    ready(tab)
    nodes = {r["node_id"]: r for r in table(tab, "#node-table")}
    api = live.api("/v1/nodes", live.admin).json()["nodes"]
    assert set(nodes) == {n["node_id"] for n in api} == set(NODES)
    for node in api:
        assert nodes[node["node_id"]]["status"] == node["status"]
        assert number(nodes[node["node_id"]]["reports"]) == node["reports"]
        assert nodes[node["node_id"]]["key_expiry"] == "until revoked"
    assert nodes["node-c"]["last_report_at"] == "—"  # registered, never reported

    tab.goto(live.base + "/dashboard/admin/invitations")
    ready(tab)
    rows = table(tab, "#invitation-table")
    assert [(r["country"], r["state"], r["note"]) for r in rows] == [("PL", "pending", "Poland")]
    _, text = download(tab, "#export-json")
    assert json.loads(text) == live.api("/v1/invitations", live.admin).json()
    # The admin sees the full tier: no suppression, so US appears on the map.
    tab.goto(live.base + "/dashboard/")
    ready(tab)
    assert "US" in {r["country"] for r in table(tab, "#country-table")}
    screenshot(tab, "dashboard-admin-map.png")
    assert watch.problems == [], watch.problems
