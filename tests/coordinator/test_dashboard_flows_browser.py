"""The issue 16 views in Chromium: displacement, coverage, prevalence and distinct bounds,
5-minute periods and auto-refresh, against a real coordinator holding a three-period world
of 5-minute reports with item sketches and coverage (its truth is written out below).

Same rules as test_dashboard_browser (skipped without /usr/bin/chromium unless CI=true;
screenshots under tests/artifacts/).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, make_engine
from protocol.keys import NodeKey
from protocol.models import Denominators, HosterCoverage, Report, ReportCell
from protocol.theta import item_identity, make_theta

from .conftest import NOW
from .helpers import (
    DAY_START,
    FEDERATION_KEY,
    envelope_bytes,
    fixed_key,
    make_report,
    make_token,
    register,
)
from .test_dashboard_browser import (
    WAIT_MS,
    Live,
    Watch,
    browser,  # noqa: F401  (the module's browser fixture)
    charts_are_described,
    csv_body,
    download,
    login,
    narrow,
    number,
    png_exports,
    ready,
    screenshot,
    table,
)

FIVE = timedelta(minutes=5)
CLOCK = DAY_START + timedelta(minutes=20)  # after the three periods (and a fourth, posted late)
MIN_COUNT = 3
DASH = "\u2013"

A = ("DE", 64501, "Hoster A")
N = ("NL", 64600, "Hoster N")
HK = ("HK", 64800, "Harbour Host")
# Images hashed per hoster and report (the coverage rows): the denominators of prevalence.
IMAGES = {A: 5000, N: 2000, HK: 800}

# The world: items per (period, node, hoster). Truth:
#   P0 -> P1: Hoster A loses 0..19; 0..11 reappear at Hoster N, 12..15 at Harbour Host (HK).
#   P1 -> P2: Hoster N loses 0..11; 0..5 return to Hoster A. A loses 20..29, HK 12..15: gone.
WORLD: list[tuple[int, str, list[tuple[tuple[str, int, str], range | list[int]]]]] = [
    (0, "node-a", [(A, range(0, 30)), (N, range(100, 110))]),
    (0, "node-b", [(A, range(0, 30))]),
    (1, "node-a", [(A, range(20, 30)), (N, [*range(0, 12), *range(100, 110)])]),
    (1, "node-b", [(HK, range(12, 16)), (A, range(20, 30))]),
    (2, "node-a", [(N, range(100, 110))]),
    (2, "node-b", [(A, range(0, 6))]),
]
NODES = {"node-a": ("DE", 1), "node-b": ("FR", 2)}


def theta_cell(where: tuple[str, int, str], items: range | list[int]) -> ReportCell:
    country, asn, hoster = where
    ids = [item_identity("pdq", f"{n:064x}") for n in items]
    urls = [f"https://img.{hoster.split()[-1].lower()}.test/{n}.jpg" for n in items]
    return ReportCell(
        country=country, asn=asn, hoster=hoster, hash_family="pdq", matches=len(ids),
        distinct=len(urls), url_theta=make_theta(FEDERATION_KEY, urls), items=len(ids),
        item_theta=make_theta(FEDERATION_KEY, ids),
    )  # fmt: skip


def world_report(key: NodeKey, node: str, seq: int, period: int, cells: list[Any]) -> Report:
    report = make_report(
        key, node, sequence=seq, created_at=CLOCK, period_start=DAY_START + period * FIVE,
        cells=[theta_cell(where, items) for where, items in cells],
    )  # fmt: skip
    coverage = [
        HosterCoverage(country=c, asn=a, hoster=h, pages_fetched=50, images_hashed=IMAGES[where])
        for where, _ in cells
        for c, a, h in [where]
    ]
    data = report.model_dump()
    data["period"]["end"] = DAY_START + (period + 1) * FIVE
    data["coverage"] = coverage
    data["denominators"] = Denominators(
        pages_fetched=50 * len(coverage),
        images_hashed=sum(c.images_hashed for c in coverage),
        hosts_seen=len(coverage),
    )
    return Report.model_validate(data)


class World:
    def __init__(self, base: str) -> None:
        self.base = base
        self.sequences: dict[str, int] = {}

    def post(self, node: str, period: int, cells: list[Any]) -> None:
        self.sequences[node] = self.sequences.get(node, 0) + 1
        key = fixed_key(NODES[node][1])
        report = world_report(key, node, self.sequences[node], period, cells)
        response = httpx.post(
            f"{self.base}/v1/reports",
            content=envelope_bytes(report, key),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def live5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, World]]:
    data_dir = tmp_path_factory.mktemp("coordinator5")
    engine = make_engine(f"sqlite:///{data_dir / 'coordinator.db'}")
    create_schema(engine)
    for node_id, (country, seed) in NODES.items():
        register(engine, node_id, country, fixed_key(seed), NOW - timedelta(days=2))
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
    world = World(f"http://127.0.0.1:{port}")
    for period, node, cells in WORLD:
        world.post(node, period, cells)
    try:
        yield (
            Live(
                world.base,
                engine,
                make_token(engine, "viewer", DAY_START),
                make_token(engine, "admin", DAY_START),
            ),
            world,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


@pytest.fixture
def page5(browser: Any, live5: tuple[Live, World]) -> Iterator[tuple[Any, Watch]]:  # noqa: F811
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    watch = Watch([], [])
    origin = urlsplit(live5[0].base).netloc
    tab.on(
        "request",
        lambda r: (
            watch.foreign.append(r.url)
            if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != origin
            else None
        ),
    )
    tab.on(
        "console",
        lambda m: watch.problems.append(m.text) if m.type in ("error", "warning") else None,
    )
    tab.on("pageerror", lambda e: watch.problems.append(f"{e}\n{e.stack}"))
    try:
        yield tab, watch
    finally:
        context.close()
        assert watch.foreign == [], watch.foreign


def hoster_flows(tab: Any) -> list[tuple[str, str, int, str]]:
    return [
        (r["source_hoster"], r["target_hoster"], number(r["estimate"]), r["bounds"])
        for r in table(tab, "#hoster-flows")
    ]


def test_displacement_shows_the_flows_of_each_step(
    page5: tuple[Any, Watch], live5: tuple[Live, World]
) -> None:
    tab, watch = page5
    live, _ = live5
    login(tab, live, live.viewer, "/dashboard/displacement")
    ready(tab)
    api = live.api("/v1/flows", live.viewer).json()
    assert len(api["steps"]) == 2 and api["tier"] == "viewer"
    # The latest step first: Hoster N lost 0..11 and six of them came back to Hoster A.
    assert tab.input_value("#step") == "2026-11-23T00:05:00Z"
    assert hoster_flows(tab) == [("Hoster N", "Hoster A", 6, "exact")]
    assert [(r["source_country"], r["target_country"], number(r["estimate"]))
            for r in table(tab, "#country-flows")] == [("NL", "DE", 6)]  # fmt: skip
    # Short periods are labelled with their minutes.
    assert tab.inner_text("#step-info").startswith(
        f"Step 2026-11-23 00:05{DASH}00:10 UTC → 2026-11-23 00:10{DASH}00:15 UTC "
        "(periods of 5 min): 1 hoster flow, 1 country flow."
    )
    options = tab.eval_on_selector_all("#step option", "os => os.map(o => o.textContent)")
    assert options == [
        f"2026-11-23 00:05{DASH}00:10 UTC → 2026-11-23 00:10{DASH}00:15 UTC",
        f"2026-11-23 00:00{DASH}00:05 UTC → 2026-11-23 00:05{DASH}00:10 UTC",
    ]
    assert tab.inner_text("#period-info").startswith(
        f"Period shown: all reports, 2026-11-23 00:00 UTC {DASH} 2026-11-23 00:15 UTC "
        "(3 report periods)."
    )
    assert "A flow A → B counts listed items" in tab.inner_text("#what-title + p")

    # The first step: Hoster A's items went to Hoster N (12) and Harbour Host (4).
    tab.select_option("#step", "2026-11-23T00:00:00Z")
    tab.wait_for_url("**/dashboard/displacement?step=2026-11-23T00*")
    ready(tab)
    assert hoster_flows(tab) == [
        ("Hoster A", "Hoster N", 12, "exact"),
        ("Hoster A", "Harbour Host", 4, "exact"),
    ]
    countries = [
        (r["source_country"], r["target_country"], number(r["estimate"]))
        for r in table(tab, "#country-flows")
    ]
    assert countries == [("DE", "NL", 12), ("DE", "HK", 4)]
    places = {r["hoster"]: r for r in table(tab, "#place-table")}
    assert [places["Hoster A"][k] for k in ("before", "after", "removed", "new")] == [
        "30", "10", "20", "0",
    ]  # fmt: skip
    assert places["Harbour Host"]["new"] == "4"
    step = api["steps"][0]
    assert {(f["source"]["hoster"], f["target"]["hoster"], f["items"]["estimate"])
            for f in step["flows"]} == {("Hoster A", "Hoster N", 12),
                                        ("Hoster A", "Harbour Host", 4)}  # fmt: skip
    # The diagram holds the same flows.
    links = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-flows'))
            .getOption().series[0].links.map(l => [l.source.split('\\u0000')[1],
                l.target.split('\\u0000')[1], l.value])"""
    )
    assert links == [
        ["Hoster A (AS64501, DE)", "Hoster N (AS64600, NL)", 12],
        ["Hoster A (AS64501, DE)", "Harbour Host (AS64800, HK)", 4],
    ]
    steps = table(tab, "#step-table")
    assert [(number(r["moved"]), number(r["flows"])) for r in steps] == [(6, 1), (16, 2)]
    assert tab.inner_text("#left-out") == "Every report in this selection carries item sketches."
    # The CSV holds every flow of every step, with its bounds and the filter it was made with.
    _, text = download(tab, "#export-csv")
    comments, body = csv_body(text)
    assert "# tier: viewer" in comments
    assert body.splitlines()[0].startswith("level,from_start,from_end,to_start")
    assert len(body.splitlines()) == 1 + 3 + 3  # 3 hoster flows, 3 country flows
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-displacement.png")
    narrow(tab, "dashboard-displacement-390.png")

    # The filter bar's country: only flows from or to it.
    tab.goto(f"{live.base}/dashboard/displacement?step=2026-11-23T00:00:00Z&country=HK")
    ready(tab)
    assert hoster_flows(tab) == [("Hoster A", "Harbour Host", 4, "exact")]
    assert watch.problems == [], watch.problems


