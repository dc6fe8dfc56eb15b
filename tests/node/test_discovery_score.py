"""The candidate score (node.discovery.score): table-driven, each signal and the thresholds the
design promises (same page with one known item passes 40; same site alone never does)."""

from __future__ import annotations

import itertools

import pytest

from node.discovery.score import (
    Context,
    capped,
    context_points,
    context_reasons,
    near_duplicates,
    same_directory,
    same_page,
    same_site,
    size,
    total,
)

MIN_PIXELS = 4096
TINY = "an icon or decoration, most likely"
ALONE = f"{TINY}, with nothing known in its directory"
THRESHOLD = 40.0


def ctx(
    page: tuple[int, int] = (0, 1),
    directory: tuple[int, int] = (0, 1),
    site: tuple[int, int] = (0, 1),
    wh: tuple[int, int] = (256, 256),
    quality: int = 100,
) -> Context:
    return Context(
        page_known=page[0],
        page_items=page[1],
        directory_known=directory[0],
        directory_items=directory[1],
        site_known=site[0],
        site_items=site[1],
        width=wh[0],
        height=wh[1],
        pdq_quality=quality,
        page="http://a.test/p1",
        directory="http://a.test/album/",
        host="a.test",
    )


@pytest.mark.parametrize(
    ("context", "points", "detail"),
    [
        (ctx(page=(0, 3)), None, None),
        (ctx(page=(1, 3)), 46.7, "1 of 3 hashed items on its page http://a.test/p1 is known"),
        (ctx(page=(2, 3)), 58.3, "2 of 3 hashed items on its page http://a.test/p1 are known"),
        (ctx(page=(1, 20)), 41.0, "1 of 20 hashed items on its page http://a.test/p1 is known"),
        # extra known items count up to three
        (ctx(page=(9, 10)), 73.0, "9 of 10 hashed items on its page http://a.test/p1 are known"),
    ],
)
def test_same_page(context: Context, points: float | None, detail: str | None) -> None:
    reason = same_page(context)
    if points is None:
        assert reason is None
        return
    assert reason is not None
    assert (reason["signal"], reason["points"], reason["detail"]) == ("same_page", points, detail)
    assert reason["value"] == context.page_known


@pytest.mark.parametrize(
    ("context", "points", "detail"),
    [
        (ctx(directory=(0, 4)), None, None),
        (ctx(directory=(1, 3)), 23.3, "1 of 3 hashed items under http://a.test/album/ is known"),
        (ctx(directory=(2, 4)), 32.5, "2 of 4 hashed items under http://a.test/album/ are known"),
        (ctx(directory=(1, 25)), 16.0, "1 of 25 hashed items under http://a.test/album/ is known"),
    ],
)
def test_same_directory(context: Context, points: float | None, detail: str | None) -> None:
    reason = same_directory(context)
    if points is None:
        assert reason is None
        return
    assert reason is not None
    assert (reason["points"], reason["detail"]) == (points, detail)


@pytest.mark.parametrize(
    ("site", "points", "detail"),
    [
        ((0, 9), None, None),
        ((3, 9), 8.3, "3 of 9 hashed items on a.test are known"),
        ((1, 1), 15.0, "1 of 1 hashed item on a.test is known"),
    ],
)
def test_same_site(site: tuple[int, int], points: float | None, detail: str | None) -> None:
    reason = same_site(ctx(site=site))
    if points is None:
        assert reason is None
        return
    assert reason is not None
    assert (reason["points"], reason["detail"]) == (points, detail)


@pytest.mark.parametrize(
    ("wh", "quality", "points", "detail"),
    [
        ((64, 64), 100, 15.0, "64x64 (4096 px, at least 4096), PDQ quality 100"),
        ((32, 32), 100, -70.0, f"32x32 (1024 px, below 4096: {ALONE}), PDQ quality 100"),
        ((640, 480), 30, 10.0, "640x480 (307200 px, at least 4096), PDQ quality 30 (below 50)"),
        ((16, 16), 0, -75.0, f"16x16 (256 px, below 4096: {ALONE}), PDQ quality 0 (below 50)"),
    ],
)
def test_size(wh: tuple[int, int], quality: int, points: float, detail: str) -> None:
    reason = size(ctx(wh=wh, quality=quality), MIN_PIXELS)
    assert (reason["signal"], reason["value"]) == ("size", wh[0] * wh[1])
    assert (reason["points"], reason["detail"]) == (points, detail)


def test_a_tiny_image_loses_less_in_a_directory_of_known_items() -> None:
    reason = size(ctx(directory=(1, 3), wh=(32, 32)), MIN_PIXELS)
    assert (reason["points"], reason["detail"]) == (
        -35.0,
        f"32x32 (1024 px, below 4096: {TINY}), PDQ quality 100",
    )


