"""End to end (issue 13): a small demo world with videos, one period, as real processes on
loopback. The nodes import VICS lists of the listed videos, crawl pages that embed the copies
with <video src>, <source>, og:video and links, send the videos and stills to the function and
report; the coordinator's video cells (GET /v1/picture?media=video), its vpdq-frame cells and
its split by media must equal the world's truth, and the coordinator stores no hash value.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from rich.console import Console

from libra.demo.budget import DemoBudget
from libra.demo.checks import check_videos, expected_media_picture
from libra.demo.compare import compare_picture
from libra.demo.history import HOTSPOT, History, day_periods
from libra.demo.labgeo import write_lab_geoip
from libra.demo.lists import node_list_families
from libra.demo.runner import CRAWL_AT, Federation, notice_moment
from libra.demo.summary import print_videos
from libra.demo.world import (
    DEFAULT_SEED,
    KIND_VIDEO_COPY,
    KIND_VIDEO_EXACT,
    KIND_VIDEO_STILL,
    World,
)
from tests.demo.conftest import BACKSTOP_MARGIN_S

pytestmark = pytest.mark.e2e

SCALE = 0.1


@cache
def _video_history() -> History:
    """The static world with videos as a one-period history (nothing delayed or moved). The
    hotspot hoster is added without sites: the federation gives every desk a webhook. Rebuilt
    from its parts as libra.demo.history does, so the world finds its videos by itself."""
    base = World.build(seed=DEFAULT_SEED, scale=SCALE, videos=True)
    world = World(
        hosters=[*base.hosters, HOTSPOT],
        sites=base.sites,
        pages=base.pages,
        placements=base.placements,
        nodes=base.nodes,
        images=base.images,
        known=base.known,
        redirects=base.redirects,
        seed=base.seed,
        scale=base.scale,
    )
    assert world.videos == base.videos
    return History(world, {}, periods=1)


def _timeout() -> float:
    history = _video_history()
    return DemoBudget.for_world(history.world, 1).total_s + BACKSTOP_MARGIN_S


@pytest.mark.timeout(_timeout())
def test_video_cells_equal_the_truth(tmp_path: Path) -> None:
    history = _video_history()
    world = history.world
    truth = world.truth()
    families = node_list_families(world)
    kinds = {m.kind for matches in truth.per_node.values() for m in matches}
    # The world expects every video finding: exact bytes, vPDQ copies and stills.
    assert {KIND_VIDEO_EXACT, KIND_VIDEO_COPY, KIND_VIDEO_STILL} <= kinds

    console = Console(file=io.StringIO(), width=80)
    federation = Federation(history, tmp_path / "demo", console)
    (period,) = day_periods(datetime.now(UTC), 1)
    try:
        lab_file = federation.start_world()
        geo = write_lab_geoip(world, federation.workdir / "geoip")
        federation.start_function(lab_file)
        federation.start_coordinator()
        federation.enroll_nodes(lab_file, geo)
        federation.import_lists()
        federation.live.set_epoch(0)
        federation.crawl_all(period[0] + CRAWL_AT)
        federation.notices_and_reports(0, notice_moment(period[0], 0), period)
        picture = federation.picture(period)
        span = {
            "period_start": period[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "period_end": period[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        video_picture = federation.get("/v1/picture", {**span, "media": "video"})
    finally:
        federation.stop()

    check = check_videos(world, truth, families, video_picture, picture)
    assert check.agrees, check.differences
    # Not vacuous: video cells in two countries at least, every video family, stills found.
    video_families = {r["hash_family"] for r in video_picture["by_family"]}
    assert video_families == {"video-sha256", "vpdq"}
    assert len(video_picture["by_country"]) >= 2
    assert check.stills[0] > 0 and check.by_media["video"][0] > 0
    # The whole picture (images and videos) equals the truth too, family by family.
    whole = compare_picture(picture, expected_media_picture(world, truth, families))
    assert whole.agrees, whole.differences
    # A changed video count is caught.
    tampered = json.loads(json.dumps(video_picture))
    tampered["by_hoster"][0]["matches"] += 1
    assert not check_videos(world, truth, families, tampered, picture).agrees

    print_videos(console, check)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "vpdq" in text and "DIFFERS" not in text

    # Nothing but aggregates reached the coordinator: no URL, host or video hash value.
    stored = (federation.workdir / "coordinator" / "coordinator.sqlite3").read_bytes()
    assert b".test" not in stored and b"http://" not in stored
    for path in (federation.workdir / "nodes").rglob("lists/videos-vics.json"):
        for media in json.loads(path.read_text())["value"]:
            for value in (media["MD5"], media["SHA256"]):
                assert value.encode() not in stored and value.upper().encode() not in stored
