"""Issue 13 in a real browser (Debian's Chromium via Playwright): the media selector filters
the map page to images or videos, the totals split by media, video families read as what they
are, at 1280 px and on a 390 px phone (screenshots in tests/artifacts/)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, make_engine
from protocol.hashes import ReportFamily

from .conftest import NOW
from .helpers import cell, envelope_bytes, fixed_key, make_report, make_token, register
from .test_dashboard_browser import (  # noqa: F401  (fixtures, used by name)
    CLOCK,
    WAIT_MS,
    Live,
    Watch,
    browser,
    login,
    narrow,
    page,
    ready,
    screenshot,
    table,
)

F = ReportFamily
CELLS = [
    cell(country="DE", hoster="Hoster A", asn=64501, family=F.PDQ, matches=10, distinct=6),
    cell(country="DE", hoster="Hoster A", asn=64501, family=F.VIDEO_MD5, matches=4, distinct=3),
    cell(country="NL", hoster="Hoster N", asn=64600, family=F.VPDQ, matches=6, distinct=5),
    cell(country="FR", hoster="Hoster F", asn=64700, family=F.VPDQ_FRAME, matches=5, distinct=5),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("coordinator-media")
    engine = make_engine(f"sqlite:///{data_dir / 'coordinator.db'}")
    create_schema(engine)
    register(engine, "node-a", "DE", fixed_key(1), NOW)
    app = create_app(CoordinatorSettings(data_dir=data_dir), engine=engine, clock=lambda: CLOCK)
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
    report = make_report(fixed_key(1), "node-a", created_at=CLOCK, cells=CELLS)
    response = httpx.post(
        f"{base}/v1/reports",
        content=envelope_bytes(report, fixed_key(1)),
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


def _totals(tab: Any) -> dict[str, str]:
    pairs: list[list[str]] = tab.eval_on_selector_all(
        "#totals dd", "dds => dds.map(dd => [dd.dataset.total, dd.textContent])"
    )
    return dict((k, v) for k, v in pairs)


def test_media_selector_filters_the_map(page: tuple[Any, Watch], live: Live) -> None:  # noqa: F811
    tab, watch = page
    login(tab, live, live.admin)
    ready(tab)
    totals = _totals(tab)
    assert totals["Matches"] == "25"
    assert totals["Video matches"] == "10"  # video-md5 4 + vpdq 6
    assert totals["Image matches (incl. stills from listed videos)"] == "15"  # pdq 10 + frame 5
    assert "Distinct image and video URLs" in totals
    labels = tab.eval_on_selector_all(
        "select[name=family] option", "os => os.map(o => o.textContent)"
    )
    assert "still from a listed video (vPDQ frame)" in labels and "vPDQ (video)" in labels
    screenshot(tab, "dashboard-media-all.png")

    tab.select_option("select[name=media]", "video")
    tab.click("#filters button[type=submit]")
    tab.wait_for_url(lambda url: "media=video" in url)
    ready(tab)
    assert _totals(tab)["Matches"] == "10"
    assert _totals(tab)["Distinct video URLs"].startswith("8")
    assert "only media: videos" in tab.inner_text("#period-info")
    countries = sorted(r["country"] for r in table(tab, "#country-table"))
    assert countries == ["DE", "NL"]  # FR's only find is a still: an image
    screenshot(tab, "dashboard-media-video.png")
    narrow(tab, "dashboard-media-video-390.png")
    assert watch.problems == []
