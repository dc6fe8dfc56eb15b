"""The demo world's videos (issue 13): what is placed, how pages embed it, what the web serves,
the lists the nodes import, and the expected picture by report family. Hashes come from the
function's own code and the node's own vPDQ comparison, independently of the builder's checks.
"""

from __future__ import annotations

import hashlib
import io
from functools import cache
from pathlib import Path

import pytest

from libra.demo import videos as videomaker
from libra.demo.checks import check_videos, expected_media_picture
from libra.demo.compare import compare_picture, expected_from_truth
from libra.demo.lists import node_list_families, write_node_lists
from libra.demo.policy import REMOVES_AFTER
from libra.demo.world import (
    DEFAULT_SEED,
    IMAGE_FORMS,
    KIND_BENIGN,
    KIND_EXACT,
    KIND_VARIANT,
    KIND_VIDEO_BENIGN,
    KIND_VIDEO_COPY,
    KIND_VIDEO_EXACT,
    KIND_VIDEO_STILL,
    VIDEO_FORMS,
    VIDEO_KINDS,
    NodePlan,
    World,
    WorldError,
    report_family,
)
from node.crawl.links import extract_links
from node.lists.vics import VicsImporter
from node.matching.vpdq_text import parse
from protocol.hashes import HashFamily, hamming
from worker_function.hashing import hash_image
from worker_function.video.decode import hash_video

SCALE = 0.1


@cache
def _video_world() -> World:
    return World.build(seed=DEFAULT_SEED, scale=SCALE, videos=True)


@pytest.fixture(scope="module")
def vworld() -> World:
    return _video_world()


def _frames(data: bytes) -> videomaker.Frames:
    return tuple((f.frame, f.timestamp, f.pdq, f.quality) for f in hash_video(data).video.frames)


def test_videos_leave_the_images_as_they_were(vworld: World) -> None:
    images_only = World.build(seed=DEFAULT_SEED, scale=SCALE, videos=False)
    assert images_only.videos == {}
    assert not any(p.kind in VIDEO_KINDS for p in images_only.placements)
    for placement in images_only.placements:
        key = (placement.site, placement.url_path)
        assert vworld.placement(key) == placement
        assert vworld.images[placement.image_id] == images_only.images[placement.image_id]
    assert vworld.known == images_only.known


def test_every_video_finding_is_placed(vworld: World) -> None:
    videos = [p for p in vworld.placements if p.kind in VIDEO_KINDS]
    assert len(vworld.videos) == videomaker.LISTED
    # Each listed video's exact bytes, every kind of copy, stills, and benign videos.
    exact = {p.base_id for p in videos if p.kind == KIND_VIDEO_EXACT}
    assert exact == set(vworld.videos)
    copies = {p.variant for p in videos if p.kind == KIND_VIDEO_COPY}
    assert copies == set(videomaker.COPY_KINDS)
    assert sum(p.kind == KIND_VIDEO_STILL for p in videos) >= 2
    assert sum(p.kind == KIND_VIDEO_BENIGN for p in vworld.placements) == videomaker.BENIGN
    # Only on hosters whose desks never remove (the history copies removed images only).
    assert all(REMOVES_AFTER.get(vworld.hoster_of(p.site).key) is None for p in videos)
    # Embedded in every video form; stills as images.
    forms: dict[str, set[str]] = {"video": set(), "still": set()}
    for page in vworld.pages:
        for ref in page.images:
            placement = vworld.placement((page.site, ref.target))
            if placement is None or placement.kind not in (*VIDEO_KINDS, KIND_VIDEO_BENIGN):
                continue
            forms["still" if placement.kind == KIND_VIDEO_STILL else "video"].add(ref.form)
    assert forms["video"] == set(VIDEO_FORMS)
    assert forms["still"] and forms["still"] <= set(IMAGE_FORMS)


