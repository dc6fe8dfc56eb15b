"""PDQ clusters of candidates (node.discovery.cluster) against a brute-force O(n^2) grouping:
connected components of "PDQ within the distance, both qualities >= 50", in one go and
incrementally (old components given as groups, only the new rows searched)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from node.discovery.cluster import BRUTE_PAIRS, components, pack

from .conftest import flip_bits, rand_hex


def brute_force(codes: list[int], qualities: list[int], max_distance: int) -> list[int]:
    """Label = smallest row of the component, by repeated relaxation over all pairs."""
    n = len(codes)
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for a in range(n):
            for b in range(n):
                near = (codes[a] ^ codes[b]).bit_count() <= max_distance
                good = qualities[a] >= 50 and qualities[b] >= 50
                if near and good and label[b] < label[a]:
                    label[a] = label[b]
                    changed = True
    return label


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """A few base codes, each with near copies (a few flipped bits) and far ones; qualities
    mostly good, some below 50."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    bases = [rng.getrandbits(256) for _ in range(draw(st.integers(1, 4)))]
    codes: list[int] = []
    for _ in range(draw(st.integers(0, 24))):
        base = rng.choice(bases)
        flips = rng.sample(range(256), draw(st.integers(0, 14)))
        for bit in flips:
            base ^= 1 << bit
        codes.append(base)
    qualities = [draw(st.sampled_from([100, 100, 100, 80, 50, 49, 0])) for _ in codes]
    return codes, qualities, draw(st.integers(0, 24))


def _hex(codes: list[int]) -> list[str]:
    return [f"{c:064x}" for c in codes]


# brute_pairs: 0 forces the multi-index path, the default takes the numpy path here
PATHS = pytest.mark.parametrize("brute_pairs", [0, BRUTE_PAIRS], ids=["index", "numpy"])


@PATHS
@hypothesis_settings(max_examples=200, deadline=None)
@given(world=worlds())
def test_components_equal_brute_force(
    world: tuple[list[int], list[int], int], brute_pairs: int
) -> None:
    codes, qualities, distance = world
    got = components(pack(_hex(codes)), qualities, distance, brute_pairs=brute_pairs)
    assert got == brute_force(codes, qualities, distance)


@PATHS
@hypothesis_settings(max_examples=200, deadline=None)
@given(world=worlds(), split=st.integers(0, 24))
def test_incremental_equals_brute_force(
    world: tuple[list[int], list[int], int], split: int, brute_pairs: int
) -> None:
    """Old rows enter as their brute-force components (what earlier cycles stored), only the
    new rows are searched: the result is the components of the whole graph."""
    codes, qualities, distance = world
    first_new = min(split, len(codes))
    old = brute_force(codes[:first_new], qualities[:first_new], distance)
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(old):
        groups.setdefault(label, []).append(row)
    got = components(
        pack(_hex(codes)),
        qualities,
        distance,
        search=range(first_new, len(codes)),
        groups=groups.values(),
        brute_pairs=brute_pairs,
    )
    assert got == brute_force(codes, qualities, distance)


@PATHS
def test_chain_is_one_cluster_and_low_quality_stays_alone(brute_pairs: int) -> None:
    rng = random.Random(4)
    a = rand_hex(rng, 256)
    b = flip_bits(a, list(range(0, 10)))  # 10 from a
    c = flip_bits(b, list(range(100, 110)))  # 10 from b, 20 from a
    far = rand_hex(rng, 256)
    labels = components(
        pack([a, b, c, far, a]), [100, 90, 60, 100, 49], 10, brute_pairs=brute_pairs
    )
    # a~b~c chained (a and c are 20 apart); the copy of a with quality 49 stays alone
    assert labels == [0, 0, 0, 3, 4]


@pytest.mark.parametrize(
    ("values", "qualities", "distance", "message"),
    [
        (["ab"], [100], 16, "64 hex digits"),
        (["z" * 64], [100], 16, "not hex"),
        (["0" * 64], [100, 100], 16, "1 codes but 2 qualities"),
        (["0" * 64], [100], 257, "a PDQ distance is 0..256"),
    ],
)
def test_bad_input_is_refused(
    values: list[str], qualities: list[int], distance: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        components(pack(values), qualities, distance)


def test_empty() -> None:
    assert components(pack([]), np.zeros(0, dtype=np.int64), 16) == []
