"""Batch matching: one call per crawl batch gives exactly the per-image results."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from node.matching.matcher import MatchIndex, Thresholds
from protocol.hashes import HashFamily, hamming
from tests.node.conftest import flip_bits, image_hashes, rand_hex


def world(seed: int) -> tuple[MatchIndex, list[str], random.Random]:
    rng = random.Random(seed)
    listed = [rand_hex(rng, 256) for _ in range(40)]
    entries = [(n + 1, HashFamily.PDQ, v) for n, v in enumerate(listed)]
    return MatchIndex(entries), listed, rng


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 45), min_size=1, max_size=12))
def test_match_many_equals_brute_force(seed: int, flips: list[int]) -> None:
    index, listed, rng = world(seed)
    images = []
    for count in flips:
        base = rng.choice(listed)
        images.append(image_hashes(rng, pdq=flip_bits(base, rng.sample(range(256), count))))
    batch = index.match_many(images)
    for image, found in zip(images, batch, strict=True):
        expected = {
            n + 1: hamming(image.pdq, v)
            for n, v in enumerate(listed)
            if hamming(image.pdq, v) <= 31
        }
        assert {m.entry_id: m.distance for m in found} == expected
        assert found == index.match(image)


def test_dihedral_variant_counts_once_at_its_nearest_distance() -> None:
    index, listed, rng = world(1)
    near = flip_bits(listed[0], [1, 2])
    image = image_hashes(
        rng,
        pdq=rand_hex(rng, 256),
        pdq_dihedral=[flip_bits(listed[0], [1, 2, 3, 4, 5])] * 3 + [near] * 4,
    )
    (match,) = index.match(image)
    assert (match.entry_id, match.distance) == (1, 2)


def test_incremental_add_remove_on_the_match_index() -> None:
    index, listed, rng = world(2)
    extra = rand_hex(rng, 256)
    index.add([(100, "pdq", extra), (101, "photodna", "00" * 144)])  # photodna: ignored
    assert index.lookup(HashFamily.PDQ, [extra])[0][0].entry_id == 100
    assert index.remove([100, 1]) == 2
    assert index.lookup(HashFamily.PDQ, [extra, listed[0]]) == [[], []]


def test_configurable_distance_and_quality() -> None:
    index, listed, rng = world(3)
    strict = MatchIndex([(1, "pdq", listed[0])], Thresholds(pdq_max_distance=5))
    query = flip_bits(listed[0], list(range(6)))
    assert strict.match(image_hashes(rng, pdq=query)) == []
    assert index.match(image_hashes(rng, pdq=query))[0].distance == 6
    assert index.match(image_hashes(rng, pdq=listed[0], pdq_quality=49)) == []