@pytest.mark.parametrize(
    ("members", "points", "detail"),
    [
        (1, None, None),
        (2, 5.0, "1 near-duplicate among candidates (PDQ within 16)"),
        (3, 10.0, "2 near-duplicates among candidates (PDQ within 16)"),
        (50, 10.0, "49 near-duplicates among candidates (PDQ within 16)"),
    ],
)
def test_near_duplicates(members: int, points: float | None, detail: str | None) -> None:
    reason = near_duplicates(members, 16)
    if points is None:
        assert reason is None
        return
    assert reason is not None
    assert (reason["points"], reason["detail"]) == (points, detail)


def test_nothing_known_beside_it_is_no_candidate() -> None:
    assert context_reasons(ctx(page=(0, 5), directory=(0, 5), site=(0, 50)), MIN_PIXELS) == []


@pytest.mark.parametrize(
    ("context", "passes"),
    [
        # one known item on its page passes, even among many items, even at low quality
        (ctx(page=(1, 50), quality=0), True),
        (ctx(page=(1, 50), wh=(64, 64)), True),
        # ... not a tiny image (an icon), even with most of its page known
        (ctx(page=(98, 99), wh=(32, 32)), False),
        (ctx(page=(1, 3), wh=(63, 64)), False),
        # a tiny image needs more: its page and its directory full of known items
        (ctx(page=(3, 4), directory=(3, 4), wh=(32, 32)), True),
        # an album directory with a fair share of known items passes with a normal image
        (ctx(directory=(1, 3), site=(1, 10)), True),
        (ctx(directory=(2, 4), site=(2, 10)), True),
        # ... not when they are few on a large host, nor for a tiny image
        (ctx(directory=(1, 25), site=(1, 100)), False),
        (ctx(directory=(2, 4), site=(2, 10), wh=(8, 8), quality=0), False),
        # the same site alone never passes
        (ctx(site=(99, 100)), False),
    ],
)
def test_threshold(context: Context, passes: bool) -> None:
    assert (total(context_reasons(context, MIN_PIXELS)) >= THRESHOLD) is passes


def test_same_site_alone_never_passes_even_with_near_duplicates() -> None:
    """Exhaustive over small counts: the best same-site-only context with the most
    near-duplicate points stays below the threshold (the item itself is never known)."""
    near = near_duplicates(10, 16)
    assert near is not None
    for known, items in itertools.product(range(0, 30), range(1, 31)):
        if known >= items:  # the image itself is unmatched: at least one item is unknown
            continue
        reasons = context_reasons(ctx(site=(known, items)), MIN_PIXELS)
        assert total([*reasons, near]) < THRESHOLD, (known, items)


def test_score_is_within_0_and_100() -> None:
    reasons = context_reasons(ctx(page=(9, 10), directory=(9, 10), site=(9, 10)), MIN_PIXELS)
    assert sum(r["points"] for r in reasons) > 100
    assert total(reasons) == 100.0
    tiny = context_reasons(ctx(site=(1, 100), wh=(8, 8), quality=0), MIN_PIXELS)
    assert sum(r["points"] for r in tiny) < 0
    assert total(tiny) == 0.0


@pytest.mark.parametrize(
    "bad", [dict(page=(2, 1)), dict(directory=(-1, 3)), dict(site=(5, 4))], ids=str
)
def test_bad_counts_are_refused(bad: dict[str, tuple[int, int]]) -> None:
    with pytest.raises(ValueError, match=r"known items must be 0\.\.items"):
        ctx(**bad)  # type: ignore[arg-type]


def test_points_without_reasons_equal_the_reasons_sum() -> None:
    """The collector scores every image by number and builds reasons only for those written:
    both ways give the same score, to the last bit, with or without near-duplicate points."""
    near = near_duplicates(3, 16)
    assert near is not None
    counts = [(0, 1), (1, 1), (1, 3), (2, 7), (5, 6)]
    for page, directory, site in itertools.product(counts, counts, counts):
        for wh, quality in (((256, 256), 100), ((16, 16), 49)):
            c = ctx(page=page, directory=directory, site=site, wh=wh, quality=quality)
            reasons = context_reasons(c, MIN_PIXELS)
            assert capped(context_points(c, MIN_PIXELS)) == total(reasons)
            with_near = capped(context_points(c, MIN_PIXELS) + near["points"])
            assert with_near == total([*reasons, near])


def test_a_tiny_image_never_passes_on_its_page_and_host_alone() -> None:
    """However many known items share its page and its host, with the most near-duplicate
    points, a tiny image whose directory holds nothing known stays below the threshold (a
    thumbnail beside known pictures, measured in benchmarks/bench_discovery.py)."""
    near = near_duplicates(10, 16)
    assert near is not None
    for known, items in itertools.product(range(1, 40), range(2, 41)):
        if known < items:
            c = ctx(page=(known, items), site=(known, items), wh=(63, 63))
            assert total([*context_reasons(c, MIN_PIXELS), near]) < THRESHOLD, (known, items)
