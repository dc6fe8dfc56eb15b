from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from node.lists import get_importer, import_list
from node.matching.matcher import Match, MatchIndex, Method, Thresholds, best, pack
from protocol.hashes import FAMILIES, HashFamily, hamming
from protocol.models import ImageHashes
from tests.node.conftest import flip_bits, image_hashes, rand_hex


def test_pack_is_big_endian_words() -> None:
    words = pack(["0000000000000001" + "f" * 48], 256)
    assert words.shape == (1, 4)
    assert int(words[0, 0]) == 1 and int(words[0, 3]) == 2**64 - 1


def test_exact_families_match_by_value() -> None:
    rng = random.Random(1)
    image = image_hashes(rng)
    index = MatchIndex(
        [
            (1, HashFamily.MD5, image.md5.upper()),
            (2, HashFamily.SHA256, image.sha256),
            (3, HashFamily.SHA1, rand_hex(rng, 160)),
        ]
    )
    assert index.match(image) == [
        Match(2, HashFamily.SHA256, 0),
        Match(1, HashFamily.MD5, 0),
    ]
    assert index.best(image) == Match(2, HashFamily.SHA256, 0)
    assert index.best(image_hashes(rng)) is None


def test_pdq_threshold_is_inclusive() -> None:
    rng = random.Random(2)
    base = rand_hex(rng, 256)
    at_limit = flip_bits(base, list(range(0, 31 * 8, 8)))  # 31 bits apart
    beyond = flip_bits(base, list(range(0, 32 * 8, 8)))  # 32 bits apart
    index = MatchIndex([(1, "pdq", at_limit), (2, "pdq", beyond)])
    assert index.match(image_hashes(rng, pdq=base)) == [Match(1, HashFamily.PDQ, 31)]
    strict = MatchIndex([(1, "pdq", at_limit)], Thresholds(pdq_max_distance=30))
    assert strict.match(image_hashes(rng, pdq=base)) == []


def test_pdq_low_quality_never_matches() -> None:
    rng = random.Random(3)
    pdq = rand_hex(rng, 256)
    index = MatchIndex([(1, "pdq", pdq)])
    assert index.match(image_hashes(rng, pdq=pdq, pdq_quality=49)) == []
    assert index.match(image_hashes(rng, pdq=pdq, pdq_quality=50)) == [Match(1, HashFamily.PDQ, 0)]
    lenient = MatchIndex([(1, "pdq", pdq)], Thresholds(pdq_min_quality=10))
    assert lenient.match(image_hashes(rng, pdq=pdq, pdq_quality=20)) != []


def test_pdq_dihedral_variants_match_with_their_minimum_distance() -> None:
    rng = random.Random(4)
    listed = rand_hex(rng, 256)
    rotated = flip_bits(listed, [1, 2, 3])
    hashes = image_hashes(rng, pdq_dihedral=[rand_hex(rng, 256), rotated])
    assert MatchIndex([(9, "pdq", listed)]).match(hashes) == [
        Match(9, HashFamily.PDQ, 3, Method.DIHEDRAL)
    ]


def test_phash_and_dhash_thresholds() -> None:
    rng = random.Random(5)
    image = image_hashes(rng)
    index = MatchIndex(
        [
            (1, "phash", flip_bits(image.phash, [0, 5, 9, 20, 33, 40, 50, 63])),  # 8
            (2, "phash", flip_bits(image.phash, list(range(9)))),  # 9: too far
            (3, "dhash", flip_bits(image.dhash, [7])),
        ]
    )
    assert index.match(image) == [Match(1, HashFamily.PHASH, 8), Match(3, HashFamily.DHASH, 1)]
    tight = MatchIndex(
        [(1, "phash", flip_bits(image.phash, [0, 1]))], Thresholds(phash_max_distance=1)
    )
    assert tight.match(image) == []