def test_coverage_view_greys_what_was_not_crawled(
    page5: tuple[Any, Watch], live5: tuple[Live, World]
) -> None:
    tab, watch = page5
    live, _ = live5
    login(tab, live, live.viewer, "/dashboard/coverage")
    ready(tab)
    api = live.api("/v1/coverage", live.viewer).json()
    crawled = {r["country"]: r for r in api["countries"]}
    assert set(crawled) == {"DE", "NL", "HK"}
    option = tab.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('coverage-map')).getOption()"
    )
    # Every region without coverage keeps the grey "not crawled" colour; HK is a circle.
    assert option["geo"][0]["itemStyle"]["areaColor"] == "#c3c8ce"
    assert option["series"][0]["itemStyle"]["areaColor"] == "#c3c8ce"
    fills = tab.evaluate(
        """() => {
        const chart = echarts.getInstanceByDom(document.getElementById('coverage-map'));
        const data = chart.getModel().getSeriesByIndex(0).getData();
        return Object.fromEntries(['DE', 'NL', 'US', 'FR'].map(iso => {
            const i = data.indexOfName(iso);
            return [iso, i < 0 ? null : data.getItemVisual(i, 'style').fill];
        }));
    }"""
    )
    # Crawled countries shaded by the scale (two shades); the others not (the grey above).
    assert fills["DE"] and fills["NL"] and fills["DE"] != fills["NL"], fills
    assert fills["US"] is None and fills["FR"] is None, fills
    shaded = {d["name"]: d["value"] for d in option["series"][0]["data"] if "value" in d}
    assert shaded == {c: r["images_hashed"] for c, r in crawled.items() if c != "HK"}
    assert [(d["name"], d["value"][2]) for d in option["series"][1]["data"]] == [
        ("HK", crawled["HK"]["images_hashed"])
    ]
    assert "Not crawled" in tab.inner_text("#not-crawled-key")
    rows = {r["country"]: r for r in table(tab, "#coverage-country-table")}
    assert set(rows) == set(crawled)
    for country, row in crawled.items():
        assert number(rows[country]["images_hashed"]) == row["images_hashed"]
        assert number(rows[country]["pages_fetched"]) == row["pages_fetched"]
        assert number(rows[country]["matches"]) == row["matches"]
        # The API's prevalence, formatted by the page (the browser's locale, en-US here).
        assert rows[country]["prevalence"] == tab.evaluate(
            "(p) => LIBRA.prevalence(p)", row["prevalence"]
        )
    # DE (Hoster A): 30 + 30 + 10 + 10 + 6 matches in five reports of 5,000 images; HK: 4 in 800.
    assert crawled["DE"]["prevalence"]["per_10k"] == round(86 / 25_000 * 10_000, 4)
    assert rows["HK"]["prevalence"].startswith("50.0 (")
    assert (
        number(tab.inner_text("dd[data-total='Images hashed']")) == api["totals"]["images_hashed"]
    )
    tab.select_option("#metric", "per_10k")
    option = tab.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('coverage-map')).getOption()"
    )
    assert {d["name"]: d["value"] for d in option["series"][0]["data"] if "value" in d} == {
        c: r["prevalence"]["per_10k"] for c, r in crawled.items() if c != "HK"
    }
    png_exports(tab, charts_are_described(tab))
    screenshot(tab, "dashboard-coverage.png")
    narrow(tab, "dashboard-coverage-390.png")
    assert watch.problems == [], watch.problems


