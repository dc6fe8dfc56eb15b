"""The score of a candidate: pure functions from its context to explainable points.

A candidate's context is what the cycle saw around it (``Context``): how many hashed items
shared its page, its URL directory and its host, and how many of those matched a list; its size
and PDQ quality; how many near-duplicates its cluster holds. Each signal gives points and a
reason ``{"signal", "value", "points", "detail"}`` (Candidate.reasons); the score is their sum,
within 0..100. The points are chosen so that, at the default threshold of 40:

- an image of at least ``min_pixels`` on the same page as one known item always passes
  (``same_page`` >= 40, ``size`` >= 10);
- a tiny image (below ``min_pixels``: icons, buttons, decorations, which sit on every page
  beside everything) loses 40 points where its directory holds known items and 75 where it
  does not, so known items on its page and host never lift it over the threshold, however
  many, with every near-duplicate point (``same_page`` <= 75, ``same_site`` <= 15, quality 5,
  near-duplicates 10: 105 - 75 < 40); a thumbnail in an album directory of known items can;
- an image whose only link to known material is its host never passes, whatever its size and
  near-duplicates (``same_site`` < 15, ``size`` <= 15, ``near_duplicates`` <= 10: < 40);
- an image in a directory (album path) holding known items passes when known items are a fair
  share of it (1 of 3, with a full-size image and its host's points: 23.3 + 15 + >= 5) and
  not when they are few on a large host (1 of 25 in the directory, 1 of 100 on the host:
  16 + 15 + 5.1).

Items are counted by what the cycle hashed: images and videos (a matched video is known
material too), each distinct URL once, on the page where the crawler first found it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from protocol.hashes import PDQ_MIN_QUALITY

MAX_SCORE = 100.0
# same_page: a known item on the page is the strongest lead.
PAGE_BASE = 40.0
PAGE_PER_EXTRA_KNOWN = 5.0  # for each known item beyond the first ...
PAGE_EXTRA_KNOWN_MAX = 3  # ... up to this many
PAGE_SHARE = 20.0  # times the share of known items on the page
# same_directory: the same album path, perhaps over several pages.
DIRECTORY_BASE = 15.0
DIRECTORY_PER_EXTRA_KNOWN = 5.0
DIRECTORY_EXTRA_KNOWN_MAX = 2
DIRECTORY_SHARE = 25.0
# same_site: weak on its own by design (a large host holds much unrelated material).
SITE_BASE = 5.0
SITE_SHARE = 10.0
# size: thumbnails and icons are rarely what an analyst looks for; low PDQ quality cannot
# be clustered or matched later.
SIZE_POINTS = 10.0
TINY_POINTS = -40.0  # below min_pixels, in a directory that holds known items
# ... and in one that holds none: a decoration beside known pictures (measured: thumbnails
# on pages of known items were most of the false candidates, benchmarks/bench_discovery.py)
TINY_ALONE_POINTS = -75.0
QUALITY_POINTS = 5.0
# near_duplicates: the same picture found again under other URLs.
NEAR_PER_MEMBER = 5.0
NEAR_MEMBERS_MAX = 2


class Reason(TypedDict):
    """One signal's contribution, stored in Candidate.reasons (JSON)."""

    signal: str
    value: float
    points: float
    detail: str


@dataclass(frozen=True, slots=True)
class Context:
    """What a cycle saw around one unmatched image (counts include the image itself)."""

    page_known: int
    page_items: int
    directory_known: int
    directory_items: int
    site_known: int
    site_items: int
    width: int
    height: int
    pdq_quality: int
    page: str = ""  # for the reasons' wording only
    directory: str = ""
    host: str = ""

    def __post_init__(self) -> None:
        for known, items, where in (
            (self.page_known, self.page_items, "page"),
            (self.directory_known, self.directory_items, "directory"),
            (self.site_known, self.site_items, "site"),
        ):
            if not 0 <= known <= items:
                raise ValueError(f"{where}: known items must be 0..items, got {known}/{items}")

    @property
    def near_known(self) -> bool:
        """Something known was found beside it (else it is no candidate at all)."""
        return self.page_known > 0 or self.directory_known > 0 or self.site_known > 0


def _points(value: float) -> float:
    return round(value, 1)


def _share(known: int, items: int) -> float:
    return known / items if items else 0.0


def _known(known: int, items: int, where: str) -> str:
    verb = "is" if known == 1 else "are"
    noun = "item" if items == 1 else "items"
    return f"{known} of {items} hashed {noun} {where} {verb} known"


