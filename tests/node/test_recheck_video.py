"""Re-checking noticed videos and stills (issue 13): a copy found by vPDQ, or a still found as
a frame of a listed video (``vpdq-frame``), is looked for the way the crawl found it, so a
copy that is still online stays ``present``; a video that is gone or replaced is removed.

The list is a synthetic video (random frame PDQs, nothing decoded); the function is scripted.
"""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.config import NoticeSettings
from node.dispatch import AnalyzeFailure
from node.lists.base import get_importer
from node.lists.store import import_list
from node.matching.matcher import MatchIndex
from node.matching.media_match import best_matches
from node.matching.video_lists import video_index_from_db
from node.matching.vpdq import FrameTuple
from node.matching.vpdq_text import format_lines
from node.models import ListEntry
from node.notices import recheck as recheck_module
from node.notices.models import CLOSED, SENT, Notice, NoticeUrl
from node.notices.recheck import classify, recheck
from protocol.models import HashResult, ImageHashes, VideoFrame, VideoHashes
from tests.node.conftest import flip_bits, image_hashes, rand_hex

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=1)
FRAMES = 12


class Scripted:
    """The function: one answer per URL."""

    def __init__(self, answers: dict[str, HashResult | AnalyzeFailure]) -> None:
        self.answers = answers

    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure:
        return self.answers[url]


def _frames(rng: random.Random) -> list[FrameTuple]:
    return [(n, float(n), rand_hex(rng, 256), 100) for n in range(FRAMES)]


def _near(frames: list[FrameTuple], rng: random.Random) -> list[FrameTuple]:
    """A re-encode: every frame's PDQ a few bits off (well inside the vPDQ distance)."""
    return [(n, t, flip_bits(pdq, rng.sample(range(256), 6)), q) for n, t, pdq, q in frames]


def _video(url: str, frames: list[FrameTuple], hashes: ImageHashes) -> HashResult:
    return HashResult(
        url=url,
        final_url=url,
        server_ip="127.0.1.10",
        format="webm",
        width=320,
        height=180,
        bytes=5000,
        hashes=hashes,
        video=VideoHashes(
            duration=float(len(frames)),
            frames_decoded=len(frames),
            frame_interval=1.0,
            frames=[VideoFrame(frame=n, timestamp=t, pdq=p, quality=q) for n, t, p, q in frames],
        ),
    )


def _image(url: str, hashes: ImageHashes) -> HashResult:
    return HashResult(
        url=url,
        final_url=url,
        server_ip="127.0.1.10",
        format="PNG",
        width=320,
        height=180,
        bytes=1000,
        hashes=hashes,
    )


def _list(engine: Engine, frames: list[FrameTuple], md5: str, sha256: str) -> dict[str, int]:
    """A listed video (vPDQ), a listed video MD5 and a listed image SHA-256: their entry ids."""
    vpdq = import_list(
        engine, get_importer("vpdq"), io.StringIO(format_lines(frames)), source="v", version="1"
    )
    assert vpdq.imported == 1, vpdq
    header = "signal_type,signal_str,collab,category,tags\n"
    rows = f"video_md5,{md5},lab,cat,\nsha256,{sha256},lab,cat,\n"
    exact = import_list(
        engine, get_importer("hma"), io.StringIO(header + rows), source="e", version="1"
    )
    assert exact.imported == 2, exact
    with Session(engine) as session:
        ids = {e.family: e.id for e in session.exec(select(ListEntry)).all()}
    assert set(ids) == {"vpdq", "md5", "sha256"}, ids
    return {family: entry_id for family, entry_id in ids.items() if entry_id is not None}


def _notice(engine: Engine, urls: list[tuple[str, int, str]]) -> int:
    """A sent notice naming ``urls`` (url, entry id, report family)."""
    with Session(engine) as session, session.begin():
        notice = Notice(
            country="DE",
            asn=64500,
            hoster="Hoster A",
            state=SENT,
            notices_sent=1,
            first_sent_at=T0,
            last_sent_at=T0,
        )
        session.add(notice)
        session.flush()
        assert notice.id is not None
        for url, entry_id, family in urls:
            session.add(
                NoticeUrl(
                    notice_id=notice.id,
                    url=url,
                    entry_id=entry_id,
                    family=family,
                    seen_at=T0,
                    first_notice_at=T0,
                )
            )
        return notice.id


