"""Issue 13 end to end on loopback: the crawler sends videos to a real function, the cycle
matches them against listed videos (exact, vPDQ) and finds a still of a listed video, and the
reporter counts each under its video family.

Everything is generated here (libra.demo.videogen: moving shapes), held in memory and served by
a loopback web; the function is the real app in-process (uvicorn on 127.0.0.1).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from libra.demo.videogen import _Scene, make_video
from node.attribution.attributor import Attributor
from node.config import NodeSettings
from node.crawl.crawler import Crawler, CrawlLimits
from node.crawl.limits import limits_from
from node.cycle import CycleSummary, _analysed_so_far, run
from node.dispatch import FunctionClient
from node.federation.report_items import item_identities
from node.federation.reporter import build_cells, build_denominators
from node.lists.base import get_importer
from node.lists.store import import_list
from node.matching.matcher import MatchIndex
from node.matching.video_lists import video_index_from_db, vpdq_settings
from node.matching.vpdq import VpdqSettings
from node.matching.vpdq_text import format_lines
from node.models import CrawlCycle, ListEntry, Sighting
from node.net import make_client
from protocol.hashes import HashFamily
from protocol.theta import item_identity
from tests.function.helpers import FunctionServer
from tests.node.conftest import write_geoip
from worker_function.app import create_app as create_function_app
from worker_function.settings import FunctionSettings
from worker_function.video.decode import hash_video

from .test_crawl_kit import Route, Web, html, synthetic_web

HOST = "site-a.test"
SEED = 3
FEDERATION_KEY = b"k" * 32


@dataclass(frozen=True)
class Videos:
    original: bytes  # listed (its vPDQ and its MD5)
    reencoded: bytes  # same pictures, other size, codec and container
    still: bytes  # PNG of the frame at 1 s
    unrelated: bytes  # another seed


@pytest.fixture(scope="module")
def videos() -> Videos:
    scene = _Scene(320, 180, SEED)
    buffer = io.BytesIO()
    Image.fromarray(scene.draw(1.0)).save(buffer, format="PNG")
    return Videos(
        original=make_video(320, 180, seconds=4.0, fps=10, container="mp4", seed=SEED),
        reencoded=make_video(256, 144, seconds=4.0, fps=10, container="webm", seed=SEED),
        still=buffer.getvalue(),
        unrelated=make_video(320, 180, seconds=4.0, fps=10, container="mp4", seed=SEED + 40),
    )


def _serve(web: Web, videos: Videos) -> None:
    def page(body: str) -> Route:
        return html(f"<html><body>{body}</body></html>")

    site = web.a
    site.add(HOST, "/robots.txt", Route(content_type="text/plain", body=b"User-agent: *\n"))
    site.add(
        HOST,
        "/",
        page('<a href="/p1">1</a><a href="/p2">2</a><a href="/p3">3</a><a href="/p4">4</a>'),
    )
    site.add(HOST, "/p1", page('<video src="/v/original.mp4"></video>'))
    site.add(HOST, "/p2", page('<video><source src="/v/copy.webm"></video>'))
    site.add(HOST, "/p3", page('<img src="/i/still.png">'))
    site.add(HOST, "/p4", page('<video src="/v/other.mp4"></video>'))
    for path, body, kind in (
        ("/v/original.mp4", videos.original, "video/mp4"),
        ("/v/copy.webm", videos.reencoded, "video/webm"),
        ("/i/still.png", videos.still, "image/png"),
        ("/v/other.mp4", videos.unrelated, "video/mp4"),
    ):
        site.add(HOST, path, Route(content_type=kind, body=body))


def _list_original(engine: Engine, original: bytes) -> None:
    """The original's vPDQ (vpdq format, as `libra hash --vpdq-text` prints it) and its MD5
    (an HMA video_md5 row): two separate list records."""
    digest = hash_video(original)
    text = format_lines((f.frame, f.timestamp, f.pdq, f.quality) for f in digest.video.frames)
    summary = import_list(
        engine, get_importer("vpdq"), io.StringIO(text), source="lab-videos", version="1"
    )
    assert summary.imported == 1, summary
    row = f"video_md5,{digest.hashes.md5},lab,cat,\n"
    header = "signal_type,signal_str,collab,category,tags\n"
    summary = import_list(
        engine, get_importer("hma"), io.StringIO(header + row), source="lab-md5", version="1"
    )
    assert summary.imported == 1, summary


@pytest.fixture
def web(videos: Videos) -> Iterator[Web]:
    with synthetic_web() as web:
        _serve(web, videos)
        yield web


async def _cycle(
    engine: Engine,
    web: Web,
    tmp_path: Path,
    limits: CrawlLimits,
    vpdq: VpdqSettings | None = None,
) -> CycleSummary:
    settings = FunctionSettings(require_auth=False, decode_isolation="thread", lab=None)
    country_db, asn_db = write_geoip(tmp_path)
    with FunctionServer(create_function_app(settings, lab=web.lab)) as server:
        function = FunctionClient(server.url, retries=0, timeout_s=120)
        try:
            async with make_client(web.lab, timeout=10.0, user_agent=limits.user_agent) as client:
                with Attributor(country_db, asn_db) as attributor:
                    return await run(
                        engine=engine,
                        crawler=Crawler(client, limits),
                        function=function,
                        index=MatchIndex.from_db(engine),
                        attributor=attributor,
                        seeds=[web.url(HOST, "/")],
                        concurrency=2,
                        videos=video_index_from_db(engine, vpdq),
                    )
        finally:
            await function.aclose()


def _sightings(engine: Engine) -> dict[str, tuple[str, int]]:
    with Session(engine) as session:
        rows = session.exec(select(Sighting)).all()
        return {s.url.rsplit("/", 1)[-1]: (s.family, s.entry_id) for s in rows}


def _entry_ids(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.exec(select(ListEntry)).all()
        return {r.family: r.id for r in rows if r.id is not None and r.media == "video"}


async def test_videos_are_hashed_matched_and_reported(
    engine: Engine, web: Web, videos: Videos, tmp_path: Path
) -> None:
    _list_original(engine, videos.original)
    # A listed IMAGE equal to the unrelated video's best frame: a video is never matched
    # through the image families, so this stays unmatched (no "pdq" sighting of a video).
    best_frame = hash_video(videos.unrelated).hashes.pdq
    imported = import_list(
        engine,
        get_importer("plain", HashFamily.PDQ),
        io.StringIO(best_frame + "\n"),
        source="lab-images",
        version="1",
    )
    assert imported.imported == 1, imported
    summary = await _cycle(engine, web, tmp_path, CrawlLimits(max_pages=10))
    assert summary.images_found == 4 and summary.videos_found == 3
    assert summary.analysis_failures == 0, summary.image_failures
    # A hashed video is one analysed item in images_hashed (docs/protocol.md).
    assert summary.images_hashed == 4 and summary.videos_hashed == 3
    entries = _entry_ids(engine)
    assert _sightings(engine) == {
        # exact bytes: the MD5 entry (exact beats vPDQ)
        "original.mp4": ("video-md5", entries["md5"]),
        # re-encoded, resized, other container: vPDQ against the listed frames
        "copy.webm": ("vpdq", entries["vpdq"]),
        # a still of a listed video's frame, found as an image
        "still.png": ("vpdq-frame", entries["vpdq"]),
    }  # the unrelated video matches nothing
    assert summary.matches == 3

    with Session(engine) as session:
        cells = build_cells(session, [summary.cycle_id], FEDERATION_KEY)
        denominators = build_denominators(session, [summary.cycle_id])
        identities = item_identities(session, [entries["vpdq"]])
        vpdq_value = session.get(ListEntry, entries["vpdq"])
        assert vpdq_value is not None
    counts = {cell.hash_family.value: (cell.matches, cell.distinct, cell.items) for cell in cells}
    assert counts == {"video-md5": (1, 1, 1), "vpdq": (1, 1, 1), "vpdq-frame": (1, 1, 1)}
    assert denominators.images_hashed == 4
    # A vpdq entry alone in its record is named by its own value (its pytx string).
    assert identities == {entries["vpdq"]: item_identity("vpdq", vpdq_value.value)}


async def test_videos_off_sends_no_video(
    engine: Engine, web: Web, videos: Videos, tmp_path: Path
) -> None:
    _list_original(engine, videos.original)
    summary = await _cycle(engine, web, tmp_path, CrawlLimits(max_pages=10, videos=False))
    assert (summary.images_found, summary.videos_found, summary.videos_hashed) == (1, 0, 0)
    assert _sightings(engine) == {"still.png": ("vpdq-frame", _entry_ids(engine)["vpdq"])}
    assert not [p for p in web.recorder.paths(HOST) if p.startswith("/v/")]


def test_setting_reaches_the_crawler() -> None:
    base = {"node_id": "lab-node", "country": "DE"}
    assert limits_from(NodeSettings.model_validate(base)).videos is True
    off = NodeSettings.model_validate(base | {"crawl": {"videos": False}})
    assert limits_from(off).videos is False


def test_no_vpdq_entries_no_index(engine: Engine) -> None:
    assert video_index_from_db(engine) is None


async def test_cycle_row_and_a_resumed_cycle_keep_the_video_counts(
    engine: Engine, web: Web, videos: Videos, tmp_path: Path
) -> None:
    """The cycle row saves the video part of its counts, and the counts a resumed cycle starts
    from (rebuilt from its recorded URLs) count the videos too."""
    summary = await _cycle(engine, web, tmp_path, CrawlLimits(max_pages=10))
    with Session(engine) as session:
        row = session.get(CrawlCycle, summary.cycle_id)
        assert row is not None
        assert (row.videos_found, row.videos_hashed) == (3, 3)
    _urls, restored = _analysed_so_far(engine, summary.cycle_id)
    assert (restored.images_found, restored.videos_found, restored.videos_hashed) == (4, 3, 3)


def test_vpdq_thresholds_are_node_settings() -> None:
    base = {"node_id": "lab-node", "country": "DE"}
    assert vpdq_settings(NodeSettings.model_validate(base).match) == VpdqSettings()
    strict = NodeSettings.model_validate(
        base
        | {
            "match": {
                "vpdq_max_distance": 10,
                "vpdq_min_quality": 80,
                "vpdq_query_match_percent": 95.0,
                "vpdq_compared_match_percent": 60.0,
            }
        }
    )
    assert vpdq_settings(strict.match) == VpdqSettings(10, 80, 95.0, 60.0)
    with pytest.raises(ValidationError, match="vpdq_query_match_percent"):
        NodeSettings.model_validate(base | {"match": {"vpdq_query_match_percent": 101}})


async def test_strict_vpdq_settings_refuse_the_reencoded_copy(
    engine: Engine, web: Web, videos: Videos, tmp_path: Path
) -> None:
    """The thresholds reach the comparison: at distance 0 the re-encoded copy's frames differ
    from the listed ones, so it is no longer a vPDQ match (the exact copy still is)."""
    _list_original(engine, videos.original)
    await _cycle(engine, web, tmp_path, CrawlLimits(max_pages=10), VpdqSettings(max_distance=0))
    found = _sightings(engine)
    assert "copy.webm" not in found
    assert found["original.mp4"][0] == "video-md5"