# Each signal's points as a number (0: the signal is absent), rounded as its reason shows
# them: ``context_points`` adds these without building the reasons' text (a cycle scores every
# unmatched image; only the kept ones get reasons).


def _page_points(c: Context) -> float:
    if c.page_known == 0:
        return 0.0
    share = _share(c.page_known, c.page_items)
    extra = min(c.page_known - 1, PAGE_EXTRA_KNOWN_MAX) * PAGE_PER_EXTRA_KNOWN
    return _points(PAGE_BASE + extra + PAGE_SHARE * share)


def _directory_points(c: Context) -> float:
    if c.directory_known == 0:
        return 0.0
    share = _share(c.directory_known, c.directory_items)
    extra = min(c.directory_known - 1, DIRECTORY_EXTRA_KNOWN_MAX) * DIRECTORY_PER_EXTRA_KNOWN
    return _points(DIRECTORY_BASE + extra + DIRECTORY_SHARE * share)


def _site_points(c: Context) -> float:
    if c.site_known == 0:
        return 0.0
    return _points(SITE_BASE + SITE_SHARE * _share(c.site_known, c.site_items))


def _size_points(c: Context, min_pixels: int) -> float:
    good = QUALITY_POINTS if c.pdq_quality >= PDQ_MIN_QUALITY else 0.0
    if c.width * c.height >= min_pixels:
        return _points(SIZE_POINTS + good)
    return _points((TINY_POINTS if c.directory_known else TINY_ALONE_POINTS) + good)


def same_page(c: Context) -> Reason | None:
    if c.page_known == 0:
        return None
    points = _page_points(c)
    where = "on its page" + (f" {c.page}" if c.page else "")
    detail = _known(c.page_known, c.page_items, where)
    return Reason(signal="same_page", value=c.page_known, points=points, detail=detail)


def same_directory(c: Context) -> Reason | None:
    if c.directory_known == 0:
        return None
    points = _directory_points(c)
    where = "under " + (c.directory or "its directory")
    detail = _known(c.directory_known, c.directory_items, where)
    return Reason(signal="same_directory", value=c.directory_known, points=points, detail=detail)


def same_site(c: Context) -> Reason | None:
    if c.site_known == 0:
        return None
    points = _site_points(c)
    where = "on " + (c.host or "its host")
    detail = _known(c.site_known, c.site_items, where)
    return Reason(signal="same_site", value=c.site_known, points=points, detail=detail)


def size(c: Context, min_pixels: int) -> Reason:
    """Always given, so an analyst sees why a small image scored less."""
    pixels = c.width * c.height
    good = c.pdq_quality >= PDQ_MIN_QUALITY
    points = _size_points(c, min_pixels)
    if pixels >= min_pixels:
        compare = f"at least {min_pixels}"
    elif c.directory_known:
        compare = f"below {min_pixels}: an icon or decoration, most likely"
    else:
        compare = (
            f"below {min_pixels}: an icon or decoration, most likely, with nothing known "
            "in its directory"
        )
    detail = f"{c.width}x{c.height} ({pixels} px, {compare}), PDQ quality {c.pdq_quality}" + (
        "" if good else f" (below {PDQ_MIN_QUALITY})"
    )
    return Reason(signal="size", value=pixels, points=points, detail=detail)


def near_duplicates(members: int, max_distance: int) -> Reason | None:
    """``members``: images in its cluster, itself included."""
    if members < 2:
        return None
    others = members - 1
    points = min(others, NEAR_MEMBERS_MAX) * NEAR_PER_MEMBER
    noun = "near-duplicate" if others == 1 else "near-duplicates"
    detail = f"{others} {noun} among candidates (PDQ within {max_distance})"
    return Reason(signal="near_duplicates", value=others, points=_points(points), detail=detail)


def context_reasons(c: Context, min_pixels: int) -> list[Reason]:
    """The signals of its context and size; [] when nothing known was found beside it."""
    if not c.near_known:
        return []
    found = [same_page(c), same_directory(c), same_site(c), size(c, min_pixels)]
    return [r for r in found if r is not None]


def context_points(c: Context, min_pixels: int) -> float:
    """The sum of ``context_reasons(c)``'s points (uncapped), without building them."""
    if not c.near_known:
        return 0.0
    # the order of context_reasons, so that the float sums are the same
    return _page_points(c) + _directory_points(c) + _site_points(c) + _size_points(c, min_pixels)


def capped(points: float) -> float:
    """A sum of points as a score: 0..100, one decimal."""
    return _points(max(0.0, min(MAX_SCORE, points)))


def total(reasons: list[Reason]) -> float:
    """The score: the sum of the points, capped at 100."""
    return capped(sum(r["points"] for r in reasons))
