"""The listed-video index (node.matching.video_index): its answers equal a vPDQ comparison
against every listed video, and a frame lookup equals a scan of every listed frame.

Frames are random PDQ values (seeded), with planted near-duplicates of query frames at
distances on both sides of the frame distance.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.matching.video_index import VideoIndex, VideoMatch
from node.matching.vpdq import Frame, FrameTuple, VpdqSettings, compare, distinct_frames
from protocol.hashes import InvalidHash

Videos = dict[int, list[FrameTuple]]


def rand_pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def flip(pdq: str, bits: int, rng: random.Random) -> str:
    mask = sum(1 << b for b in rng.sample(range(256), bits))
    return f"{int(pdq, 16) ^ mask:064x}"


def clip(rng: random.Random, n: int, quality: int = 100) -> list[FrameTuple]:
    """A video of ``n`` frames: a few scenes, each a base hash drifting by a few bits."""
    frames: list[FrameTuple] = []
    base = rand_pdq(rng)
    for i in range(n):
        if rng.random() < 0.2:
            base = rand_pdq(rng)
        frames.append(Frame(i, i / 30, flip(base, rng.randrange(0, 6), rng), quality))
    return frames


def copy_of(frames: list[FrameTuple], bits: int, rng: random.Random) -> list[FrameTuple]:
    """A re-encoded copy: every frame moved by up to ``bits`` bits, some frames dropped."""
    return [
        Frame(f[0], f[1], flip(f[2], rng.randrange(0, bits + 1), rng), f[3])
        for f in frames
        if rng.random() < 0.9
    ]


def brute_force(query: list[FrameTuple], videos: Videos, s: VpdqSettings) -> list[VideoMatch]:
    found = [VideoMatch(v, compare(query, frames, s)) for v, frames in videos.items()]
    return sorted(
        (m for m in found if m.result.is_match),
        key=lambda m: (-m.result.compared_match_percent, -m.result.query_match_percent, m.video_id),
    )


def brute_frames(
    pdq: str, quality: int, videos: Videos, s: VpdqSettings
) -> list[tuple[int, int, int]]:
    """(distance, video, first nearest frame) of every video with a frame within reach."""
    if quality < s.min_quality:
        return []
    best: dict[int, tuple[int, int, int]] = {}
    for video_id, frames in videos.items():
        for f in distinct_frames(frames, s.min_quality):
            d = (int(f.pdq, 16) ^ int(pdq, 16)).bit_count()
            if d <= s.max_distance:
                held = best.get(video_id)
                if held is None or (d, f.number) < (held[0], held[2]):
                    best[video_id] = (d, video_id, f.number)
    return sorted(best.values())


def world(seed: int, n_videos: int) -> tuple[Videos, list[list[FrameTuple]]]:
    """Listed videos, and queries: copies of listed videos at 0..40 bits per frame, a copy
    spliced with new material, and unrelated videos."""
    rng = random.Random(seed)
    videos: Videos = {}
    for v in range(n_videos):
        videos[1000 + 7 * v] = clip(rng, rng.randrange(0, 15), rng.choice([100, 100, 60, 30]))
    queries = []
    for _ in range(4):
        source = videos[rng.choice(list(videos))]
        queries.append(copy_of(source, rng.choice([0, 4, 12, 31, 40]), rng))
    source = videos[rng.choice(list(videos))]
    queries.append(source[: len(source) // 2] + clip(rng, rng.randrange(0, 8)))
    queries.append(clip(rng, 10))
    # A listed video that shares one frame with another one (a reused intro).
    if len(videos) >= 2:
        a, b = rng.sample(list(videos), 2)
        if videos[a]:
            videos[b] = [*videos[b], Frame(500, 50.0, videos[a][0][2], 100)]
    return videos, queries


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32),
    n_videos=st.integers(1, 25),
    max_distance=st.sampled_from([0, 8, 31, 40]),
    min_quality=st.sampled_from([0, 50]),
    thresholds=st.sampled_from([(80.0, 80.0), (0.0, 80.0), (0.0, 0.0), (50.0, 100.0)]),
    merge_at=st.sampled_from([4096, 8]),
)
def test_index_equals_brute_force(
    seed: int,
    n_videos: int,
    max_distance: int,
    min_quality: int,
    thresholds: tuple[float, float],
    merge_at: int,
) -> None:
    s = VpdqSettings(max_distance, min_quality, *thresholds)
    videos, queries = world(seed, n_videos)
    items = list(videos.items())
    # Half built at once, half added afterwards (the MultiIndex tail, merged when merge_at is
    # small), then a few removed and one replaced: answers must not depend on the history.
    index = VideoIndex.build(items[: len(items) // 2], s, merge_at=merge_at)
    index.add(items[len(items) // 2 :])
    rng = random.Random(seed + 1)
    for video_id in rng.sample(list(videos), len(videos) // 4):
        assert index.remove([video_id]) == 1
        del videos[video_id]
    replaced = rng.choice(list(videos))
    videos[replaced] = queries[0][:] if queries else []
    index.add([(replaced, videos[replaced])])
    assert len(index) == len(videos)

    got = index.match_many(queries)
    for query, found in zip(queries, got, strict=True):
        assert found == brute_force(query, videos, s)
    for query in queries:
        for f in query[:4]:
            for quality in (f[3], 49):
                hits = index.match_frame(f[2], quality)
                assert [(m.distance, m.video_id, m.frame) for m in hits] == brute_frames(
                    f[2], quality, videos, s
                )


def test_planted_copy_is_found_and_unrelated_is_not() -> None:
    rng = random.Random(11)
    videos = {v: clip(rng, 30) for v in range(200)}
    index = VideoIndex.build(videos.items())
    distinct = sum(len(distinct_frames(f)) for f in videos.values())
    assert (len(index), index.frame_count) == (200, distinct)
    assert 5000 < distinct < 6000  # some frames repeat a hash within their video
    copy = copy_of(videos[42], 8, rng)
    unrelated = clip(rng, 30)
    found, none = index.match_many([copy, unrelated])
    assert [m.video_id for m in found] == [42]
    assert found[0].result.is_match and found[0].result.query_match_percent == 100.0
    assert none == []
    assert index.compare_many([unrelated]) == [[]]  # no candidate at all


def test_candidates_that_fail_the_thresholds_are_reported_by_compare_many() -> None:
    rng = random.Random(12)
    listed = clip(rng, 20)
    index = VideoIndex.build([(1, listed)])
    query = listed[:5] + clip(rng, 20)  # shares a quarter of the clip
    (result,) = index.compare_many([query])[0]
    assert result.video_id == 1 and not result.result.is_match
    assert 0 < result.result.compared_match_percent < 80
    assert index.match(query) == []


def test_replacing_and_removing_videos() -> None:
    rng = random.Random(13)
    a, b = clip(rng, 10), clip(rng, 10)
    index = VideoIndex.build([(1, a)])
    index.add([(1, b)])  # same id: the old frames go
    assert len(index) == 1
    assert index.match(a) == []
    assert [m.video_id for m in index.match(b)] == [1]
    assert index.match_frame(a[0][2], 100) == []
    assert index.remove([1, 2]) == 1
    assert index.match(b) == [] and len(index) == 0 and index.frame_count == 0
    assert 1 not in index


def test_low_quality_frames_are_not_indexed() -> None:
    rng = random.Random(14)
    dark = clip(rng, 10, quality=20)
    index = VideoIndex.build([(5, dark)])
    assert len(index) == 1 and index.frame_count == 0
    assert index.match(dark) == []
    assert index.match_frame(dark[0][2], 100) == []


def test_frame_match_reports_the_nearest_first_frame() -> None:
    rng = random.Random(15)
    h = rand_pdq(rng)
    near = flip(h, 3, rng)
    frames = [Frame(0, 0.0, near, 100), Frame(1, 0.1, h, 100), Frame(2, 0.2, h, 100)]
    index = VideoIndex.build([(9, frames), (10, [Frame(4, 0.5, flip(h, 20, rng), 90)])])
    hits = index.match_frame(h, 100)
    assert [(m.video_id, m.frame, m.distance) for m in hits] == [(9, 1, 0), (10, 4, 20)]
    assert index.match_frames([(h, 100)], max_distance=10)[0] == hits[:1]
    assert index.match_frames([("not hex", 100), (h.upper(), 100)]) == [[], hits]


def test_a_malformed_frame_adds_nothing() -> None:
    rng = random.Random(16)
    index = VideoIndex.build([(1, clip(rng, 3))])
    with pytest.raises(InvalidHash):
        index.add([(2, clip(rng, 3)), (3, [Frame(0, 0.0, "zz", 100)])])
    assert len(index) == 1 and 2 not in index