def test_prevalence_and_distinct_bounds_beside_the_counts(
    page5: tuple[Any, Watch], live5: tuple[Live, World]
) -> None:
    tab, watch = page5
    live, _ = live5
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)
    picture = live.api("/v1/picture", live.viewer).json()
    rows = {r["hoster"]: r for r in table(tab, "#hoster-table")}
    for h in picture["by_hoster"]:
        row = rows[h["hoster"]]
        assert number(row["matches"]) == h["matches"]
        assert h["distinct_exact"] is True  # every cell carries url_theta; few URLs
        assert row["distinct"] == f"{h['distinct']} (exact)"
        assert row["prevalence"] == tab.evaluate("(p) => LIBRA.prevalence(p)", h["prevalence"])
        assert row["prevalence"] != "—"
    # Near-real-time: the last hour (to the coordinator's clock, 00:20) holds all three periods.
    tab.click("button[data-range='1h']")
    tab.wait_for_url("**/dashboard/hosters?from=2026-11-22+23%3A20&to=2026-11-23+00%3A20*")
    ready(tab)
    assert tab.inner_text("#period-info").startswith(
        f"Period shown: 2026-11-23 00:00 UTC {DASH} 2026-11-23 00:15 UTC (3 report periods)."
    )
    # The map's country table and totals too.
    tab.goto(f"{live.base}/dashboard/")
    ready(tab)
    countries = {r["country"]: r for r in table(tab, "#country-table")}
    for c in picture["by_country"]:
        assert countries[c["country"]]["distinct"] == f"{c['distinct']} (exact)"
    assert tab.inner_text("dd[data-total='Distinct image URLs']").endswith("(exact)")
    # The trends: one point per 5-minute period, labelled with its minutes.
    tab.goto(f"{live.base}/dashboard/trends")
    ready(tab)
    axis = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-country'))
            .getOption().xAxis[0].data"""
    )
    assert axis == ["2026-11-23 00:00", "2026-11-23 00:05", "2026-11-23 00:10"]
    # Prevalence per period: DE had 60 matches in 10,000 images, then 20 in 10,000, then 6 in
    # 5,000 (one node).
    tab.select_option("#metric", "per_10k")
    lines = tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-country'))
            .getOption().series.map(s => [s.name, s.data])"""
    )
    assert dict(lines)["DE"] == [60.0, 20.0, 12.0]
    periods = table(tab, "#period-table")
    assert [p["period_start"] for p in periods] == [
        f"2026-11-23 00:{m} UTC" for m in ("00", "05", "10")
    ]
    assert all(p["distinct"].endswith("(exact)") and p["prevalence"] != "—" for p in periods)
    assert watch.problems == [], watch.problems


