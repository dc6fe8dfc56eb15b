"""Multi-index hashing (Norouzi, Punjani & Fleet 2012) for exact Hamming range search.

A code of ``bits`` bits is cut into ``m`` chunks of 16 bits. If two codes differ in at most
``r`` bits, by pigeonhole at least one chunk differs in at most ``r // m`` bits, so probing
every chunk table at that small radius finds every true neighbour; each candidate is then
verified on the full code. Results are therefore exact (recall 1.0), not approximate.

Each chunk table is CSR over its 2**16 possible chunk values: ``offsets`` (65537 int32) and
``rows`` (row numbers sorted by chunk value). Incremental changes avoid a rebuild: added codes
go to a small unsorted ``tail`` that is scanned by brute force and merged into the tables
when it grows past ``merge_at``; removed rows are tombstoned (``alive`` mask) and their slot
reclaimed by ``compact()``. Lookups are vectorised over a whole batch of queries.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import kernel

CHUNK_BITS = 16
BUCKETS = 1 << CHUNK_BITS
MAGIC = b"LIBRAMIH"
FORMAT_VERSION = 1
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


class IndexFormatError(ValueError):
    """A persisted index file is truncated, corrupt or of another format version."""


def brute_force(codes: U64, queries: U64, radius: int) -> list[list[tuple[int, int]]]:
    """Reference: for each query, (row, distance) of every code within ``radius``."""
    out: list[list[tuple[int, int]]] = []
    for q in queries:
        d = np.bitwise_count(codes ^ q).sum(axis=1, dtype=np.int64)
        hits = np.flatnonzero(d <= radius)
        out.append([(int(i), int(d[i])) for i in hits])
    return out


@dataclass(frozen=True)
class _Probe:
    """XOR masks over one 16-bit chunk flipping at most ``radius`` bits."""

    masks: npt.NDArray[np.int64]

    @classmethod
    def of(cls, radius: int) -> _Probe:
        masks = [0]
        for k in range(1, radius + 1):
            for combo in itertools.combinations(range(CHUNK_BITS), k):
                masks.append(sum(1 << b for b in combo))
        return cls(np.asarray(masks, dtype=np.int64))


def _ids(
    ids: Sequence[int] | npt.NDArray[np.integer],
) -> npt.NDArray[np.int64] | npt.NDArray[np.int32]:
    """Entry ids as int32 when they fit (the usual case: halves their memory), else int64."""
    array = np.asarray(ids, dtype=np.int64)
    if array.size == 0 or (array.min() >= 0 and array.max() < 2**31):
        return array.astype(np.int32)
    return array


def _chunks(codes: U64) -> npt.NDArray[np.int64]:
    """(n, words) uint64 -> (n, 4*words) 16-bit chunk values, most significant first."""
    shifts = np.array([48, 32, 16, 0], dtype=np.uint64)
    parts = (codes[:, :, None] >> shifts) & np.uint64(0xFFFF)
    return parts.reshape(codes.shape[0], codes.shape[1] * 4).astype(np.int64)


class MultiIndex:
    """Exact Hamming range search over fixed-width codes (64 or 256 bits)."""

    def __init__(self, bits: int, *, merge_at: int = 4096) -> None:
        if bits % 64:
            raise ValueError("code width must be a multiple of 64 bits")
        self.bits = bits
        self.words = bits // 64
        self.m = bits // CHUNK_BITS
        self.merge_at = merge_at
        self.codes: U64 = np.zeros((0, self.words), dtype=np.uint64)
        self.ids: npt.NDArray[np.int64] | npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.alive = np.zeros(0, dtype=bool)
        self.indexed = 0  # rows [0, indexed) are in the chunk tables, the rest is the tail
        self.offsets = np.zeros((self.m, BUCKETS + 1), dtype=np.int32)
        self.rows = np.zeros((self.m, 0), dtype=np.int32)
        self._probes: dict[int, _Probe] = {}
        self.use_kernel = kernel.AVAILABLE  # False: the pure-numpy path (tests compare both)
        # Per-row "seen for query #stamp" marks of the compiled search (not persisted).
        self._seen = np.zeros(0, dtype=np.int64)
        self._stamp = 0

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, bits: int, ids: Sequence[int] | I64, codes: U64) -> MultiIndex:
        index = cls(bits)
        index.codes = np.ascontiguousarray(codes, dtype=np.uint64).reshape(-1, index.words)
        index.ids = _ids(ids)
        if index.ids.shape[0] != index.codes.shape[0]:
            raise ValueError("ids and codes differ in length")
        index.alive = np.ones(len(index.ids), dtype=bool)
        index._rebuild_tables()
        return index

    def _rebuild_tables(self) -> None:
        n = self.codes.shape[0]
        if n >= 2**31:
            raise ValueError("one index holds at most 2**31 codes; shard beyond that")
        chunks = _chunks(self.codes)
        self.rows = np.empty((self.m, n), dtype=np.int32)
        self.offsets = np.empty((self.m, BUCKETS + 1), dtype=np.int32)
        for t in range(self.m):
            keys = chunks[:, t]
            self.rows[t] = np.argsort(keys, kind="stable")
            counts = np.bincount(keys, minlength=BUCKETS)
            self.offsets[t, 0] = 0
            np.cumsum(counts, out=self.offsets[t, 1:])
        self.indexed = n

    def add(self, ids: Sequence[int] | I64, codes: U64) -> None:
        """Append codes; they are searchable at once (tail scan) and merged in later."""
        codes = np.ascontiguousarray(codes, dtype=np.uint64).reshape(-1, self.words)
        self.codes = np.concatenate([self.codes, codes])
        self.ids = _ids(np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)]))
        self.alive = np.concatenate([self.alive, np.ones(codes.shape[0], dtype=bool)])
        if self.codes.shape[0] - self.indexed > self.merge_at:
            self.compact()

    def remove(self, ids: Sequence[int] | I64) -> int:
        """Tombstone every row with one of ``ids``; returns how many rows were removed."""
        hit = np.isin(self.ids, np.asarray(ids, dtype=np.int64)) & self.alive
        self.alive &= ~hit
        return int(hit.sum())

    def compact(self) -> None:
        """Drop tombstones and merge the tail: one table rebuild."""
        keep = self.alive
        self.codes = np.ascontiguousarray(self.codes[keep])
        self.ids = self.ids[keep]
        self.alive = np.ones(len(self.ids), dtype=bool)
        self._rebuild_tables()

    def __len__(self) -> int:
        return int(self.alive.sum())

    @property
    def nbytes(self) -> int:
        return int(
            self.codes.nbytes
            + self.ids.nbytes
            + self.alive.nbytes
            + self.rows.nbytes
            + self.offsets.nbytes
        )

    # ---------------------------------------------------------------- search

    def _probe(self, radius: int) -> _Probe:
        if radius not in self._probes:
            self._probes[radius] = _Probe.of(radius)
        return self._probes[radius]

    def search(self, queries: U64, radius: int) -> list[list[tuple[int, int]]]:
        """For each query row, (id, distance) of every live code within ``radius``,
        sorted by distance then id."""
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, self.words)
        # Bound the temporary candidate arrays (~4M pairs) however large the batch is.
        per_query = len(self._probe(radius // self.m).masks) * self.m * (self.indexed >> 16)
        step = max(1, 4_000_000 // max(1, per_query))
        if queries.shape[0] > step:
            out: list[list[tuple[int, int]]] = []
            for start in range(0, queries.shape[0], step):
                out.extend(self._search(queries[start : start + step], radius))
            return out
        return self._search(queries, radius)

    def _search(self, queries: U64, radius: int) -> list[list[tuple[int, int]]]:
        nq = queries.shape[0]
        found_q: list[I64] = []
        found_r: list[I64] = []
        exact_q: I64 | None = None
        if nq and self.indexed and self.use_kernel:
            exact_q, exact_r, exact_d = self._kernel_search(queries, radius)
        elif nq and self.indexed:
            q_idx, rows = self._candidates(queries, radius)
            found_q.append(q_idx)
            found_r.append(rows)
        if nq and self.codes.shape[0] > self.indexed:
            tail = np.arange(self.indexed, self.codes.shape[0], dtype=np.int64)
            found_q.append(np.repeat(np.arange(nq, dtype=np.int64), tail.shape[0]))
            found_r.append(np.tile(tail, nq))
        results: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
        if not found_q and exact_q is None:
            return results
        if found_q:
            q_idx = np.concatenate(found_q)
            rows = np.concatenate(found_r)
            dist = np.bitwise_count(self.codes[rows] ^ queries[q_idx]).sum(axis=1, dtype=np.int64)
            ok = (dist <= radius) & self.alive[rows]
            q_idx, rows, dist = q_idx[ok], rows[ok], dist[ok]
        else:
            q_idx = rows = dist = np.zeros(0, dtype=np.int64)
        if exact_q is not None:
            q_idx = np.concatenate([exact_q, q_idx])
            rows = np.concatenate([exact_r, rows])
            dist = np.concatenate([exact_d, dist])
        # A code can be found through several chunks: keep one (query, row) pair.
        pair = np.unique(q_idx * self.codes.shape[0] + rows, return_index=True)[1]
        q_idx, rows, dist = q_idx[pair], rows[pair], dist[pair]
        ids = self.ids[rows]
        order = np.lexsort((ids, dist, q_idx))
        for qi, ident, d in zip(q_idx[order], ids[order], dist[order], strict=True):
            results[int(qi)].append((int(ident), int(d)))
        return results

    def _kernel_search(self, queries: U64, radius: int) -> tuple[I64, I64, I64]:
        if self._seen.shape[0] != self.indexed:
            self._seen = np.full(self.indexed, -1, dtype=np.int64)
            self._stamp = 0
        stamp0 = self._stamp
        self._stamp += queries.shape[0]
        return kernel.search(
            self.codes[: self.indexed],
            self.alive,
            self.rows,
            self.offsets,
            queries,
            _chunks(queries),
            self._probe(radius // self.m).masks,
            radius,
            self._seen,
            stamp0,
        )

    def _candidates(self, queries: U64, radius: int) -> tuple[I64, I64]:
        """(query index, row) pairs sharing a chunk within radius // m of the query."""
        masks = self._probe(radius // self.m).masks
        qchunks = _chunks(queries)  # (nq, m)
        # keys[q, t, p]: chunk t of query q with probe p applied.
        keys = qchunks[:, :, None] ^ masks[None, None, :]
        table = np.broadcast_to(np.arange(self.m)[None, :, None], keys.shape)
        starts = self.offsets[table, keys].ravel().astype(np.int64)
        ends = self.offsets[table, keys + 1].ravel().astype(np.int64)
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # Expand each (start, length) range into positions without a Python loop.
        nonzero = lengths > 0
        starts, lengths = starts[nonzero], lengths[nonzero]
        bucket_q = np.broadcast_to(np.arange(queries.shape[0])[:, None, None], keys.shape).ravel()[
            nonzero
        ]
        bucket_t = table.ravel()[nonzero]
        first = np.cumsum(lengths) - lengths
        pos = np.arange(total, dtype=np.int64) - np.repeat(first - starts, lengths)
        t_of = np.repeat(bucket_t, lengths)
        rows = self.rows[t_of, pos].astype(np.int64)
        return np.repeat(bucket_q, lengths).astype(np.int64), rows

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """Header (magic, JSON length, JSON) then raw little-endian arrays: no pickle."""
        self.compact()  # a saved index has no tail and no tombstones
        header = json.dumps(
            {"version": FORMAT_VERSION, "bits": self.bits, "n": int(self.codes.shape[0])}
        ).encode()
        parts = [
            MAGIC,
            struct.pack("<I", len(header)),
            header,
            self.codes.astype("<u8").tobytes(),
            self.ids.astype("<i8").tobytes(),
            self.rows.astype("<i4").tobytes(),
            # An empty index stores no bucket offsets (they are all zero).
            self.offsets.astype("<i4").tobytes() if self.codes.shape[0] else b"",
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> MultiIndex:
        view = memoryview(data)
        if bytes(view[:8]) != MAGIC or len(view) < 12:
            raise IndexFormatError("not a LIBRA multi-index file")
        (hlen,) = struct.unpack("<I", view[8:12])
        try:
            header = json.loads(bytes(view[12 : 12 + hlen]))
            bits, n, version = int(header["bits"]), int(header["n"]), int(header["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"bad index header: {exc}") from exc
        if version != FORMAT_VERSION:
            raise IndexFormatError(f"index format version {version} (expected {FORMAT_VERSION})")
        index = cls(bits)
        sizes = [
            n * index.words * 8,
            n * 8,
            index.m * n * 4,
            index.m * (BUCKETS + 1) * 4 if n else 0,
        ]
        if len(view) != 12 + hlen + sum(sizes):
            raise IndexFormatError("index file is truncated or has trailing bytes")
        at = 12 + hlen
        arrays = []
        for size, dtype in zip(sizes, ("<u8", "<i8", "<i4", "<i4"), strict=True):
            arrays.append(np.frombuffer(view[at : at + size], dtype=dtype))
            at += size
        # Views on the buffer, no copies (on little-endian hosts): loading is O(1) work.
        index.codes = arrays[0].astype(np.uint64, copy=False).reshape(n, index.words)
        index.ids = _ids(arrays[1])
        index.rows = arrays[2].astype(np.int32, copy=False).reshape(index.m, n)
        if n:
            index.offsets = arrays[3].astype(np.int32, copy=False).reshape(index.m, BUCKETS + 1)
        index.alive = np.ones(n, dtype=bool)
        index.indexed = n
        return index