def test_copies_match_and_benign_videos_do_not(vworld: World) -> None:
    listed = {i: _frames(data) for i, data in vworld.videos.items()}
    for placement in vworld.placements:
        data = vworld.images[placement.image_id]
        if placement.kind == KIND_VIDEO_EXACT:
            assert placement.base_id is not None
            assert data == vworld.videos[placement.base_id]
        elif placement.kind == KIND_VIDEO_COPY:
            assert placement.base_id is not None
            assert data != vworld.videos[placement.base_id]
            result = videomaker.vpdq_match(_frames(data), listed[placement.base_id])
            assert result.is_match, (placement.variant, result)
            assert result.compared_match_percent >= 80.0 and result.query_match_percent >= 80.0
            others = [f for i, fs in listed.items() if i != placement.base_id for f in fs]
            assert not videomaker.vpdq_match(_frames(data), tuple(others)).is_match
        elif placement.kind == KIND_VIDEO_STILL:
            assert placement.base_id is not None
            hashes = hash_image(data).hashes
            near = min(hamming(hashes.pdq, f[2]) for f in listed[placement.base_id])
            assert near <= 31 and hashes.pdq_quality >= 50
        elif placement.kind == KIND_VIDEO_BENIGN:
            frames = _frames(data)
            assert all(
                hamming(f[2], g[2]) > 31 for f in frames for fs in listed.values() for g in fs
            )


def test_trimmed_copies_are_shorter_and_still_match(vworld: World) -> None:
    trims = [p for p in vworld.placements if p.variant == videomaker.TRIM]
    assert trims
    for placement in trims:
        assert placement.base_id is not None
        copy = hash_video(vworld.images[placement.image_id]).video
        listed = hash_video(vworld.videos[placement.base_id]).video
        assert copy.duration <= listed.duration - videomaker.TRIM_SECONDS + 0.1
        assert len(copy.frames) < len(listed.frames)


def test_pages_embed_videos_as_the_crawler_reads_them(vworld: World) -> None:
    checked = 0
    for page in vworld.pages:
        wanted = {
            vworld.url(page.site, ref.target)
            for ref in page.images
            if (p := vworld.placement((page.site, ref.target))) is not None
            and (p.kind in (KIND_VIDEO_EXACT, KIND_VIDEO_COPY, KIND_VIDEO_BENIGN))
        }
        if not wanted:
            continue
        response = vworld.respond(page.site, page.path)
        found = extract_links(response.body.decode(), vworld.url(page.site, page.path))
        assert wanted <= set(found.videos)
        checked += 1
    assert checked >= 5


def test_the_web_serves_videos_with_their_content_types(vworld: World) -> None:
    types = set()
    for placement in vworld.placements:
        if placement.kind not in VIDEO_KINDS and placement.kind != KIND_VIDEO_BENIGN:
            continue
        response = vworld.respond(placement.site, placement.url_path)
        assert response.status == 200
        assert response.body == vworld.images[placement.image_id]
        ext = placement.url_path.rsplit(".", 1)[1]
        if placement.kind == KIND_VIDEO_STILL:
            assert (ext, response.content_type) == ("png", "image/png")
        else:
            assert response.content_type.startswith("video/")
            types.add(ext)
    assert types >= {"mp4", "mkv", "mov", "webm", "avi"}


def test_lists_carry_the_listed_videos_in_vics(vworld: World, tmp_path: Path) -> None:
    for plan in vworld.nodes:
        written = dict(write_node_lists(vworld, plan.node_id, tmp_path / plan.node_id))
        listed = dict(vworld.list_videos(plan.node_id))
        assert listed and set(listed) <= set(vworld.videos)
        records = list(VicsImporter().records(io.BytesIO(written["vics"].read_bytes())))
        by_record: dict[int, dict[str, str]] = {}
        for record in records:
            assert not hasattr(record, "reason"), record
            by_record.setdefault(record.line, {})[str(record.family)] = record.value
        assert len(by_record) == len(listed)
        for values, (_video_id, data) in zip(
            by_record.values(), sorted(listed.items()), strict=True
        ):
            assert values["sha256"] == hashlib.sha256(data).hexdigest()
            assert values["md5"] == hashlib.md5(data).hexdigest()
            assert [f.pdq for f in parse(values["vpdq"])] == [f[2] for f in _frames(data)]
        # The images' lists are unchanged by the videos.
        assert len(vworld.list_images(plan.node_id)) == len(
            [i for i in plan.known_ids if i in vworld.known]
        )