def test_waterbed_compares_equal_short_periods_with_prevalence(
    page5: tuple[Any, Watch], live5: tuple[Live, World]
) -> None:
    tab, watch = page5
    live, _ = live5
    login(tab, live, live.viewer, "/dashboard/waterbed")
    ready(tab)
    # Default: the last two 5-minute periods, to the minute.
    fields = [tab.input_value(f"input[name={k}]") for k in ("b_from", "b_to", "a_from", "a_to")]
    assert fields == [
        "2026-11-23 00:05",
        "2026-11-23 00:10",
        "2026-11-23 00:10",
        "2026-11-23 00:15",
    ]
    shifts = live.api(
        "/v1/picture/shifts", live.viewer,
        before_start="2026-11-23T00:05:00Z", before_end="2026-11-23T00:10:00Z",
        after_start="2026-11-23T00:10:00Z", after_end="2026-11-23T00:15:00Z",
    ).json()  # fmt: skip
    assert shifts["period_seconds"] == 300
    shown = {r["hoster"]: r for r in table(tab, "#shift-hoster-table")}
    for row in shifts["by_hoster"]:
        got = shown[row["hoster"]]
        for side in ("before", "after"):
            want = tab.evaluate("(p) => LIBRA.prevalence(p)", row[f"prevalence_{side}"])
            assert got[f"prevalence_{side}"] == want
    assert "each 5 min" in tab.inner_text("#compared")
    # Unequal periods are refused in the page, before any request.
    tab.fill("input[name=a_to]", "2026-11-23 00:20")
    tab.click("#periods button[type=submit]")
    error = tab.inner_text("#filter-error")
    assert (
        error
        == "The two periods differ in length (5 min and 10 min): compare periods of equal length."
    )
    screenshot(tab, "dashboard-waterbed-prevalence.png")
    assert watch.problems == [], watch.problems


