"""vPDQ comparison (node.matching.vpdq) against Meta's definition (ThreatExchange vpdq/README.md).

No videos here: frames are random PDQ values from seeded generators, with planted copies at
chosen Hamming distances.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.matching.vpdq import (
    Frame,
    FrameTuple,
    VpdqSettings,
    as_frames,
    compare,
    distinct_codes,
    distinct_frames,
    near_pairs,
    pack,
)
from protocol.hashes import InvalidHash
from protocol.models import VideoFrame

A_HEX = "dadb999c25266273529cadac89cb52c22324ad3bce99726c38668d93c799f07c"
B_HEX = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"


def rand_pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def flip(pdq: str, bits: int, rng: random.Random) -> str:
    """``pdq`` with exactly ``bits`` distinct bits flipped."""
    mask = sum(1 << b for b in rng.sample(range(256), bits))
    return f"{int(pdq, 16) ^ mask:064x}"


def video(hashes: list[str], quality: int = 100) -> list[FrameTuple]:
    return [Frame(n, n / 30, h, quality) for n, h in enumerate(hashes)]


def reference(
    query: list[FrameTuple], compared: list[FrameTuple], s: VpdqSettings
) -> tuple[float, float, bool]:
    """Meta's README pseudocode, literally (quality filter, then one frame per hash)."""

    def unique(frames: list[FrameTuple]) -> list[str]:
        return list(dict.fromkeys(f[2].lower() for f in frames if f[3] >= s.min_quality))

    q, c = unique(query), unique(compared)
    if not q or not c:
        return 0.0, 0.0, False

    def dist(a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()

    q_count = sum(any(dist(a, b) <= s.max_distance for b in c) for a in q)
    c_count = sum(any(dist(a, b) <= s.max_distance for a in q) for b in c)
    q_pct, c_pct = q_count * 100 / len(q), c_count * 100 / len(c)
    verdict = q_count > 0 and q_pct >= s.query_match_percent and c_pct >= s.compared_match_percent
    return q_pct, c_pct, verdict


def test_identical_videos_match_fully() -> None:
    rng = random.Random(1)
    frames = video([rand_pdq(rng) for _ in range(10)])
    r = compare(frames, frames)
    assert (r.query_match_percent, r.compared_match_percent, r.is_match) == (100.0, 100.0, True)
    assert (r.query_frames, r.compared_frames) == (10, 10)


def test_frame_distance_is_inclusive_at_31() -> None:
    rng = random.Random(2)
    base = [rand_pdq(rng) for _ in range(5)]
    at_31 = compare(video(base), video([flip(h, 31, rng) for h in base]))
    at_32 = compare(video(base), video([flip(h, 32, rng) for h in base]))
    assert at_31.is_match and at_31.query_match_percent == 100.0
    assert not at_32.is_match and at_32.query_match_percent == 0.0


def test_repeated_hashes_count_once_on_each_side() -> None:
    rng = random.Random(3)
    a, b = rand_pdq(rng), rand_pdq(rng)
    # Query: a nine times, then b; compared: a once. Distinct query frames {a, b}: 1 of 2.
    r = compare(video([a] * 9 + [b]), video([a]))
    assert (r.query_frames, r.compared_frames) == (2, 1)
    assert (r.query_match_percent, r.compared_match_percent) == (50.0, 100.0)
    # Case does not make a hash distinct.
    assert compare(video([a, a.upper()]), video([a])).query_frames == 1


def test_low_quality_frames_take_no_part() -> None:
    rng = random.Random(4)
    good = [rand_pdq(rng) for _ in range(4)]
    flat = rand_pdq(rng)
    query = [*video(good), Frame(99, 3.3, flat, 49)]
    r = compare(query, video([*good, flat]))
    # The query's flat frame is filtered out; the listed copy of it is quality 100 and unmatched.
    assert (r.query_frames, r.compared_frames) == (4, 5)
    assert (r.query_match_percent, r.compared_match_percent) == (100.0, 80.0)
    assert r.is_match  # 80 % reaches the default 80 % threshold
    stricter = compare(query, video([*good, flat]), VpdqSettings(compared_match_percent=81))
    assert not stricter.is_match
    assert compare(query, video([*good, flat]), VpdqSettings(min_quality=40)).query_frames == 5


def test_quality_filter_runs_before_deduplication() -> None:
    """A hash kept by any good frame counts, whichever of its frames comes first."""
    rng = random.Random(5)
    h = rand_pdq(rng)
    frames = [Frame(0, 0.0, h, 10), Frame(1, 0.1, h, 90)]
    assert distinct_frames(frames) == [Frame(1, 0.1, h, 90)]
    assert compare(frames, video([h])).is_match


def test_both_thresholds_are_configurable() -> None:
    rng = random.Random(6)
    listed = [rand_pdq(rng) for _ in range(17)]
    # A query that holds the listed clip plus 3 frames of its own: 17/20 = 85 % / 100 %.
    query = video(listed + [rand_pdq(rng) for _ in range(3)])
    r = compare(query, video(listed))
    assert (r.query_match_percent, r.compared_match_percent) == (85.0, 100.0)
    assert r.is_match
    assert not compare(query, video(listed), VpdqSettings(query_match_percent=90)).is_match
    assert compare(query, video(listed), VpdqSettings(query_match_percent=85)).is_match
    # Swapped roles: the shares swap too.
    swapped = compare(video(listed), query)
    assert (swapped.query_match_percent, swapped.compared_match_percent) == (100.0, 85.0)


def test_a_side_with_no_usable_frame_is_no_match() -> None:
    rng = random.Random(7)
    frames = video([rand_pdq(rng) for _ in range(3)])
    dark = video([rand_pdq(rng) for _ in range(3)], quality=0)
    for a, b in ((frames, dark), (dark, frames), ([], frames), (frames, [])):
        r = compare(a, b, VpdqSettings(query_match_percent=0, compared_match_percent=0))
        assert (r.query_match_percent, r.compared_match_percent, r.is_match) == (0, 0, False)


def test_zero_thresholds_still_need_one_matching_frame() -> None:
    rng = random.Random(8)
    zero = VpdqSettings(query_match_percent=0, compared_match_percent=0)
    a, b = video([rand_pdq(rng) for _ in range(3)]), video([rand_pdq(rng) for _ in range(3)])
    assert not compare(a, b, zero).is_match
    assert compare(a, [*b, a[0]], zero).is_match


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_distance": -1},
        {"max_distance": 257},
        {"min_quality": 101},
        {"query_match_percent": 100.5},
        {"compared_match_percent": -1},
    ],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="vPDQ"):
        VpdqSettings(**kwargs)  # type: ignore[arg-type]


