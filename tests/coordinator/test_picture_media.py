"""Issue 13: reports with video families are stored and counted in their own families; the
picture (and shifts, CSV) filter and split by media; bad families and media are a clear 422."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.ingest import ingest
from coordinator.picture import Picture, PictureFilter, build_picture, build_picture_raw
from protocol.hashes import ReportFamily
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import DAY_START, cell, envelope_bytes, make_report, make_token, register

F = ReportFamily
# node-a day 1: image pdq 5, video-md5 3, vpdq 2 (NL), vpdq-frame 4 (a still: an image)
# node-b day 1: image md5 6, vpdq 1; node-a day 2: video-sha256 7, pdq 2.
DAY1_A = [
    cell(family=F.PDQ, matches=5, distinct=4),
    cell(family=F.VIDEO_MD5, matches=3, distinct=2),
    cell(country="NL", asn=64502, hoster="Hoster B BV", family=F.VPDQ, matches=2, distinct=2),
    cell(family=F.VPDQ_FRAME, matches=4, distinct=3),
]
DAY1_B = [cell(family=F.MD5, matches=6, distinct=5), cell(family=F.VPDQ, matches=1, distinct=1)]
DAY2_A = [cell(family=F.VIDEO_SHA256, matches=7, distinct=7), cell(family=F.PDQ, matches=2)]
DAY2 = DAY_START + timedelta(days=1)
LATER = NOW + timedelta(days=1)


@pytest.fixture
def stored(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    for key, node, seq, start, cells in (
        (key_a, "node-a", 1, DAY_START, DAY1_A),
        (key_b, "node-b", 1, DAY_START, DAY1_B),
        (key_a, "node-a", 2, DAY2, DAY2_A),
    ):
        report = make_report(
            key, node, sequence=seq, created_at=LATER, period_start=start, cells=cells
        )
        with new_session(engine) as session:
            assert ingest(session, envelope_bytes(report, key), LATER).status == "accepted"
    return engine


def _picture(engine: Engine, **filters: object) -> Picture:
    with new_session(engine) as session:
        fast = build_picture(session, PictureFilter(**filters), NOW)  # type: ignore[arg-type]
        raw = build_picture_raw(session, PictureFilter(**filters), NOW)  # type: ignore[arg-type]
    assert fast == raw  # with or without a media filter, the rollups' answer is the cells'
    return fast


def _families(picture: Picture) -> dict[str, tuple[int, str]]:
    return {r.hash_family.value: (r.matches, r.media) for r in picture.by_family}


def test_video_families_are_counted_apart(stored: Engine) -> None:
    pic = _picture(stored)
    assert _families(pic) == {
        "pdq": (7, "image"),
        "md5": (6, "image"),
        "vpdq-frame": (4, "image"),
        "video-md5": (3, "video"),
        "vpdq": (3, "video"),
        "video-sha256": (7, "video"),
    }
    assert pic.totals.matches == 30
    assert (pic.totals.by_media.image, pic.totals.by_media.video) == (17, 13)
    assert pic.filters.media is None


def test_media_filter_keeps_only_that_media(stored: Engine) -> None:
    video = _picture(stored, media="video")
    assert set(_families(video)) == {"video-md5", "vpdq", "video-sha256"}
    assert video.totals.matches == 13
    assert (video.totals.by_media.image, video.totals.by_media.video) == (0, 13)
    assert {r.country: r.matches for r in video.by_country} == {"DE": 11, "NL": 2}
    assert [(r.matches) for r in video.by_period] == [6, 7]
    assert video.filters.media == "video"
    image = _picture(stored, media="image")
    assert set(_families(image)) == {"pdq", "md5", "vpdq-frame"}
    assert image.totals.matches == 17 and image.totals.by_media.video == 0
    assert "NL" not in {r.country for r in image.by_country}
    # Report-level counts cover every report in the period (they are not cells).
    assert (image.reports, video.reports) == (3, 3)


def test_media_and_family_filters_combine(stored: Engine) -> None:
    assert _picture(stored, media="video", hash_family=F.VPDQ).totals.matches == 3
    both = _picture(stored, media="video", hash_family=F.VPDQ_FRAME)
    assert both.totals.matches == 0 and not both.by_family  # a still is not a video
    assert _picture(stored, hash_family=F.VPDQ_FRAME).totals.matches == 4


@pytest.fixture
def client(stored: Engine) -> Iterator[TestClient]:
    token = make_token(stored, "admin", NOW)
    with TestClient(create_app(CoordinatorSettings(), engine=stored, clock=lambda: LATER)) as c:
        c.headers["authorization"] = f"Bearer {token}"
        yield c


def test_picture_api_media_filter_and_split(client: TestClient) -> None:
    body = client.get("/v1/picture", params={"media": "video"}).json()
    assert body["filters"]["media"] == "video"
    assert body["totals"]["matches"] == 13
    assert body["totals"]["by_media"] == {"image": 0, "video": 13}
    assert {r["hash_family"]: r["media"] for r in body["by_family"]} == {
        "video-sha256": "video",
        "video-md5": "video",
        "vpdq": "video",
    }
    body = client.get("/v1/picture", params={"hash_family": "vpdq-frame"}).json()
    assert body["totals"]["matches"] == 4
    assert body["by_family"][0]["media"] == "image"


def _error(response: object) -> tuple[int, str, str]:
    status = response.status_code  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    return status, error["code"], error["message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"hash_family": "video-phash"}, "hash_family"),
        ({"hash_family": "VPDQ"}, "hash_family"),
        ({"media": "audio"}, "media"),
        ({"media": ""}, "media"),
    ],
)
def test_bad_family_or_media_is_a_clear_422(
    client: TestClient, params: dict[str, str], named: str
) -> None:
    status, code, message = _error(client.get("/v1/picture", params=params))
    assert (status, code) == (422, "invalid_request")
    assert named in message


def test_shifts_and_csv_take_media(client: TestClient) -> None:
    span = {
        "before_start": "2026-11-23T00:00:00Z",
        "before_end": "2026-11-24T00:00:00Z",
        "after_start": "2026-11-24T00:00:00Z",
        "after_end": "2026-11-25T00:00:00Z",
    }
    shifts = client.get("/v1/picture/shifts", params={**span, "media": "video"}).json()
    assert shifts["media"] == "video"
    de = next(r for r in shifts["by_country"] if r["country"] == "DE")
    assert (de["matches_before"], de["matches_after"]) == (4, 7)  # video-md5 3 + vpdq 1; sha256
    status, code, _ = _error(client.get("/v1/picture/shifts", params={**span, "media": "x"}))
    assert (status, code) == (422, "invalid_request")
    text = client.get("/v1/picture.csv", params={"section": "by_family", "media": "image"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["hash_family"], r["media"]) for r in rows} == {
        ("pdq", "image"),
        ("md5", "image"),
        ("vpdq-frame", "image"),
    }


def test_openapi_lists_the_families_and_media(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()

    def enum_of(path: str, name: str) -> list[str]:
        (param,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
        schema = param["schema"]
        options = schema.get("anyOf", [schema])
        refs = [o for o in options if "$ref" in o or "enum" in o]
        (found,) = refs
        if "$ref" in found:
            found = spec["components"]["schemas"][found["$ref"].rsplit("/", 1)[1]]
        return list(found["enum"])

    families = [f.value for f in ReportFamily]
    for path in ("/v1/picture", "/v1/picture/shifts", "/v1/flows"):
        assert enum_of(path, "hash_family") == families, path
    assert enum_of("/v1/picture", "media") == ["image", "video"]
    assert enum_of("/v1/picture/shifts", "media") == ["image", "video"]


def test_coverage_takes_media(client: TestClient) -> None:
    # Coverage rows have no family: media, like hash_family, only narrows the matches.
    body = client.get("/v1/coverage", params={"media": "video"}).json()
    assert body["filters"]["media"] == "video"
    status, code, _ = _error(client.get("/v1/coverage", params={"media": "films"}))
    assert (status, code) == (422, "invalid_request")


def test_flows_take_media(client: TestClient) -> None:
    body = client.get("/v1/flows", params={"media": "video"}).json()
    assert (body["media"], body["hash_family"]) == ("video", None)
    status, code, message = _error(client.get("/v1/flows", params={"hash_family": "vpdq-x"}))
    assert (status, code) == (422, "invalid_request") and "hash_family" in message