def test_report_families_of_each_kind() -> None:
    md5, pdq = HashFamily.MD5, HashFamily.PDQ
    assert report_family(KIND_EXACT, md5, pdq) == "md5"
    assert report_family(KIND_VARIANT, md5, pdq) == "pdq"
    assert report_family(KIND_VIDEO_EXACT, md5, pdq) == "video-sha256"
    assert report_family(KIND_VIDEO_COPY, md5, pdq) == "vpdq"
    assert report_family(KIND_VIDEO_STILL, md5, pdq) == "vpdq-frame"
    assert report_family(KIND_BENIGN, md5, pdq) == "pdq"


def test_expected_pictures_by_media(vworld: World) -> None:
    # Unfiltered it is the demo's expected picture (libra.demo.compare), cell for cell: the
    # video kinds under their video families there too.
    families = node_list_families(vworld)
    truth = vworld.truth()
    whole = expected_media_picture(vworld, truth, families)
    demo = expected_from_truth(truth, families)
    assert compare_picture(whole, demo).agrees
    assert {"video-sha256", "vpdq", "vpdq-frame"} <= {r["hash_family"] for r in demo["by_family"]}
    # The media split adds up, and the video cells are the video kinds' matches.
    image = expected_media_picture(vworld, truth, families, "image")
    video = expected_media_picture(vworld, truth, families, "video")
    assert whole["totals"]["matches"] == image["totals"]["matches"] + video["totals"]["matches"]
    kinds = [m.kind for ms in truth.per_node.values() for m in ms]
    assert video["totals"]["matches"] == sum(
        k in (KIND_VIDEO_EXACT, KIND_VIDEO_COPY) for k in kinds
    )
    assert {r["hash_family"] for r in video["by_family"]} == {"video-sha256", "vpdq"}
    stills = [r for r in image["by_family"] if r["hash_family"] == "vpdq-frame"]
    assert stills and stills[0]["matches"] == kinds.count(KIND_VIDEO_STILL)
    # The check accepts the truth and names a wrong count.
    full = {**whole, "totals": {**whole["totals"], "by_media": {"image": 0, "video": 0}}}
    full["totals"]["by_media"] = {
        "image": image["totals"]["matches"],
        "video": video["totals"]["matches"],
    }
    assert check_videos(vworld, truth, families, video, full).agrees
    wrong = {**full, "by_family": [dict(r) for r in full["by_family"]]}
    for row in wrong["by_family"]:
        if row["hash_family"] == "vpdq-frame":
            row["matches"] += 1
    differences = check_videos(vworld, truth, families, video, wrong).differences
    assert differences == [
        f"vpdq-frame matches: coordinator {stills[0]['matches'] + 1}, truth {stills[0]['matches']}"
    ]


def test_a_node_listing_an_unknown_item_is_refused(vworld: World) -> None:
    plan = vworld.nodes[0]
    stray = NodePlan(plan.node_id, plan.country, plan.seeds, plan.known_ids | {"video-99"})
    with pytest.raises(WorldError, match="video-99"):
        World(
            hosters=vworld.hosters,
            sites=vworld.sites,
            pages=vworld.pages,
            placements=vworld.placements,
            nodes=[stray, *vworld.nodes[1:]],
            images=vworld.images,
            known=vworld.known,
            redirects=vworld.redirects,
        )


def test_video_bytes_are_the_same_every_time() -> None:
    """The same seed gives the same bytes for every listed video, copy kind and benign video
    (muxers write no random ids: videogen.BITEXACT), so a rebuilt world equals the first."""
    first, second = (
        videomaker.listed_videos(DEFAULT_SEED, 1),
        videomaker.listed_videos(DEFAULT_SEED, 1),
    )
    assert [v.data for v in first] == [v.data for v in second]
    for kind in videomaker.COPY_KINDS:
        assert videomaker.make_copy(first[0], kind) == videomaker.make_copy(second[0], kind), kind
    assert videomaker.benign_videos(DEFAULT_SEED, first) == videomaker.benign_videos(
        DEFAULT_SEED, second
    )