def test_malformed_pdq_is_refused() -> None:
    with pytest.raises(InvalidHash):
        compare([Frame(0, 0.0, "xyz", 100)], [])


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [A_HEX, A_HEX.upper(), f" {A_HEX}", B_HEX, "a" * 63, "a" * 65, "g" * 64]
            ),
            st.integers(0, 100),
        ),
        max_size=8,
    )
)
def test_packed_path_equals_frame_path(items: list[tuple[str, int]]) -> None:
    """distinct_codes (one check for all hashes) gives what distinct_frames gives, or the
    same error, for case variants, blanks and malformed lengths."""
    frames = [Frame(n, n / 30, pdq, q) for n, (pdq, q) in enumerate(items)]
    try:
        expected = distinct_frames(frames)
    except InvalidHash:
        with pytest.raises(InvalidHash):
            distinct_codes(frames)
        return
    codes, numbers = distinct_codes(frames)
    assert numbers == [f.number for f in expected]
    assert np.array_equal(codes, pack([f.pdq for f in expected]))


def test_near_pairs_works_in_blocks() -> None:
    """The block loop (1M words per block) gives the same matrix as one full computation."""
    rng = np.random.default_rng(9)
    q = rng.integers(0, 2**64, size=(300, 4), dtype=np.uint64)
    near = q[:50] ^ np.array([0xFF, 0, 0, 0], dtype=np.uint64)  # 8 bits apart
    c = np.concatenate([near, rng.integers(0, 2**64, (4000, 4), np.uint64)])
    full = np.bitwise_count(q[:, None, :] ^ c[None, :, :]).sum(axis=2) <= 31
    got = near_pairs(q, c, 31)
    assert got.sum() >= 50
    assert np.array_equal(got, full)


def test_frames_from_the_wire_model() -> None:
    """The function's VideoFrame objects convert without the comparison importing them."""
    wire = [VideoFrame(frame=3, timestamp=0.1, pdq=A_HEX, quality=77)]
    assert as_frames(wire) == [Frame(3, 0.1, A_HEX, 77)]
    assert compare(as_frames(wire), as_frames(wire)).is_match


def test_pack_is_big_endian_words() -> None:
    value = "0123456789abcdef" + "0" * 47 + "1"
    words = pack([value])
    assert words.tolist() == [[0x0123456789ABCDEF, 0, 0, 1]]


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32),
    nq=st.integers(0, 12),
    nc=st.integers(0, 12),
    copies=st.integers(0, 12),
    distance=st.integers(0, 34),
    min_quality=st.sampled_from([0, 50, 80]),
    thresholds=st.tuples(st.sampled_from([0.0, 50.0, 80.0, 100.0]), st.integers(0, 100)),
)
def test_equals_meta_pseudocode(
    seed: int,
    nq: int,
    nc: int,
    copies: int,
    distance: int,
    min_quality: int,
    thresholds: tuple[float, int],
) -> None:
    rng = random.Random(seed)
    s = VpdqSettings(
        min_quality=min_quality,
        query_match_percent=thresholds[0],
        compared_match_percent=float(thresholds[1]),
    )
    pool = [rand_pdq(rng) for _ in range(4)]  # repeats across frames exercise deduplication

    def frames(n: int) -> list[FrameTuple]:
        return [
            Frame(i, i / 30, rng.choice(pool) if rng.random() < 0.3 else rand_pdq(rng), q)
            for i, q in enumerate(rng.choice([10, 50, 60, 100]) for _ in range(n))
        ]

    query, compared = frames(nq), frames(nc)
    for i in range(min(copies, len(query))):  # planted near-duplicates around the threshold
        compared.append(Frame(100 + i, 9.0, flip(query[i][2], distance, rng), 100))
    got = compare(query, compared, s)
    assert (got.query_match_percent, got.compared_match_percent, got.is_match) == reference(
        query, compared, s
    )
