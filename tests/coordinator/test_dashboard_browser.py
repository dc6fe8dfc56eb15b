"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
coordinator (uvicorn on 127.0.0.1) holding a known picture built from signed test reports.

Skipped when /usr/bin/chromium is absent, unless CI=true (then it fails: .ci/run installs it).
Screenshots of each view at 1280 px and 390 px, and a printed PDF, are saved under
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, make_engine, new_session
from coordinator.membership import create_invitation, enroll
from protocol.keys import NodeKey
from protocol.models import HosterDiscovery, MatchMethods

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
# The coordinator's clock: after both daily periods ended (a report is signed after its period).
CLOCK = NOW + timedelta(days=1)
MIN_COUNT = 3  # viewer-tier suppression: US (1 match) is withheld
DASH = "\u2013"  # the pages write ranges with an en dash

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
        cell(
            country="NL",
            hoster="Hoster N",
            asn=64600,
            matches=6,
            distinct=4,
            # Issue 18: 3 of 6 found disguised; node-b's 9 matches there do not say.
            methods=MatchMethods(direct=3, dihedral=2, trimmed=0, region=1),
        ),
        cell(country="US", hoster="Tiny", asn=64999, matches=1, distinct=1),
    ]),
    (2, "node-b", DAY_START, [
        cell(country="FR", hoster="=Hoster F", asn=64700, matches=5, distinct=5),
        cell(country="DE", hoster="Hoster A", asn=64501, matches=4, distinct=3),
        # Hong Kong has no shape in the 110m atlas; ZZ = no country attributable.
        cell(country="HK", hoster="Harbour Host", asn=64800, matches=4, distinct=4),
        cell(country="ZZ", hoster="Unknown", asn=0, matches=3, distinct=3),
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

# Issue 14: new material on day 1. Hoster A from both nodes (shown to viewers); Hoster N one
# candidate from one node (below MIN_COUNT: withheld from viewers).
DISCOVERY = {
    ("node-a", DAY_START): [
        HosterDiscovery(country="DE", asn=64501, hoster="Hoster A", candidates=5, confirmed=2,
                        rejected=0),
        HosterDiscovery(country="NL", asn=64600, hoster="Hoster N", candidates=1, confirmed=0,
                        rejected=0),
    ],
    ("node-b", DAY_START): [
        HosterDiscovery(country="DE", asn=64501, hoster="Hoster A", candidates=3, confirmed=1,
                        rejected=1),
    ],
}  # fmt: skip


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


# Playwright's waits (ms): events, not speed, decide them; long enough for a loaded machine.
WAIT_MS = 120_000
# Marks the page when a script fails to load or throws, so `ready` fails at once (init script).
PAGE_ERROR_MARK = """window.addEventListener("error", function (event) {
  document.documentElement.setAttribute("data-page-error", String(event.message));
});"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("coordinator")
    engine = make_engine(f"sqlite:///{data_dir / 'coordinator.db'}")
    create_schema(engine)
    for node_id, (country, seed) in NODES.items():
        register(engine, node_id, country, fixed_key(seed), NOW)
    settings = CoordinatorSettings(data_dir=data_dir, picture_min_count=MIN_COUNT)
    app = create_app(settings, engine=engine, clock=lambda: CLOCK)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_MS / 1000
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
            key, node_id, sequence=sequences[node_id], created_at=CLOCK, period_start=start,
            cells=cells, removals=REMOVALS.get((node_id, start), []),
        ).model_copy(update={"discovery": DISCOVERY.get((node_id, start), [])})  # fmt: skip
        response = httpx.post(
            f"{base}/v1/reports",
            content=envelope_bytes(report, key),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
    with new_session(engine) as session:
        create_invitation(
            session, country="PL", ttl=timedelta(days=2), now=NOW, actor="test", note="Poland"
        )
        # A node that enrolled and waits for approval (the admin pages approve it).
        waiting = create_invitation(
            session, country="AT", ttl=timedelta(days=2), now=NOW, actor="t"
        )
        enroll(
            session, invitation_code=waiting.code, node_id="node-p", country="AT",
            operator="BK", ed25519_public_key=NodeKey.from_seed_b64(
                base64.b64encode(bytes([9]) * 32).decode()).public_key_b64,
            x25519_public_key=base64.b64encode(bytes(range(32))).decode(),
            now=NOW, token_ttl=timedelta(days=1),
        )  # fmt: skip
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
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    # Waits are for events, not for speed: generous enough for a machine at load average 20.
    context.set_default_timeout(WAIT_MS)
    # A script that fails to load or throws marks the page, so `ready` fails at once instead of
    # waiting out WAIT_MS for a ready mark that will never come.
    context.add_init_script(PAGE_ERROR_MARK)
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
    tab.goto(f"{live.base}/dashboard/login?next={quote(next_path, safe='')}")
    tab.fill("input[name=token]", token)
    tab.click("form[action='/dashboard/login'] button[type=submit]")
    tab.wait_for_url(lambda url: url == f"{live.base}{next_path}")


def ready(tab: Any) -> None:
    tab.wait_for_selector("body[data-ready], html[data-page-error]", state="attached")
    error = tab.get_attribute("html", "data-page-error")
    assert error is None, f"a script of the page failed: {error}"
    assert tab.get_attribute("body", "data-ready") == "true", tab.inner_text("#status")


def table(tab: Any, selector: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = tab.eval_on_selector_all(
        f"{selector} tbody tr",
        """rows => rows.map(tr => Object.fromEntries([...tr.querySelectorAll('td[data-col]')]
            .map(td => [td.dataset.col, td.textContent])))""",
    )
    return rows


def number(text: str) -> int:
    # en-US grouping; the waterbed writes signs as +, U+2212 (minus) and ± for zero; a distinct
    # count or a flow carries its bound after the number: "1,234 (exact)", "12 (10-14)".
    text = text.split(" (")[0]
    return int(text.replace(",", "").replace("+", "").replace("±", "").replace("\u2212", "-"))


def download_bytes(tab: Any, button: str) -> tuple[str, bytes]:
    with tab.expect_download() as info:
        tab.click(button)
    saved = info.value
    return saved.suggested_filename, Path(saved.path()).read_bytes()


def download(tab: Any, button: str) -> tuple[str, str]:
    name, data = download_bytes(tab, button)
    return name, data.decode("utf-8")


def csv_body(text: str) -> tuple[list[str], str]:
    """A dashboard CSV export: its comment lines (the filter it was made with) and the rest."""
    lines = text.splitlines(keepends=True)
    comments = [line.rstrip("\n") for line in lines if line.startswith("#")]
    assert lines[: len(comments)] == [c + "\n" for c in comments], "comments come first"
    return comments, "".join(lines[len(comments) :])


def screenshot(tab: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    # The whole page, by growing the viewport: Playwright's full_page mode overrides the device
    # metrics mid-frame, which trips ECharts' geo layout (an error in the page, not a bug a
    # user can reach by resizing the window: that path is exercised here too).
    size = tab.viewport_size
    height = tab.evaluate("() => document.documentElement.scrollHeight")
    tab.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    tab.wait_for_timeout(300)  # the charts' resize is debounced (100 ms)
    tab.screenshot(path=str(target))
    tab.set_viewport_size(size)
    print(f"screenshot: {target}")


def narrow(tab: Any, name: str) -> None:
    """The current page on a 390 px wide phone: no sideways scrolling, and a screenshot."""
    size = tab.viewport_size
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.reload()
    ready(tab)
    widths = tab.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
    assert max(widths) <= 390, f"{name}: the page overflows 390 px: {widths}"
    screenshot(tab, name)
    tab.set_viewport_size(size)


def charts_are_described(tab: Any) -> list[str]:
    """Every chart is an image with a text alternative and points at a table of its values."""
    charts: list[dict[str, Any]] = tab.eval_on_selector_all(
        ".chart",
        """els => els.map(el => ({id: el.id, role: el.getAttribute('role'),
            label: el.getAttribute('aria-label') || '',
            table: el.getAttribute('aria-describedby'),
            tableExists: !!document.getElementById(el.getAttribute('aria-describedby') || '-'),
            png: !!document.querySelector(`button.png[data-chart="${el.id}"]`)}))""",
    )
    assert charts
    for chart in charts:
        assert chart["role"] == "img", chart
        assert len(chart["label"]) > 40, chart
        assert chart["tableExists"], chart
        assert chart["png"], chart
    return [c["id"] for c in charts]


def png_exports(tab: Any, chart_ids: list[str]) -> None:
    for chart_id in chart_ids:
        name, data = download_bytes(tab, f"button.png[data-chart='{chart_id}']")
        assert name.startswith(f"libra-{chart_id}-") and name.endswith(".png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, (chart_id, len(data))


def test_map_shades_the_expected_countries(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    api = live.api("/v1/picture", live.viewer).json()
    assert api["tier"] == "viewer"
    expected = {r["country"]: r for r in api["by_country"]}
    assert set(expected) == {"DE", "NL", "FR", "HK", "ZZ"}  # US withheld: 1 match < MIN_COUNT

    state = tab.evaluate(
        """() => {
        const chart = echarts.getInstanceByDom(document.getElementById('map'));
        const option = chart.getOption();
        const data = chart.getModel().getSeriesByIndex(0).getData();
        const fill = (iso) => {
            const i = data.indexOfName(iso);
            return i < 0 ? null : data.getItemVisual(i, 'style').fill;
        };
        const points = chart.getModel().getSeriesByIndex(1).getData();
        return {
            series: option.series[0].data,
            territories: option.series[1].data,
            pointFill: points.count() ? points.getItemVisual(0, 'style').fill : null,
            nameProperty: option.geo[0].nameProperty,
            legend: option.visualMap[0],
            hidden: option.visualMap[1].show,
            title: option.title[0].text,
            regions: echarts.getMap('world').geoJSON.features.map(f => f.properties.iso),
            fills: Object.fromEntries(['DE', 'NL', 'FR', 'US'].map(c => [c, fill(c)])),
        };
    }"""
    )
    assert state["nameProperty"] == "iso"
    # ECharts adds every other region of the map as a data item without a value.
    shaded = {d["name"]: d["value"] for d in state["series"] if "value" in d}
    assert shaded == {c: r["matches"] for c, r in expected.items() if c in ("DE", "NL", "FR")}
    assert {"DE", "NL", "FR", "US"} <= set(state["regions"])
    assert not {"HK", "ZZ"} & set(state["regions"])
    # Hong Kong: a point at its location, coloured by the same scale.
    assert [(d["name"], d["value"][2]) for d in state["territories"]] == [("HK", 4)]
    lon, lat = state["territories"][0]["value"][:2]
    assert 113.5 < lon < 114.5 and 22 < lat < 22.6
    assert re.fullmatch(r"#[0-9a-fA-F]{6}|rgba?\(.*\)", state["pointFill"] or ""), state
    # Shaded by the visual map, darker for more matches; the withheld country gets no colour
    # from it (it keeps the blank area colour).
    fills = state["fills"]
    assert all(fills[c] for c in ("DE", "NL", "FR")) and fills["US"] is None, fills
    assert len({fills["DE"], fills["NL"], fills["FR"]}) == 3, fills
    # The legend: metric name and unit, each end labelled once (no handle labels).
    top = max(r["matches"] for c, r in expected.items() if c != "ZZ")
    assert state["legend"]["text"] == [f"{top} matches", "0"]
    assert state["legend"]["calculable"] is False and state["hidden"] is False
    assert state["title"] == "Matches per hosting country"
    # ZZ beside the map, with its share of all matches.
    zz = expected["ZZ"]["matches"]
    share = f"{100 * zz / api['totals']['matches']:.1f}%"
    assert tab.inner_text("#zz-value") == f"{zz} matches ({share} of all)"

    # Which period, when generated, and what the numbers mean.
    info = tab.inner_text("#period-info")
    assert info == (
        f"Period shown: all reports, 2026-11-23 00:00 UTC {DASH} 2026-11-25 00:00 UTC "
        "(2 report periods). Data generated 2026-11-25 12:00 UTC."
    )
    glossary = tab.inner_text("#glossary")
    assert "Matches" in glossary and "Distinct image URLs (exact, or within 2 %)" in glossary
    assert "Per 10k images (prevalence)" in glossary
    assert "ZZ (not attributable)" in glossary
    assert "Noisy counts (differential privacy)" in glossary and "New material" in glossary

    shown = {r["country"]: r for r in table(tab, "#country-table")}
    assert set(shown) == set(expected)
    for country, row in expected.items():
        assert number(shown[country]["matches"]) == row["matches"]
        assert number(shown[country]["distinct"]) == row["distinct"]
        assert number(shown[country]["nodes"]) == row["nodes"]
    # The browser's name for it, in the reader's language (Intl.DisplayNames).
    assert shown["HK"]["name"].startswith("Hong Kong")
    assert shown["ZZ"]["name"] == "Not attributable"
    hosters = {c: sum(1 for h in api["by_hoster"] if h["country"] == c) for c in expected}
    assert {c: number(r["hosters"]) for c, r in shown.items()} == hosters
    assert number(tab.inner_text("dd[data-total='Matches']")) == api["totals"]["matches"]
    assert "rows withheld: 1 countries, 1 hosters" in tab.inner_text("#suppression")

    # Another metric re-shades from the same data, and the legend says which.
    tab.select_option("#metric", "distinct")
    option = tab.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('map')).getOption()"
    )
    assert {d["name"]: d["value"] for d in option["series"][0]["data"] if "value" in d} == {
        c: r["distinct"] for c, r in expected.items() if c in ("DE", "NL", "FR")
    }
    assert option["visualMap"][0]["text"][0].endswith(" distinct image URLs")
    assert "Distinct image URLs" in tab.get_attribute("#map", "aria-label")

    # The CSV says what it was made with, then holds exactly the API's CSV.
    name, text = download(tab, "#export-csv")
    assert name.endswith(".csv")
    comments, body = csv_body(text)
    assert body == live.api("/v1/picture.csv", live.viewer, section="by_country").text
    assert "# filter: none (all reports)" in comments
    assert "# tier: viewer" in comments
    assert "# data generated: 2026-11-25T12:00:00Z" in comments
    name, text = download(tab, "#export-json")
    exported = json.loads(text)
    assert {r["country"]: r["matches"] for r in exported["by_country"]} == {
        c: r["matches"] for c, r in expected.items()
    }
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-map.png")
    narrow(tab, "dashboard-map-390.png")

    # Drill-down: a country (here Hong Kong's point) to its hosters.
    # Drill-down: a country to its hosters, here Hong Kong's point on the map. Hovering it
    # first shows a tooltip without breaking the page's CSP (no inline style attributes).
    tab.reload()
    ready(tab)
    x, y = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('map'))
            .convertToPixel({geoIndex: 0}, [114.17, 22.32])"""
    )
    box = tab.locator("#map").bounding_box()
    tab.mouse.move(box["x"] + x, box["y"] + y)
    tab.wait_for_selector("#map >> text=Hong Kong (HK): 4 matches")
    tab.mouse.click(box["x"] + x, box["y"] + y)
    tab.wait_for_url("**/dashboard/hosters?country=HK")
    ready(tab)
    assert [(r["hoster"], r["country"]) for r in table(tab, "#hoster-table")] == [
        ("Harbour Host", "HK")
    ]
    tab.go_back()
    ready(tab)
    tab.click("#country-table a:text('Netherlands')")
    tab.wait_for_url("**/dashboard/hosters?country=NL")
    ready(tab)
    assert {r["country"] for r in table(tab, "#hoster-table")} == {"NL"}
    assert watch.problems == [], watch.problems


def test_suppression_note_never_says_fewer_than_zero(page: tuple[Any, Watch], live: Live) -> None:
    tab, _ = page
    login(tab, live, live.viewer)
    ready(tab)
    text = tab.evaluate(
        """() => LIBRA.suppressionText({tier: 'viewer', suppression: {min_count: 0, min_nodes: 1,
            by_country: 0, by_hoster: 0, by_family: 0, by_period: 0}},
            [['by_country', 'countries']])"""
    )
    assert text == "No small-cell suppression: this coordinator shows every row."
    nodes_only = tab.evaluate(
        """() => LIBRA.suppressionText({tier: 'viewer', suppression: {min_count: 0, min_nodes: 2,
            by_country: 4, by_hoster: 0, by_family: 0, by_period: 0}},
            [['by_country', 'countries']])"""
    )
    assert "fewer than 0" not in nodes_only and "fewer than 2 reporting nodes" in nodes_only


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
    assert hoster_n["share_removed_24h"] == "50.0%"  # en-US percent
    assert hoster_n["share_removed_72h"] == "100.0%"
    assert hoster_n["median_seconds"] == f"{noticed['median_seconds'] / 3600:.1f} h"
    assert hoster_n["p90_seconds"] == f"{noticed['p90_seconds'] / 86400:.1f} d"
    others = [r for r in shown if r["hoster"] != "Hoster N"]
    assert {r["median_seconds"] for r in others} == {r["notices_sent"] for r in others} == {"—"}
    # Found disguised: dihedral + region of the matches whose node said (3 of 6); — elsewhere.
    assert hoster_n["disguised"] == "50.0%"
    assert {r["disguised"] for r in others} == {"—"}
    asns = {number(r["asn"]): number(r["matches"]) for r in table(tab, "#asn-table")}
    assert asns == {h["asn"]: h["matches"] for h in api["by_hoster"]}

    # The hoster name starts with "=": exported with a leading apostrophe, as the API's CSV.
    _, text = download(tab, "#export-csv")
    comments, body = csv_body(text)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert float(next(r for r in rows if r["hoster"] == "Hoster N")["share_removed_24h"]) == 0.5
    found_n = next(r for r in rows if r["hoster"] == "Hoster N")
    assert [found_n[f"found_{m}"] for m in ("direct", "dihedral", "region", "unspecified")] == [
        "3",
        "2",
        "1",
        "9",
    ]
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
    assert tab.inner_text("#period-info").startswith(
        f"Period shown: 2026-11-24 00:00 UTC {DASH} 2026-11-25 00:00 UTC (1 report period); "
        "only hash family pdq."
    )
    _, text = download(tab, "#export-asn-json")
    assert {a["asn"]: a["matches"] for a in json.loads(text)["asns"]} == {
        h["asn"]: h["matches"] for h in day2["by_hoster"]
    }
    comments, _ = csv_body(download(tab, "#export-asn-csv")[1])
    assert (
        "# filter: hash_family=pdq; period_start=2026-11-24T00:00:00Z; "
        "period_end=2026-11-25T00:00:00Z"
    ) in comments
    assert "# requested (UTC): from=2026-11-24; to=2026-11-24; family=pdq" in comments

    # Country, hoster and ASN filters reach the API too.
    tab.goto(f"{live.base}/dashboard/hosters?asn=64600")
    ready(tab)
    by_asn = live.api("/v1/picture", live.viewer, asn=64600).json()
    assert (
        [r["hoster"] for r in table(tab, "#hoster-table")]
        == [h["hoster"] for h in by_asn["by_hoster"]]
        == ["Hoster N"]
    )
    assert tab.input_value("input[name=asn]") == "64600"
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-hosters.png")
    narrow(tab, "dashboard-hosters-390.png")
    assert watch.problems == [], watch.problems


def test_new_material_panel_shows_its_unit_and_period(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)
    assert tab.inner_text("#discovery-title") == "New material"
    assert "found beside known material, confirmed by an agency's analyst" in tab.inner_text(
        "#discovery-panel"
    )
    api = live.api("/v1/picture/discovery", live.viewer).json()
    assert [r["hoster"] for r in api["rows"]] == ["Hoster A"]  # Hoster N: withheld
    assert table(tab, "#discovery-table") == [
        {"hoster": "Hoster A", "asn": "64501", "country": "DE", "candidates": "8",
         "confirmed": "3", "rejected": "1", "nodes": "2"}
    ]  # fmt: skip
    unit = tab.inner_text("#discovery-unit")
    assert unit.startswith("Unit: images")
    assert f"Period: all reports, 2026-11-23 00:00 UTC {DASH} 2026-11-24 00:00 UTC" in unit
    note = tab.inner_text("#discovery-note")
    # Viewer totals add up the rows shown only (Hoster N's candidate is withheld).
    assert "In all: 8 candidates found, 3 confirmed, 1 rejected, from 2 nodes." in note
    # The page's JSON export carries the panel's figures with their period.
    exported = json.loads(download(tab, "#export-json")[1])["new_material"]
    assert exported["rows"] == api["rows"] and exported["period"] == api["period"]
    assert "1 hoster rows withheld" in note
    # The second day: its period is named, and nothing was found in it.
    tab.goto(f"{live.base}/dashboard/hosters?from=2026-11-24&to=2026-11-24")
    ready(tab)
    assert f"Period: 2026-11-24 00:00 UTC {DASH} 2026-11-25 00:00 UTC" in tab.inner_text(
        "#discovery-unit"
    )
    assert tab.inner_text("#discovery-table tbody") == "no rows"
    assert watch.problems == [], watch.problems


def test_a_window_inside_a_period_shows_the_periods_it_overlaps(
    page: tuple[Any, Watch], live: Live
) -> None:
    tab, watch = page
    # Half of day 1: the API (containment) holds no whole period in it.
    login(tab, live, live.viewer, "/dashboard/hosters?from=2026-11-23+06:00&to=2026-11-23+18:00")
    ready(tab)
    assert live.api(
        "/v1/picture", live.viewer,
        period_start="2026-11-23T06:00:00Z", period_end="2026-11-23T18:00:00Z",
    ).json()["totals"]["matches"] == 0  # fmt: skip
    day1 = live.api(
        "/v1/picture", live.viewer,
        period_start="2026-11-23T00:00:00Z", period_end="2026-11-24T00:00:00Z",
    ).json()  # fmt: skip
    assert [(r["hoster"], number(r["matches"])) for r in table(tab, "#hoster-table")] == [
        (h["hoster"], h["matches"]) for h in day1["by_hoster"]
    ]
    assert tab.inner_text("#period-info").startswith(
        f"Period shown: 2026-11-23 00:00 UTC {DASH} 2026-11-24 00:00 UTC (1 report period), "
        f"widened from the requested 2026-11-23 06:00 UTC {DASH} 2026-11-23 18:00 UTC "
        "to whole report periods"
    )
    # No period near the window: the page names the nearest instead of showing nothing.
    tab.goto(f"{live.base}/dashboard/?from=2026-11-10&to=2026-11-12")
    ready(tab)
    assert tab.inner_text("#status") == (
        f"No report period overlaps 2026-11-10 00:00 UTC {DASH} 2026-11-13 00:00 UTC. "
        f"Nearest report period: 2026-11-23 00:00 UTC {DASH} 2026-11-24 00:00 UTC."
    )
    assert watch.problems == [], watch.problems


def test_quick_ranges_are_utc_and_end_at_the_coordinators_clock(
    page: tuple[Any, Watch], live: Live
) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    assert tab.get_attribute("body", "data-now") == "2026-11-25T12:00:00Z"
    assert "UTC" in tab.inner_text("label:has(input[name=from])")
    assert tab.get_attribute("input[name=from]", "type") == "text"  # no locale date picker
    tab.click("button[data-range='24h']")
    tab.wait_for_url("**/dashboard/?from=*")
    ready(tab)
    assert tab.input_value("input[name=from]") == "2026-11-24 12:00"
    assert tab.input_value("input[name=to]") == "2026-11-25 12:00"
    # The last 24 h overlap day 2 only: shown whole.
    day2 = live.api(
        "/v1/picture", live.viewer,
        period_start="2026-11-24T00:00:00Z", period_end="2026-11-25T00:00:00Z",
    ).json()  # fmt: skip
    assert number(tab.inner_text("dd[data-total='Matches']")) == day2["totals"]["matches"]
    tab.click("button[data-range='7d']")
    tab.wait_for_url("**from=2026-11-18*")
    ready(tab)
    assert "(2 report periods)" in tab.inner_text("#period-info")
    tab.click("button[data-range='all']")
    tab.wait_for_url(lambda url: "from=" not in url)
    ready(tab)
    assert tab.inner_text("#period-info").startswith("Period shown: all reports")
    assert watch.problems == [], watch.problems


def test_from_after_to_and_api_errors_read_as_advice(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)
    asked: list[str] = []
    tab.on("request", lambda r: asked.append(r.url) if "/v1/" in r.url else None)
    tab.fill("input[name=from]", "2026-11-24")
    tab.fill("input[name=to]", "2026-11-23")
    tab.click("#filters button[type=submit]")
    error = tab.locator("#filter-error")
    error.wait_for(state="visible")
    assert error.inner_text() == (
        "From (2026-11-24 00:00 UTC) must be before To (2026-11-24 00:00 UTC)."
    )
    assert tab.url.endswith("/dashboard/hosters") and asked == []  # nothing was queried
    tab.fill("input[name=to]", "24.11.2026")
    tab.click("#filters button[type=submit]")
    assert "must read YYYY-MM-DD" in error.inner_text()
    # The same check when such a link is opened.
    tab.goto(f"{live.base}/dashboard/trends?from=2026-11-24&to=2026-11-22")
    tab.wait_for_selector("body[data-ready=error]", state="attached")
    assert tab.inner_text("#status").startswith("From (2026-11-24 00:00 UTC) must be before To")
    tab.goto(
        f"{live.base}/dashboard/waterbed?b_from=2026-11-24&b_to=2026-11-23"
        "&a_from=2026-11-24&a_to=2026-11-24"
    )
    tab.wait_for_selector("body[data-ready=error]", state="attached")
    assert tab.inner_text("#status").startswith("From (2026-11-24 00:00 UTC) must be before To")
    # An error from the API reads as advice, not as "/v1/picture: 422 ...".
    tab.goto(f"{live.base}/dashboard/hosters?asn=9999999999")
    tab.wait_for_selector("body[data-ready=error]", state="attached")
    status = tab.inner_text("#status")
    assert status.startswith("The coordinator could not use these filters: ")
    assert "/v1/" not in status and "422" not in status
    assert "/v1/picture: 422" in tab.get_attribute("#status", "data-detail")
    problems = [p for p in watch.problems if "422" not in p]
    assert problems == [], problems


# What String.prototype.trim() removes (ECMAScript WhiteSpace and LineTerminator), which is
# not Python's str.isspace() set.
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _reference_field(text: str, is_end: bool) -> float | None:
    """What LIBRA.parseField must return (ms since the epoch, UTC), in Python."""
    text = text.strip(_JS_SPACE)
    if not text:
        return None
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?", text, re.ASCII)
    if m is None:
        return float("nan")
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute = (int(m[4]), int(m[5])) if m[4] else (0, 0)
    try:
        at = datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:
        return float("nan")
    if is_end and not m[4]:
        at += timedelta(days=1)
    return at.timestamp() * 1000


_FIELDS = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="0123456789-: T\u00a0\x1c\ufeff", max_size=20),
    st.builds(
        lambda y, mo, d, sep, h, mi, time, pad: (
            pad + f"{y:04d}-{mo:02d}-{d:02d}" + (f"{sep}{h:02d}:{mi:02d}" if time else "") + pad
        ),
        st.integers(1000, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.sampled_from([" ", "T", "t", "_", "  "]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.booleans(),
        st.sampled_from(["", " ", "\t"]),
    ),
)


def test_date_fields_parse_as_utc_exactly_like_the_reference(
    page: tuple[Any, Watch], live: Live
) -> None:
    """Fuzz the From/To parser (typed by people, or arriving in shared links)."""
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)

    @settings(max_examples=300, deadline=None, database=None)
    @given(text=_FIELDS, is_end=st.booleans())
    def check(text: str, is_end: bool) -> None:
        got = tab.evaluate(
            "([t, e]) => { const v = LIBRA.parseField(t, e); return Number.isNaN(v) ? 'nan' : v; }",
            [text, is_end],
        )
        want = _reference_field(text, is_end)
        if want is not None and math.isnan(want):
            assert got == "nan", (text, is_end, got)
        else:
            assert got == want, (text, is_end, got, want)

    check()
    assert watch.problems == [], watch.problems


