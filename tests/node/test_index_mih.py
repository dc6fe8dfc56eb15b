"""The multi-index-hashing index: exact against brute force, incremental, safely persisted."""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.matching.index import IndexFormatError, MultiIndex, brute_force, mih


def codes_of(values: list[int], bits: int) -> npt.NDArray[np.uint64]:
    words = bits // 64
    raw = b"".join(v.to_bytes(bits // 8, "big") for v in values)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), words)


def flip(value: int, positions: list[int]) -> int:
    for p in positions:
        value ^= 1 << p
    return value


def as_sets(results: list[list[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
    # Sorted lists, not sets: a pair reported twice (by two chunk tables) must fail.
    return [sorted(r) for r in results]


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
    assert as_sets(index.search(values, 0)) == [[(n, 0)] for n in range(30)]


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
    # The codes are stored sorted by their first chunk; each id keeps its own code.
    assert np.array_equal(loaded.codes[np.argsort(loaded.ids)], codes)


def test_empty_index_searches_and_round_trips() -> None:
    index = MultiIndex(256)
    q = codes_of([5], 256)
    assert index.search(q, 31) == [[]]
    assert MultiIndex.from_bytes(index.to_bytes()).search(q, 31) == [[]]


@pytest.mark.parametrize("bits", [256, 64])
def test_memory_stays_within_four_times_the_codes(bits: int) -> None:
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 2**63, size=(1_000_000, bits // 64), dtype=np.int64).astype(np.uint64)
    index = MultiIndex.build(bits, np.arange(1_000_000), codes)
    assert index.nbytes <= 4 * codes.nbytes
    # nbytes counts every array the index holds.
    arrays = [index.codes, index.ids, index.alive, index.offsets, index.fps, index.rows]
    assert index.nbytes == sum(a.nbytes for a in arrays)


def random_world(
    n: int, bits: int, seed: int, nq: int = 80
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Codes around a few centres plus queries near and far from them."""
    rng = np.random.default_rng(seed)
    words = bits // 64
    centres = rng.integers(0, 2**63, size=(max(1, n // 20), words), dtype=np.int64)
    codes = centres[rng.integers(0, centres.shape[0], size=n)].astype(np.uint64)
    for _ in range(bits // 16):  # ~6 % of bits flipped
        bit = rng.integers(0, 64, size=(n, words)).astype(np.uint64)
        codes ^= (rng.random((n, words)) < 0.25).astype(np.uint64) << bit
    queries = codes[rng.integers(0, n, size=nq)].copy()
    queries[nq // 2 :] ^= rng.integers(0, 2**63, size=(nq - nq // 2, words)).astype(np.uint64)
    return codes, queries


@pytest.mark.parametrize(("bits", "radius"), [(256, 31), (256, 45), (64, 10), (64, 3)])
def test_threaded_batches_and_numpy_path_agree_with_brute_force(bits: int, radius: int) -> None:
    codes, queries = random_world(3000, bits, seed=bits + radius)
    expected = as_sets(brute_force(codes, queries, radius))
    assert sum(map(len, expected)) > len(queries) // 2  # the test sees real matches
    index = MultiIndex.build(bits, np.arange(len(codes)), codes)
    index.threads = 2  # 80 queries: split over two threads
    assert as_sets(index.search(queries, radius)) == expected
    index.threads = 1
    assert as_sets(index.search(queries, radius)) == expected
    index.use_kernel = False
    assert as_sets(index.search(queries, radius)) == expected


def test_four_byte_row_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Indexes of 2**24 codes or more store row numbers in 4 bytes: force that layout.
    monkeypatch.setattr(mih, "THREE_BYTE_ROWS", 100)
    codes, queries = random_world(500, 256, seed=11)
    index = MultiIndex.build(256, np.arange(500), codes)
    assert index.row_bytes == 4 and index.rows.shape == (15, 500 * 4)
    expected = as_sets(brute_force(codes, queries, 31))
    assert as_sets(index.search(queries, 31)) == expected
    loaded = MultiIndex.from_bytes(index.to_bytes())
    assert loaded.row_bytes == 4
    assert as_sets(loaded.search(queries, 31)) == expected
    loaded.use_kernel = False
    assert as_sets(loaded.search(queries, 31)) == expected


def test_radius_covering_whole_chunks_and_bad_radius() -> None:
    codes, queries = random_world(200, 64, seed=12, nq=4)
    index = MultiIndex.build(64, np.arange(200), codes)
    # r = 64: every code matches every query (probes flip whole chunks).
    assert as_sets(index.search(queries, 64)) == as_sets(brute_force(codes, queries, 64))
    with pytest.raises(ValueError, match="radius"):
        index.search(queries, -1)


def test_tail_and_tombstones_in_both_paths() -> None:
    codes, queries = random_world(1000, 256, seed=13)
    index = MultiIndex.build(256, np.arange(600), codes[:600])
    index.add(np.arange(600, 1000), codes[600:])  # 400 codes in the tail
    assert index.indexed == 600
    index.remove(list(range(0, 1000, 7)))
    live = np.ones(1000, dtype=bool)
    live[::7] = False
    expected = [[(i, d) for i, d in hits if live[i]] for hits in brute_force(codes, queries, 31)]
    assert as_sets(index.search(queries, 31)) == as_sets(expected)
    index.use_kernel = False
    assert as_sets(index.search(queries, 31)) == as_sets(expected)


def v1_blob(ids: npt.NDArray[np.int64], codes: npt.NDArray[np.uint64], bits: int) -> bytes:
    """A file in format 1 (plain MIH tables), as the previous release wrote it."""
    n, m = codes.shape[0], bits // 16
    header = json.dumps({"version": 1, "bits": bits, "n": n}).encode()
    rows = np.zeros((m, n), dtype="<i4")  # unused by the upgrade: only codes and ids count
    offsets = np.zeros((m, 65537), dtype="<i4")
    body = codes.astype("<u8").tobytes() + ids.astype("<i8").tobytes()
    return (
        b"LIBRAMIH"
        + struct.pack("<I", len(header))
        + header
        + body
        + rows.tobytes()
        + offsets.tobytes()
    )


def test_format_1_files_are_rebuilt_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    codes, queries = random_world(300, 256, seed=14)
    ids = np.arange(1000, 1300, dtype=np.int64)
    with caplog.at_level(logging.WARNING):
        index = MultiIndex.from_bytes(v1_blob(ids, codes, 256))
    assert index.upgraded_from == 1
    assert "format 1" in caplog.text and "rebuilding its 300 codes" in caplog.text
    expected = [[(i + 1000, d) for i, d in hits] for hits in brute_force(codes, queries, 31)]
    assert as_sets(index.search(queries, 31)) == as_sets(expected)
    with pytest.raises(IndexFormatError):
        MultiIndex.from_bytes(v1_blob(ids, codes, 256)[:-3])


def test_misaligned_buffer_loads() -> None:
    codes, queries = random_world(300, 64, seed=15)
    data = MultiIndex.build(64, np.arange(300), codes).to_bytes()
    loaded = MultiIndex.from_bytes(memoryview(b"x" + data)[1:])  # every array misaligned
    assert as_sets(loaded.search(queries, 10)) == as_sets(brute_force(codes, queries, 10))


def test_damaged_tables_are_rejected_not_read_out_of_bounds() -> None:
    codes, _ = random_world(300, 256, seed=16)
    index = MultiIndex.build(256, np.arange(300), codes)
    data = bytearray(index.to_bytes())
    rows_at = len(data) - index.rows.nbytes
    data[rows_at:] = b"\xff" * index.rows.nbytes  # every row number -> 2**24 - 1
    damaged = MultiIndex.from_bytes(bytes(data))
    with pytest.raises(IndexError, match="out of range"):
        damaged.search(codes[:5], 31)
    offsets_at = rows_at - index.fps.nbytes - index.offsets.nbytes
    data = bytearray(index.to_bytes())
    data[offsets_at + 8 : offsets_at + 12] = struct.pack("<i", 10**6)
    with pytest.raises(IndexFormatError, match="offsets"):
        MultiIndex.from_bytes(bytes(data))