def _outcomes(engine: Engine) -> dict[str, tuple[str | None, datetime | None]]:
    with Session(engine) as session:
        rows = session.exec(select(NoticeUrl).order_by(col(NoticeUrl.id))).all()
        return {u.url: (u.last_outcome, u.removed_at) for u in rows}


@pytest.fixture
def listed(engine: Engine) -> tuple[list[FrameTuple], ImageHashes, ImageHashes, dict[str, int]]:
    rng = random.Random(13)
    frames = _frames(rng)
    video_bytes, image = image_hashes(rng), image_hashes(rng)
    ids = _list(engine, frames, video_bytes.md5, image.sha256)
    return frames, video_bytes, image, ids


async def test_online_video_copies_and_stills_stay_present(
    engine: Engine,
    listed: tuple[list[FrameTuple], ImageHashes, ImageHashes, dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames, video_bytes, image, ids = listed
    rng = random.Random(14)
    still = image_hashes(rng, pdq=flip_bits(frames[5][2], [1, 40, 99]), pdq_quality=90)
    urls = {
        "http://a.test/v/copy.webm": (ids["vpdq"], "vpdq"),
        "http://a.test/i/still.png": (ids["vpdq"], "vpdq-frame"),
        "http://a.test/v/same.mp4": (ids["md5"], "video-md5"),
        "http://a.test/i/listed.png": (ids["sha256"], "sha256"),
        "http://a.test/v/gone.mkv": (ids["vpdq"], "vpdq"),
        "http://a.test/v/replaced.mov": (ids["vpdq"], "vpdq"),
        "http://a.test/i/replaced.png": (ids["vpdq"], "vpdq-frame"),
        "http://a.test/v/other-bytes.mp4": (ids["md5"], "video-md5"),
    }
    notice_id = _notice(engine, [(url, e, f) for url, (e, f) in urls.items()])
    function = Scripted(
        {
            # Still online: a re-encode (other bytes, near frames), a still, the same bytes.
            "http://a.test/v/copy.webm": _video(
                "http://a.test/v/copy.webm", _near(frames, rng), image_hashes(rng)
            ),
            "http://a.test/i/still.png": _image("http://a.test/i/still.png", still),
            "http://a.test/v/same.mp4": _video(
                "http://a.test/v/same.mp4", _frames(rng), video_bytes
            ),
            "http://a.test/i/listed.png": _image("http://a.test/i/listed.png", image),
            # Removed: 404, an unrelated video, an unrelated image, other bytes of a video.
            "http://a.test/v/gone.mkv": AnalyzeFailure(
                "http://a.test/v/gone.mkv", "upstream_status", "upstream returned HTTP 404", 502
            ),
            "http://a.test/v/replaced.mov": _video(
                "http://a.test/v/replaced.mov", _frames(rng), image_hashes(rng)
            ),
            "http://a.test/i/replaced.png": _image(
                "http://a.test/i/replaced.png", image_hashes(rng)
            ),
            "http://a.test/v/other-bytes.mp4": _video(
                "http://a.test/v/other-bytes.mp4", _frames(rng), image_hashes(rng)
            ),
        }
    )
    builds: list[object] = []

    def counted(*args: object, **kwargs: object) -> object:
        builds.append(args)
        return video_index_from_db(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(recheck_module, "video_index_from_db", counted)
    summary = await recheck(engine, NoticeSettings(), function, MatchIndex.from_db(engine), LATER)
    assert len(builds) == 1  # one VideoIndex for the whole run
    seen = _outcomes(engine)
    for url in (
        "http://a.test/v/copy.webm",
        "http://a.test/i/still.png",
        "http://a.test/v/same.mp4",
        "http://a.test/i/listed.png",
    ):
        assert seen[url] == ("present", None), url
    assert seen["http://a.test/v/gone.mkv"] == ("gone", LATER)
    for url in (
        "http://a.test/v/replaced.mov",
        "http://a.test/i/replaced.png",
        "http://a.test/v/other-bytes.mp4",
    ):
        assert seen[url] == ("changed", LATER), url
    assert summary.outcomes == {"present": 4, "gone": 1, "changed": 3}
    assert summary.removed == 4 and summary.closed == []  # present URLs keep it open

    # Next day the copies are taken down: now the notice closes.
    down = AnalyzeFailure("u", "upstream_status", "upstream returned HTTP 410", 502)
    summary = await recheck(
        engine,
        NoticeSettings(),
        Scripted(dict.fromkeys(urls, down)),
        MatchIndex.from_db(engine),
        LATER + timedelta(days=1),
    )
    assert summary.checked == 4 and summary.closed == [notice_id]
    with Session(engine) as session:
        notice = session.get(Notice, notice_id)
        assert notice is not None and notice.state == CLOSED


async def test_no_video_index_without_video_notices(
    engine: Engine,
    listed: tuple[list[FrameTuple], ImageHashes, ImageHashes, dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Re-checking images of an image list costs what it did before videos existed."""
    _, _, image, ids = listed
    _notice(engine, [("http://a.test/i/listed.png", ids["sha256"], "sha256")])

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("no video notice: the VideoIndex must not be built")

    monkeypatch.setattr(recheck_module, "video_index_from_db", forbidden)
    function = Scripted({"http://a.test/i/listed.png": _image("http://a.test/i/listed.png", image)})
    summary = await recheck(engine, NoticeSettings(), function, MatchIndex.from_db(engine), LATER)
    assert summary.outcomes == {"present": 1}


def test_classify_one_video_result(
    engine: Engine,
    listed: tuple[list[FrameTuple], ImageHashes, ImageHashes, dict[str, int]],
) -> None:
    frames, _, _, ids = listed
    rng = random.Random(15)
    videos = video_index_from_db(engine)
    index = MatchIndex.from_db(engine)
    copy = _video("u", _near(frames, rng), image_hashes(rng))
    seen = classify(copy, ids["vpdq"], index, videos=videos, video_entry=True)
    assert seen.outcome == "present"
    # Without the listed videos (the old re-check) the same copy looked removed.
    assert classify(copy, ids["vpdq"], index).outcome == "changed"
    other = _video("u", _frames(rng), image_hashes(rng))
    assert classify(other, ids["vpdq"], index, videos=videos, video_entry=True).outcome == (
        "changed"
    )


def test_best_matches_route_images_stills_and_videos(
    engine: Engine,
    listed: tuple[list[FrameTuple], ImageHashes, ImageHashes, dict[str, int]],
) -> None:
    """node.matching.media_match.best_matches (the crawl cycle's ``_match`` and the re-check
    use it): an image by its hashes, a still as a frame of a listed video, a video by its
    exact bytes before vPDQ, and nothing for unrelated items."""
    frames, video_bytes, image, ids = listed
    rng = random.Random(16)
    index, videos = MatchIndex.from_db(engine), video_index_from_db(engine)
    results = [
        _image("a", image),
        _image("b", image_hashes(rng, pdq=flip_bits(frames[2][2], [3, 70]), pdq_quality=80)),
        _image("c", image_hashes(rng)),
        _video("d", _frames(rng), video_bytes),
        _video("e", _near(frames, rng), image_hashes(rng)),
        _video("f", _frames(rng), image_hashes(rng)),
    ]
    ours = best_matches(index, videos, results)
    assert [None if m is None else (m[0].entry_id, m[1]) for m in ours] == [
        (ids["sha256"], "sha256"),
        (ids["vpdq"], "vpdq-frame"),
        None,
        (ids["md5"], "video-md5"),
        (ids["vpdq"], "vpdq"),
        None,
    ]
