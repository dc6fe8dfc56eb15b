"""The multi-index-hashing index: exact against brute force, incremental, safely persisted."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.index import IndexFormatError, MultiIndex, brute_force


def codes_of(values: list[int], bits: int) -> npt.NDArray[np.uint64]:
    words = bits // 64
    raw = b"".join(v.to_bytes(bits // 8, "big") for v in values)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), words)


def flip(value: int, positions: list[int]) -> int:
    for p in positions:
        value ^= 1 << p
    return value


def as_sets(results: list[list[tuple[int, int]]]) -> list[set[tuple[int, int]]]:
    return [set(r) for r in results]


@st.composite
def near_sets(draw: st.DrawFn, bits: int) -> tuple[list[int], list[int], int]:
    """Codes clustered around a few centres (many near neighbours), queries near them too."""
    centres = draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=4))
    flips = st.lists(st.integers(0, bits - 1), max_size=bits // 6)
    codes = [
        flip(draw(st.sampled_from(centres)), draw(flips)) for _ in range(draw(st.integers(1, 60)))
    ]
    queries = [
        flip(draw(st.sampled_from(centres)), draw(flips)) for _ in range(draw(st.integers(1, 8)))
    ]
    radius = draw(st.integers(0, 40 if bits == 256 else 12))
    return codes, queries, radius


@settings(max_examples=60, deadline=None)
@given(near_sets(256))
def test_recall_is_one_against_brute_force_pdq(case: tuple[list[int], list[int], int]) -> None:
    values, queries, radius = case
    codes = codes_of(values, 256)
    index = MultiIndex.build(256, np.arange(len(values)), codes)
    q = codes_of(queries, 256)
    expected = as_sets(brute_force(codes, q, radius))
    assert as_sets(index.search(q, radius)) == expected
    index.use_kernel = False  # the pure-numpy path must agree too
    assert as_sets(index.search(q, radius)) == expected


@settings(max_examples=60, deadline=None)
@given(near_sets(64))
def test_recall_is_one_against_brute_force_64bit(case: tuple[list[int], list[int], int]) -> None:
    values, queries, radius = case
    codes = codes_of(values, 64)
    index = MultiIndex.build(64, np.arange(len(values)), codes)
    q = codes_of(queries, 64)
    expected = as_sets(brute_force(codes, q, radius))
    assert as_sets(index.search(q, radius)) == expected
    index.use_kernel = False
    assert as_sets(index.search(q, radius)) == expected


def test_results_are_sorted_and_distances_exact() -> None:
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 2**63, size=(300, 4), dtype=np.int64).astype(np.uint64)
    codes[1] = codes[0]
    codes[2] = codes[0] ^ np.array([1, 0, 0, 3], dtype=np.uint64)
    index = MultiIndex.build(256, np.arange(100, 400), codes)
    assert index.search(codes[:1], 31)[0] == [(100, 0), (101, 0), (102, 3)]


def test_single_entry_survives_serialisation() -> None:
    # faiss-based HMA loses single-entry matches after a save/load round trip.
    value = 0x1234_5678_9ABC_DEF0 << 192 | 0xFEED
    index = MultiIndex.build(256, [42], codes_of([value], 256))
    loaded = MultiIndex.from_bytes(index.to_bytes())
    query = codes_of([flip(value, [1, 100, 200])], 256)
    assert loaded.search(query, 31) == [[(42, 3)]]


def test_duplicate_entries_are_all_found_after_serialisation() -> None:
    value = (1 << 255) | 0xABCDEF
    index = MultiIndex.build(256, [7, 8, 9], codes_of([value, value, value], 256))
    loaded = MultiIndex.from_bytes(index.to_bytes())
    assert loaded.search(codes_of([value], 256), 0) == [[(7, 0), (8, 0), (9, 0)]]


def test_incremental_add_and_remove_without_rebuild() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, size=(500, 4), dtype=np.int64).astype(np.uint64)
    index = MultiIndex.build(256, np.arange(500), base)
    tables_before = index.rows
    extra = base[:3].copy()
    extra[:, 3] ^= np.uint64(0b111)  # 3 bits away from rows 0..2
    index.add([1000, 1001, 1002], extra)
    assert index.rows is tables_before  # no rebuild: the new codes sit in the tail
    hits = index.search(base[:1], 10)[0]
    assert (0, 0) in hits and (1000, 3) in hits
    assert index.remove([0]) == 1
    assert index.search(base[:1], 10)[0] == [(1000, 3)]
    assert len(index) == 502
    index.compact()
    assert index.search(base[:1], 10)[0] == [(1000, 3)]
    assert len(index) == 502 and index.indexed == 502


def test_tail_is_merged_once_it_grows() -> None:
    index = MultiIndex(64, merge_at=10)
    rng = np.random.default_rng(4)
    values = rng.integers(0, 2**63, size=(30, 1), dtype=np.int64).astype(np.uint64)
    for n in range(30):
        index.add([n], values[n : n + 1])
    assert index.indexed >= 20
    assert as_sets(index.search(values, 0)) == [{(n, 0)} for n in range(30)]


def test_persisted_format_has_no_pickle_and_rejects_damage() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 2**63, size=(50, 4), dtype=np.int64).astype(np.uint64)
    data = MultiIndex.build(256, np.arange(50), codes).to_bytes()
    assert data.startswith(b"LIBRAMIH") and b"pickle" not in data
    with pytest.raises(IndexFormatError):
        MultiIndex.from_bytes(data[:-5])
    with pytest.raises(IndexFormatError):
        MultiIndex.from_bytes(b"NOTANIDX" + data[8:])
    loaded = MultiIndex.from_bytes(data)
    assert np.array_equal(loaded.codes, codes)


def test_empty_index_searches_and_round_trips() -> None:
    index = MultiIndex(256)
    q = codes_of([5], 256)
    assert index.search(q, 31) == [[]]
    assert MultiIndex.from_bytes(index.to_bytes()).search(q, 31) == [[]]


def test_memory_stays_within_four_times_the_codes() -> None:
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 2**63, size=(200_000, 4), dtype=np.int64).astype(np.uint64)
    index = MultiIndex.build(256, np.arange(200_000), codes)
    assert index.nbytes <= 4 * codes.nbytes
