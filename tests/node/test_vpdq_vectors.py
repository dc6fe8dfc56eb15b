"""vPDQ comparison on Meta's reference frame hashes (/work/shared/vectors/vpdq, see its README):
the README's verdict table, shares within 0.01, verdicts exact.

The files are read with node.matching.vpdq_text.parse_lines, so the parser meets the real
format too. Hashes computed by the project's own video hashing are checked elsewhere (the
function's tests); this file checks the comparison on the reference hashes.
"""

from __future__ import annotations

import itertools
import os
from functools import cache
from pathlib import Path

import pytest

from node.matching.video_index import VideoIndex
from node.matching.vpdq import Frame, VpdqSettings, compare
from node.matching.vpdq_text import parse_lines

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "vpdq"
TOLERANCE = 0.01

if not (VECTORS / "README.md").is_file():
    reason = f"vPDQ vectors not found at {VECTORS}"
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(reason + " (required when CI=true)")
    pytest.skip(reason, allow_module_level=True)

# The README's table: (query, compared) -> (query share, compared share, match?).
TABLE = {
    ("chair-orig-22-sd-bar", "chair-22-sd-sepia-bar"): (1.00, 1.00, True),
    ("chair-orig-22-sd-bar", "chair-19-sd-bar"): (0.85, 1.00, True),
    ("pattern-sd-grey-bar", "pattern-sd-with-small-logo-bar"): (1.00, 1.00, True),
    ("pattern-sd-grey-bar", "pattern-sd-with-large-logo-bar"): (0.01, 0.01, False),
}
SOURCES = {
    "chair": ["chair-orig-22-sd-bar", "chair-22-sd-sepia-bar", "chair-19-sd-bar"],
    "pattern": [
        "pattern-sd-grey-bar",
        "pattern-sd-with-small-logo-bar",
        "pattern-sd-with-large-logo-bar",
    ],
    "doorknob": ["doorknob-hd-no-bar"],
    "padded": ["test-padded-dimensions"],
}


@cache
def frames(name: str) -> list[Frame]:
    return parse_lines((VECTORS / f"{name}.txt").read_text(encoding="ascii"))


def test_every_listed_file_parses_with_one_line_per_frame() -> None:
    names = sorted(p.stem for p in VECTORS.glob("*.txt"))
    assert names == sorted(n for group in SOURCES.values() for n in group)
    for name in names:
        parsed = frames(name)
        lines = (VECTORS / f"{name}.txt").read_text(encoding="ascii").splitlines()
        assert len(parsed) == len(lines) > 0
        assert [f.number for f in parsed] == list(range(len(parsed)))  # every frame hashed


@pytest.mark.parametrize(("pair", "expected"), TABLE.items(), ids=lambda v: str(v))
def test_verdict_table(pair: tuple[str, str], expected: tuple[float, float, bool]) -> None:
    query, compared = pair
    r = compare(frames(query), frames(compared))
    assert r.query_match_percent / 100 == pytest.approx(expected[0], abs=TOLERANCE)
    assert r.compared_match_percent / 100 == pytest.approx(expected[1], abs=TOLERANCE)
    assert r.is_match is expected[2]
    # The verdict is the same with the roles swapped (both thresholds are 80 %).
    assert compare(frames(compared), frames(query)).is_match is expected[2]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (a, b)
        for (_, group_a), (_, group_b) in itertools.combinations(SOURCES.items(), 2)
        for a in group_a
        for b in group_b
    ],
)
def test_different_sources_share_nothing(a: str, b: str) -> None:
    r = compare(frames(a), frames(b))
    assert (r.query_match_percent, r.compared_match_percent, r.is_match) == (0.0, 0.0, False)


def test_the_index_gives_the_table_verdicts() -> None:
    """Every reference video listed; each as a query finds exactly the variants the table
    (and, for the two chair cuts not in it, the same comparison) says it matches."""
    names = [n for group in SOURCES.values() for n in group]
    index = VideoIndex.build((n, frames(name)) for n, name in enumerate(names))
    chairs = set(SOURCES["chair"])  # sepia vs 19: 1.00 / 0.86, a match as well
    small_logo = {"pattern-sd-grey-bar", "pattern-sd-with-small-logo-bar"}
    expected = {name: {name} for name in names}
    expected.update({name: chairs for name in chairs})
    expected.update({name: small_logo for name in small_logo})
    for name in names:
        assert {names[m.video_id] for m in index.match(frames(name))} == expected[name], name


def test_a_still_from_a_reference_video_is_found_as_a_frame() -> None:
    doorknob = frames("doorknob-hd-no-bar")
    index = VideoIndex.build([(7, doorknob)])
    still = doorknob[20]  # quality 100
    found = index.match_frame(still.pdq, still.quality)
    assert [(m.video_id, m.distance) for m in found] == [(7, 0)]
    assert found[0].frame == min(f.number for f in doorknob if f.pdq == still.pdq)
    # Half of this clip is dark: its frames of quality < 50 are not indexed.
    dark = doorknob[40]
    assert dark.quality < 50 and still.quality == 100
    assert index.match_frame(dark.pdq, 100) == []
    assert index.match_frame(frames("chair-19-sd-bar")[10].pdq, 100) == []
    # The image's own quality counts too.
    assert index.match_frame(still.pdq, 49) == []
    assert VideoIndex(VpdqSettings(min_quality=0)).match_frame(still.pdq, 100) == []