def test_best_uses_precedence_then_distance() -> None:
    matches = [
        Match(5, HashFamily.DHASH, 0),
        Match(4, HashFamily.PDQ, 12),
        Match(3, HashFamily.PDQ, 4),
        Match(6, HashFamily.PHASH, 0),
    ]
    assert best(matches) == Match(3, HashFamily.PDQ, 4)
    assert best([*matches, Match(7, HashFamily.MD5, 0)]) == Match(7, HashFamily.MD5, 0)
    assert best([Match(8, HashFamily.SHA1, 0), Match(9, HashFamily.SHA256, 0)]) == Match(
        9, HashFamily.SHA256, 0
    )
    assert best([]) is None


def test_index_from_db(engine: Engine) -> None:
    rng = random.Random(6)
    image = image_hashes(rng)
    near = flip_bits(image.pdq, [10, 20])
    import_list(
        engine,
        get_importer("plain", HashFamily.PDQ),
        io.StringIO(f"{near}\n{rand_hex(rng, 256)}\n"),
        source="pdq",
        version="1",
    )
    import_list(engine, get_importer("plain"), io.StringIO(image.md5), source="md5", version="1")
    index = MatchIndex.from_db(engine)
    assert len(index) == 3
    assert [(m.family, m.distance) for m in index.match(image)] == [
        (HashFamily.MD5, 0),
        (HashFamily.PDQ, 2),
    ]


# ------------------------------------------------------------------ against a brute-force reference

PERCEPTUAL = [HashFamily.PDQ, HashFamily.PHASH, HashFamily.DHASH]


def _near(draw: st.DrawFn, value: str, bits: int) -> str:
    flips = draw(st.lists(st.integers(0, bits - 1), max_size=40, unique=True))
    return flip_bits(value, flips)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[tuple[int, HashFamily, str]], ImageHashes, Thresholds]:
    rng = random.Random(draw(st.integers(0, 2**32)))
    query = image_hashes(rng, pdq_quality=draw(st.integers(0, 100)))
    entries: list[tuple[int, HashFamily, str]] = []
    for family in HashFamily:
        bits = FAMILIES[family].bits
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["random", "same", "near"]))
            if kind == "random":
                value = rand_hex(rng, bits)
            elif kind == "same" or not FAMILIES[family].perceptual:
                value = getattr(query, family.value)
            else:
                value = _near(draw, getattr(query, family.value), bits)
            if all(not (f == family and v == value) for _, f, v in entries):
                entries.append((len(entries) + 1, family, value))
    thresholds = Thresholds(
        pdq_max_distance=draw(st.integers(0, 64)),
        pdq_min_quality=draw(st.integers(0, 100)),
        phash_max_distance=draw(st.integers(0, 16)),
        dhash_max_distance=draw(st.integers(0, 16)),
    )
    return entries, query, thresholds


def reference(
    entries: list[tuple[int, HashFamily, str]], query: ImageHashes, t: Thresholds
) -> list[Match]:
    found = []
    for entry_id, family, value in entries:
        mine = getattr(query, family.value)
        if not FAMILIES[family].perceptual:
            if mine == value:
                found.append(Match(entry_id, family, 0))
            continue
        if family is HashFamily.PDQ and query.pdq_quality < t.pdq_min_quality:
            continue
        distance = hamming(mine, value)
        if distance <= t.max_distance(family):
            found.append(Match(entry_id, family, distance))
    return found


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_matcher_agrees_with_brute_force(
    case: tuple[list[tuple[int, HashFamily, str]], ImageHashes, Thresholds],
) -> None:
    entries, query, thresholds = case
    index = MatchIndex(entries, thresholds)
    expected = reference(entries, query, thresholds)
    got = index.match(query)
    assert sorted(got, key=lambda m: m.entry_id) == sorted(expected, key=lambda m: m.entry_id)
    assert index.best(query) == best(expected)
    if expected:
        top = index.best(query)
        assert top is not None
        assert FAMILIES[top.family].precedence == min(
            FAMILIES[m.family].precedence for m in expected
        )
