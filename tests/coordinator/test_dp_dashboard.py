"""The dashboard against a coordinator in DP mode (issue 15), in a real browser: the noisy
figures are labelled (mechanism, epsilon, noise, unit of privacy), the columns DP mode does not
publish are not shown, and the views with exact counts say they are not published instead of
failing. The same signed test reports as the dashboard's own browser tests, with crawl coverage
(DP mode shows the hosters crawled, found or not)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings, ViewerSettings
from coordinator.db import create_schema, make_engine
from coordinator.dp.mechanism import standard_deviation

from .conftest import NOW
from .helpers import envelope_bytes, fixed_key, make_report, make_token, register
from .test_dashboard_browser import (
    CLOCK,
    NODES,
    REPORTS,
    WAIT_MS,
    Live,
    Watch,
    browser,
    csv_body,
    download,
    login,
    number,
    page,
    ready,
    screenshot,
    table,
)
from .test_ingest_theta import with_coverage

__all__ = ["browser", "page"]  # the browser fixtures, shared with the dashboard's own tests

EPSILON = 2.0  # per release: noise scale 1.5, so most of the test's hosters stay above 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A coordinator with [viewer] privacy = "dp" on 127.0.0.1 (overrides the shared `live`
    for this module, so `page` opens tabs on it)."""
    data_dir = tmp_path_factory.mktemp("coordinator-dp")
    engine = make_engine(f"sqlite:///{data_dir / 'coordinator.db'}")
    create_schema(engine)
    for node_id, (country, seed) in NODES.items():
        register(engine, node_id, country, fixed_key(seed), NOW)
    settings = CoordinatorSettings(
        data_dir=data_dir, viewer=ViewerSettings(privacy="dp", epsilon=EPSILON, budget=200.0)
    )
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
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    sequences: dict[str, int] = {}
    for seed, node_id, start, cells in REPORTS:
        key = fixed_key(seed)
        sequences[node_id] = sequences.get(node_id, 0) + 1
        report = make_report(
            key, node_id, sequence=sequences[node_id], created_at=CLOCK, period_start=start,
            cells=cells,
        )  # fmt: skip
        crawled = [(c.country, c.asn, c.hoster, 40, 900) for c in cells]
        response = httpx.post(
            f"{base}/v1/reports",
            content=envelope_bytes(with_coverage(report, crawled), key),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
    try:
        yield Live(
            base, engine, make_token(engine, "viewer", NOW), make_token(engine, "admin", NOW)
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


# The exact views a viewer is refused in DP mode (404 not_published).
GUARDED = ("/v1/picture/removals", "/v1/picture/discovery", "/v1/coverage", "/v1/flows")


def record_refusals(tab: Any) -> list[str]:
    """The paths the tab gets a 404 for, from now on."""
    refused: list[str] = []
    tab.on("response", lambda r: refused.append(urlsplit(r.url).path) if r.status == 404 else None)
    return refused


def problems(watch: Watch, refused: list[str]) -> list[str]:
    """The page's problems, but the browser's own console line for each expected refusal:
    every 404 must be of a guarded view."""
    assert set(refused) <= set(GUARDED), refused
    missing = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    others = [p for p in watch.problems if p != missing]
    assert len(watch.problems) - len(others) <= len(refused)
    return others


def visible_headers(tab: Any, selector: str) -> list[str]:
    headers: list[str] = tab.eval_on_selector_all(
        f"{selector} thead th",
        # textContent: a table inside a closed <details> has no innerText.
        "ths => ths.filter(th => !th.hidden)"
        ".map(th => th.textContent.replace(/\\s+/g, ' ').trim())",
    )
    return headers


def test_dp_picture_shows_epsilon_and_mechanism(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    text = tab.evaluate(
        """() => LIBRA.suppressionText({tier: 'viewer', suppression: null, privacy: {
            mechanism: 'discrete_laplace', epsilon: 1, scale: 3, sensitivity: 3,
            releases: 1, unit: 'one match'}}, [['by_country', 'countries']])"""
    )
    assert text.startswith("Differential privacy: every count carries discrete laplace noise")
    assert "\u03b5 = 1.0 per release" in text and "noise scale 3.0" in text
    # The discrete Laplace's own standard deviation at scale 3 (about sqrt(2) * 3).
    assert f"typically off by about \u00b1{standard_deviation(3):.2f}" in text
    assert "Unit of privacy: one match." in text
    # Without a privacy label the suppression note is unchanged.
    plain = tab.evaluate(
        """() => LIBRA.suppressionText({tier: 'viewer', suppression: {min_count: 5, min_nodes: 1,
            by_country: 2, by_hoster: 0, by_family: 0, by_period: 0}},
            [['by_country', 'countries']])"""
    )
    assert plain.startswith("Small-cell suppression (fewer than 5 matches)")
    # A spent budget reads as what it is, not as a busy coordinator.
    spent = tab.evaluate("() => LIBRA.friendly(429, 'x', 'privacy_budget_exhausted')")
    assert spent.startswith("Not published under differential privacy: the privacy budget")
    assert tab.evaluate("() => LIBRA.friendly(429, 'x', 'rate_limited')").startswith(
        "The coordinator is busy"
    )
    assert watch.problems == [], watch.problems


def test_hosters_page_labels_noisy_figures_and_hides_unpublished(
    page: tuple[Any, Watch], live: Live
) -> None:
    tab, watch = page
    refused = record_refusals(tab)
    login(tab, live, live.viewer, "/dashboard/hosters")
    ready(tab)
    api = live.api("/v1/picture", live.viewer).json()
    label = api["privacy"]
    assert label["epsilon"] == pytest.approx(EPSILON)
    # The table: the noisy release the API serves (stored: asked again, the same answer),
    # without the columns DP mode does not publish.
    headers = visible_headers(tab, "#hoster-table")
    assert headers == ["Hoster", "ASN", "Country", "Matches (noisy)"]  # nothing else published
    rows = table(tab, "#hoster-table")
    assert [(r["hoster"], number(r["matches"])) for r in rows] == [
        (h["hoster"], h["matches"]) for h in api["by_hoster"]
    ]
    for row in rows:
        assert not {"distinct", "nodes", "prevalence", "disguised"} & set(row)
    # The label next to the figures: noisy, epsilon, the noise and the unit of privacy.
    note = tab.inner_text("#suppression")
    assert note.startswith("Differential privacy: every count carries discrete laplace noise")
    assert f"\u03b5 = {EPSILON:.1f} per release" in note
    assert "Unit of privacy: one match" in note
    assert "(noisy, \u03b5 = 2.0)" in tab.evaluate(
        "() => echarts.getInstanceByDom(document.getElementById('chart-hosters'))"
        ".getOption().title[0].text"
    )
    # The period the figures cover is named, as on every picture page.
    assert tab.inner_text("#period-info").startswith("Period shown: all reports, 2026-11-23")
    # Views with exact counts are not published to viewers: said so, not an error.
    assert "not published under differential privacy" in tab.inner_text("#removals-note")
    assert "not published under differential privacy" in tab.inner_text("#discovery-note")
    assert not tab.is_visible("#discovery-table")
    assert visible_headers(tab, "#asn-table")[-1] == "Matches (noisy)"  # sums of noisy rows
    # The exports leave out what is not published, and the JSON carries the label.
    header = csv_body(download(tab, "#export-csv")[1])[1].splitlines()[0].split(",")
    assert header[:4] == ["hoster", "asn", "country", "matches"]
    assert not {"distinct", "nodes", "per_10k", "disguised", "found_direct"} & set(header)
    exported = json.loads(download(tab, "#export-json")[1])
    assert exported["privacy"] == label
    assert [h["matches"] for h in exported["hosters"]] == [h["matches"] for h in api["by_hoster"]]
    assert "distinct" not in exported["hosters"][0]
    screenshot(tab, "dashboard-dp-hosters.png")
    assert sorted(set(refused)) == ["/v1/picture/discovery", "/v1/picture/removals"]
    assert problems(watch, refused) == []


def test_map_hides_distinct_and_nodes(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer)
    ready(tab)
    headers = visible_headers(tab, "#country-table")
    assert "Distinct URLs" not in headers and "Nodes" not in headers
    assert "Matches (noisy)" in headers and "Hosters" in headers
    options = tab.eval_on_selector_all(
        "#metric option", "os => os.filter(o => !o.hidden).map(o => o.value)"
    )
    assert options == ["matches", "hosters"]
    totals = tab.eval_on_selector_all("#totals dt", "dts => dts.map(dt => dt.innerText)")
    assert "Matches (noisy)" in totals
    assert not [t for t in totals if t.startswith("Distinct")]
    assert "Differential privacy" in tab.inner_text("#suppression")
    assert watch.problems == [], watch.problems


def test_trends_show_noisy_matches_only(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/trends")
    ready(tab)
    assert visible_headers(tab, "#period-table") == [
        "Period start",
        "Period end",
        "Matches (noisy)",
    ]
    assert visible_headers(tab, "#trend-table")[-1] == "Matches (noisy)"
    options = tab.eval_on_selector_all(
        "#metric option", "os => os.filter(o => !o.hidden).map(o => o.value)"
    )
    assert options == ["matches"]
    assert tab.inner_text("#suppression").startswith("Differential privacy:")
    assert watch.problems == [], watch.problems


def test_waterbed_compares_two_noisy_releases(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.viewer, "/dashboard/waterbed")
    ready(tab)
    span = dict(
        before_start="2026-11-23T00:00:00Z",
        before_end="2026-11-24T00:00:00Z",
        after_start="2026-11-24T00:00:00Z",
        after_end="2026-11-25T00:00:00Z",
    )
    shifts = live.api("/v1/picture/shifts", live.viewer, **span).json()
    assert shifts["privacy"]["releases"] == 2
    shown = table(tab, "#shift-country-table")
    assert [r["country"] for r in shown] == [r["country"] for r in shifts["by_country"]]
    note = tab.inner_text("#suppression")
    assert note.startswith("Differential privacy:") and "(2 releases compared)" in note
    assert note.endswith("Shifts compare the two noisy pictures.")
    assert watch.problems == [], watch.problems


@pytest.mark.parametrize("view", ["coverage", "displacement"])
def test_exact_views_say_not_published(page: tuple[Any, Watch], live: Live, view: str) -> None:
    tab, watch = page
    refused = record_refusals(tab)
    login(tab, live, live.viewer, f"/dashboard/{view}")
    ready(tab)  # ready, not an error page
    note = tab.inner_text("#not-published")
    assert note.startswith("Not published under differential privacy:")
    assert tab.inner_text("#status") == ""
    hidden = tab.eval_on_selector_all("main section.panel", "ps => ps.map(p => p.hidden)")
    assert hidden and all(hidden)
    assert refused and problems(watch, refused) == []


def test_admins_still_see_exact_views(page: tuple[Any, Watch], live: Live) -> None:
    tab, watch = page
    login(tab, live, live.admin, "/dashboard/coverage")
    ready(tab)
    assert tab.query_selector("#not-published") is None
    login(tab, live, live.admin, "/dashboard/hosters")
    ready(tab)
    headers = visible_headers(tab, "#hoster-table")
    assert "Distinct URLs" in headers and "Notices sent" in headers and "Matches" in headers
    assert tab.inner_text("#suppression").startswith("Full tier")
    assert watch.problems == [], watch.problems