def test_auto_refresh_updates_in_place(page5: tuple[Any, Watch], live5: tuple[Live, World]) -> None:
    """Runs last in this module: it adds a fourth period to the world."""
    tab, watch = page5
    live, world = live5
    login(tab, live, live.viewer, "/dashboard/displacement")
    ready(tab)
    assert tab.is_checked("#auto-refresh")
    state = tab.evaluate("() => LIBRA.refreshState()")
    assert state["scheduled"] and state["everyMs"] == 60_000 and 0 < state["dueInMs"] <= 60_000
    first = tab.get_attribute("#last-updated", "data-at")
    assert first and tab.inner_text("#last-updated").endswith(" UTC")

    # Hidden tab: nothing scheduled; visible again: scheduled.
    def visibility(state: str) -> None:
        tab.evaluate(
            """(s) => { Object.defineProperty(document, 'visibilityState',
                {configurable: true, get: () => s});
                document.dispatchEvent(new Event('visibilitychange')); }""",
            state,
        )

    visibility("hidden")
    assert tab.evaluate("() => LIBRA.refreshState().scheduled") is False
    visibility("visible")
    assert tab.evaluate("() => LIBRA.refreshState().scheduled") is True
    # The toggle: off stops it (and is remembered), on starts it again.
    tab.uncheck("#auto-refresh")
    assert tab.evaluate("() => LIBRA.refreshState().scheduled") is False
    tab.reload()
    ready(tab)
    assert not tab.is_checked("#auto-refresh")
    tab.check("#auto-refresh")
    assert tab.evaluate("() => LIBRA.refreshState().scheduled") is True

    # New data arrives: a refresh shows it in place, without "Loading…" or an empty table.
    tab.evaluate(
        """() => { window.__stay = 1; window.__seen = [];
            const log = () => window.__seen.push([document.getElementById('status').textContent,
                document.querySelectorAll('#step-table tbody tr').length]);
            new MutationObserver(log).observe(document.querySelector('main'),
                {subtree: true, childList: true, characterData: true}); }"""
    )
    world.post("node-a", 3, [(N, range(100, 108)), (A, range(0, 6))])
    assert tab.evaluate("() => LIBRA.refreshNow()") is True
    assert tab.evaluate("() => window.__stay") == 1  # the same page: not reloaded
    assert len(table(tab, "#step-table")) == 3
    assert tab.input_value("#step") == "2026-11-23T00:10:00Z"  # on to the newest step
    seen = tab.evaluate("() => window.__seen")
    assert all(status != "Loading…" and rows > 0 for status, rows in seen), seen
    assert tab.evaluate("() => LIBRA.refreshState().count") == 1
    assert tab.get_attribute("#last-updated", "data-at") > first
    # The same chart, updated (not a second one, not a second PNG button).
    assert tab.locator("button.png").count() == 1
    assert tab.evaluate(
        """() => echarts.getInstanceByDom(document.getElementById('chart-flows'))
            .getOption().series[0].links.length"""
    ) == len(live.api("/v1/flows", live.viewer).json()["steps"][-1]["flows"])
    assert watch.problems == [], watch.problems