def test_loading_state_is_shown_until_the_data_arrives(page: tuple[Any, Watch], live: Live) -> None:
    tab, _ = page
    login(tab, live, live.viewer)
    ready(tab)
    held: list[Any] = []
    tab.route("**/v1/picture*", lambda route: held.append(route))
    tab.goto(f"{live.base}/dashboard/hosters", wait_until="domcontentloaded")
    tab.wait_for_function("() => document.body.dataset.loading === 'true'")
    assert tab.inner_text("#status") == "Loading…"
    assert tab.get_attribute("main", "aria-busy") == "true"
    for route in held:
        route.continue_()
    tab.unroute("**/v1/picture*")
    ready(tab)
    assert tab.inner_text("#status") == "" and tab.get_attribute("main", "aria-busy") is None


def test_trends_drill_down_and_waterbed(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/trends")
    ready(tab)
    series = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-country'))
            .getOption().series.map(s => [s.name, s.data])"""
    )
    # Day 1: DE 10+4, NL 6, FR 5, HK 4, ZZ 3; day 2: DE 2 (withheld: below MIN_COUNT), NL 9+3,
    # FR 8.
    assert dict((name, data) for name, data in series) == {
        "DE": [14, None],
        "NL": [6, 12],
        "FR": [5, 8],
        "HK": [4, None],
        "ZZ": [3, None],
    }
    periods = table(tab, "#period-table")
    assert [number(p["matches"]) for p in periods] == [33, 22]
    assert [number(p["countries_withheld"]) for p in periods] == [1, 1]  # US, then DE
    # The charts' values as a table (the text alternative).
    values = table(tab, "#trend-table")
    assert {(v["period_start"], v["name"], number(v["matches"])) for v in values
            if v["kind"] == "country"} == {
        ("2026-11-23 00:00 UTC", c, m) for c, m in [("DE", 14), ("NL", 6), ("FR", 5), ("HK", 4),
                                                    ("ZZ", 3)]
    } | {("2026-11-24 00:00 UTC", "NL", 12), ("2026-11-24 00:00 UTC", "FR", 8)}  # fmt: skip
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-trends.png")
    narrow(tab, "dashboard-trends-390.png")

    # Drill-down: hosters of NL, then one hoster's trend.
    tab.goto(f"{live.base}/dashboard/hosters?country=NL")
    ready(tab)
    assert tab.inner_text("#hosters-title") == "Top hosters in NL"
    tab.click("#hoster-table a:text-is('Hoster N')")
    tab.wait_for_url("**/dashboard/trends?*hoster=Hoster+N*")
    ready(tab)
    lines = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-hoster'))
            .getOption().series.map(s => [s.name, s.data])"""
    )
    per_period = [
        live.api("/v1/picture", live.viewer, hoster="Hoster N", asn=64600, country="NL",
                 period_start=start, period_end=end).json()["by_hoster"]
        for start, end in [("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"),
                           ("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")]
    ]  # fmt: skip
    assert lines == [["Hoster N (AS64600, NL)", [p[0]["matches"] for p in per_period]]]
    assert [p[0]["matches"] for p in per_period] == [6, 9]
    assert tab.inner_text("#trend-scope") == "Trend of Hoster N, AS64600, NL."

    tab.goto(f"{live.base}/dashboard/waterbed")
    ready(tab)
    assert tab.input_value("input[name=b_from]") == "2026-11-23"
    assert tab.input_value("input[name=a_to]") == "2026-11-24"
    span = dict(
        before_start="2026-11-23T00:00:00Z",
        before_end="2026-11-24T00:00:00Z",
        after_start="2026-11-24T00:00:00Z",
        after_end="2026-11-25T00:00:00Z",
    )
    shifts = live.api("/v1/picture/shifts", live.viewer, **span).json()
    shown = table(tab, "#shift-country-table")
    arrows = {"rose": "▲ rose", "appeared": "▲ appeared", "fell": "▼ fell",
              "vanished": "▼ vanished"}  # fmt: skip
    assert [(r["country"], r["direction"]) for r in shown] == [
        (r["country"], arrows.get(r["direction"], r["direction"])) for r in shifts["by_country"]
    ]
    for row, api_row in zip(shown, shifts["by_country"], strict=True):
        for key in ("matches_before", "matches_after", "delta"):
            value = api_row[key]
            assert row[key] == "withheld" if value is None else number(row[key]) == value
    # Not red/green alone: a colour-blind-safe pair, a hatch on rises, signs on every label.
    bars = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-shifts'))
            .getOption().series[0].data.map(d => [d.value, d.itemStyle.color,
                d.itemStyle.decal.symbol === 'none' ? 'none' : 'hatch'])"""
    )
    assert bars and all(
        (color, decal) == (("#D55E00", "hatch") if value > 0 else ("#0072B2", "none"))
        for value, color, decal in bars
    ), bars
    _, text = download(tab, "#export-csv")
    comments, body = csv_body(text)
    assert body == live.api("/v1/picture/shifts", live.viewer, format="csv", **span).text
    assert any(c.startswith("# filter: before_start=2026-11-23T00:00:00Z") for c in comments)
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-waterbed.png")
    narrow(tab, "dashboard-waterbed-390.png")
    assert watch.problems == [], watch.problems


def test_numbers_follow_the_browser_locale(browser: Any, live: Live) -> None:
    context = browser.new_context(locale="de-DE", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    try:
        tab = context.new_page()
        login(tab, live, live.viewer, "/dashboard/hosters")
        ready(tab)
        assert tab.evaluate("() => LIBRA.int(1234567)") == "1.234.567"
        hoster_n = next(r for r in table(tab, "#hoster-table") if r["hoster"] == "Hoster N")
        assert hoster_n["share_removed_24h"].replace("\xa0", " ") == "50,0 %"
        assert re.fullmatch(r"\d+,\d h", hoster_n["median_seconds"])
    finally:
        context.close()


def test_print_stylesheet_makes_a_briefing_pdf(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    tab.emulate_media(media="print")
    hidden = tab.evaluate(
        """() => ['header.top nav', '#filters', '.exports', '.chart-tools', 'form.logout']
            .map(s => getComputedStyle(document.querySelector(s)).display)"""
    )
    assert hidden == ["none"] * 5
    assert tab.is_visible("#map") and tab.is_visible("#period-info") and tab.is_visible("#glossary")
    ARTIFACTS.mkdir(exist_ok=True)
    pdf = ARTIFACTS / "dashboard-map.pdf"
    tab.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
    tab.emulate_media(media="screen")
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


def audit_tail(live: Live, n: int) -> list[tuple[str, str]]:
    entries = live.api("/v1/audit", live.admin).json()["entries"]
    return [(e["action"], e["subject"]) for e in entries[-n:]]


def test_admin_sees_and_changes_nodes_and_invitations(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    tab.on("dialog", lambda dialog: dialog.accept())  # the confirmation of each action
    login(tab, live, live.admin, "/dashboard/admin/nodes")
    ready(tab)
    nodes = {r["node_id"]: r for r in table(tab, "#node-table")}
    api = live.api("/v1/nodes", live.admin).json()["nodes"]
    assert set(nodes) == {n["node_id"] for n in api} == {*NODES, "node-p"}
    for node in api:
        assert nodes[node["node_id"]]["status"] == node["status"]
        if node["node_id"] in NODES:
            assert number(nodes[node["node_id"]]["reports"]) == node["reports"]
            assert nodes[node["node_id"]]["key_expiry"] == "until revoked"
    assert nodes["node-c"]["last_report_at"] == "—"  # registered, never reported
    assert nodes["node-p"]["status"] == "pending"
    screenshot(tab, "dashboard-admin-nodes.png")
    narrow(tab, "dashboard-admin-nodes-390.png")

    # Approve the pending node, revoke its key, then the node: each audited as the API does.
    row = tab.locator("#node-table tr", has_text="node-p")
    row.locator("button.approve").click()
    tab.wait_for_function(
        "() => document.getElementById('status').textContent.includes('approved')"
    )
    assert live.api("/v1/nodes", live.admin).json()["nodes"][-1]["status"] == "active" or any(
        n["node_id"] == "node-p" and n["status"] == "active"
        for n in live.api("/v1/nodes", live.admin).json()["nodes"]
    )
    row.locator("button.revoke-key").click()
    tab.wait_for_function("() => document.getElementById('status').textContent.includes('Key')")
    row.locator("button.revoke-node").click()
    tab.wait_for_function(
        "() => document.getElementById('status').textContent === 'Node node-p revoked.'"
    )
    node_p = next(n for n in live.api("/v1/nodes", live.admin).json()["nodes"]
                  if n["node_id"] == "node-p")  # fmt: skip
    assert node_p["status"] == "revoked" and all(k["revoked_at"] for k in node_p["keys"])
    assert audit_tail(live, 3) == [
        ("node.approve", "node-p"),
        ("key.revoke", "node-p"),
        ("node.revoke", "node-p"),
    ]
    assert table(tab, "#node-table")[-1]["status"] == "revoked" or any(
        r["node_id"] == "node-p" and r["status"] == "revoked" for r in table(tab, "#node-table")
    )

    tab.goto(live.base + "/dashboard/admin/invitations")
    ready(tab)
    rows = table(tab, "#invitation-table")
    assert [(r["country"], r["state"], r["note"]) for r in rows] == [("PL", "pending", "Poland")]
    _, text = download(tab, "#export-json")
    assert json.loads(text) == live.api("/v1/invitations", live.admin).json()
    # Create one: the code is shown once, the list and the audit log have it.
    tab.fill("#new-invitation input[name=country]", "cz")
    tab.fill("#new-invitation input[name=ttl_hours]", "24")
    tab.fill("#new-invitation input[name=note]", "Czechia")
    tab.click("#new-invitation button[type=submit]")
    tab.wait_for_selector("#issued-code")
    code = tab.inner_text("#issued-code")
    made = next(i for i in live.api("/v1/invitations", live.admin).json()["invitations"]
                if i["note"] == "Czechia")  # fmt: skip
    assert code.startswith(f"inv_{made['invitation_id']}_") and made["state"] == "pending"
    assert made["expires_at"] == "2026-11-26T12:00:00Z"
    assert audit_tail(live, 1) == [("invitation.create", made["invitation_id"])]
    assert ("CZ", "pending", "Czechia") in [
        (r["country"], r["state"], r["note"]) for r in table(tab, "#invitation-table")
    ]
    screenshot(tab, "dashboard-admin-invitations.png")
    # Revoke it.
    tab.locator("#invitation-table tr", has_text="Czechia").locator("button").click()
    tab.wait_for_function("() => document.getElementById('status').textContent.includes('revoked')")
    states = {i["invitation_id"]: i["state"]
              for i in live.api("/v1/invitations", live.admin).json()["invitations"]}  # fmt: skip
    assert states[made["invitation_id"]] == "expired"
    assert audit_tail(live, 1) == [("invitation.revoke", made["invitation_id"])]
    narrow(tab, "dashboard-admin-invitations-390.png")

    # The admin sees the full tier: no suppression, so US appears on the map.
    tab.goto(live.base + "/dashboard/")
    ready(tab)
    assert "US" in {r["country"] for r in table(tab, "#country-table")}
    screenshot(tab, "dashboard-admin-map.png")
    assert watch.problems == [], watch.problems


def test_login_page_at_390(page: tuple[Any, Watch], live: Live) -> None:
    tab, _ = page
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.goto(f"{live.base}/dashboard/login")
    assert "until you log out or close the browser" in tab.inner_text("main")
    assert tab.evaluate("() => document.documentElement.scrollWidth") <= 390
    screenshot(tab, "dashboard-login-390.png")
