"""Multi-index hashing (Norouzi, Punjani & Fleet 2012) with a pigeonring filter, for exact
Hamming range search.

A code of ``bits`` bits is cut into ``m`` chunks of 16 bits, seen as a ring. If two codes
differ in at most ``r`` bits, the pigeonring principle (Qin & Xiao, VLDB 2018; the "gas
station" lemma) gives a chunk t with d_t <= r/m and d_t + d_{t+1} <= 2r/m (d_c: distance
within chunk c, t+1 taken mod m). So each chunk table is probed at radius tau1 = r // m
(plain MIH), and every bucket entry also carries its code's *next* chunk as a 16-bit
fingerprint: an entry is verified only if d_t + d_{t+1} <= tau2 = 2r // m. For PDQ at r=31
that keeps ~1 in 350 bucket entries (random codes), so a query scans short contiguous
fingerprint runs and reads few full codes at random. Results are exact (recall 1.0): every
true neighbour meets the chain condition for at least one t, and is reported by the first
such t only, so no deduplication is needed.

Layout (``indexed`` rows): ``codes`` sorted by chunk 0, so table 0 needs neither row numbers
nor fingerprints (its buckets are runs of codes); tables 1..m-1 hold ``fps`` (uint16, the
next chunk) and ``rows`` (row numbers packed in 3 bytes, 4 from 2**24 codes on), bucket
ordered; ``offsets`` (m x 65537 int32) are the CSR bucket bounds. Memory per code for PDQ:
32 (code) + 4 (id) + 1 (alive) + 15 x 5 + offsets = ~3.6x the raw codes; 64-bit: ~3.6x.

Incremental changes avoid a rebuild: added codes go to a small unsorted ``tail`` that is
scanned by brute force and merged into the tables when it grows past ``merge_at``; removed
rows are tombstoned (``alive`` mask) and their slot reclaimed by ``compact()``.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node.matching.index import kernel

CHUNK_BITS = 16
BUCKETS = 1 << CHUNK_BITS
MAGIC = b"LIBRAMIH"
FORMAT_VERSION = 2
THREE_BYTE_ROWS = 2**24  # row numbers below this fit in 3 bytes
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Found = tuple[I64, I64, I64]  # (query number, row, distance)

logger = logging.getLogger(__name__)


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
    """XOR masks over one 16-bit chunk flipping at most ``radius`` bits, and their weights."""

    masks: I64
    bits: I64

    @classmethod
    def of(cls, radius: int) -> _Probe:
        masks, bits = [0], [0]
        for k in range(1, min(radius, CHUNK_BITS) + 1):
            for combo in itertools.combinations(range(CHUNK_BITS), k):
                masks.append(sum(1 << b for b in combo))
                bits.append(k)
        return cls(np.asarray(masks, dtype=np.int64), np.asarray(bits, dtype=np.int64))


def _ids(
    ids: Sequence[int] | npt.NDArray[np.integer],
) -> npt.NDArray[np.int64] | npt.NDArray[np.int32]:
    """Entry ids as int32 when they fit (the usual case: halves their memory), else int64."""
    array = np.asarray(ids, dtype=np.int64)
    if array.size == 0 or (array.min() >= 0 and array.max() < 2**31):
        return array.astype(np.int32)
    return array


def _chunk(codes: U64, c: int) -> npt.NDArray[np.uint16]:
    """16-bit chunk ``c`` of every code (chunk 0 = the most significant bits of word 0)."""
    shift = np.uint64(48 - CHUNK_BITS * (c & 3))
    return ((codes[:, c >> 2] >> shift) & np.uint64(0xFFFF)).astype(np.uint16)


def _pack_rows(perm: I64, row_bytes: int) -> npt.NDArray[np.uint8]:
    """Row numbers as ``row_bytes`` little-endian bytes each (3 bytes: 25 % less memory)."""
    raw = perm.astype("<u4").view(np.uint8).reshape(-1, 4)
    return np.ascontiguousarray(raw[:, :row_bytes]).reshape(-1)


def _unpack_rows(packed: npt.NDArray[np.uint8], pos: I64, row_bytes: int) -> I64:
    at = pos * row_bytes
    out = np.zeros(pos.shape[0], dtype=np.int64)
    for b in range(row_bytes):
        out |= packed[at + b].astype(np.int64) << (8 * b)
    return out


def _expand(starts: I64, lengths: I64) -> tuple[I64, I64]:
    """Ranges [start, start+length) -> (positions, index of the range of each position)."""
    total = int(lengths.sum())
    owner = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths
    pos = np.arange(total, dtype=np.int64) - np.repeat(first - starts, lengths)
    return pos, owner


def _aligned(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    # A view at an odd offset of a decrypted buffer: copy once rather than read unaligned.
    return array if array.flags.aligned else array.copy()


class MultiIndex:
    """Exact Hamming range search over fixed-width codes (64 or 256 bits)."""

    def __init__(self, bits: int, *, merge_at: int = 4096) -> None:
        if bits % 64 or bits <= 0:
            raise ValueError("code width must be a positive multiple of 64 bits")
        self.bits = bits
        self.words = bits // 64
        self.m = bits // CHUNK_BITS
        self.merge_at = merge_at
        self.codes: U64 = np.zeros((0, self.words), dtype=np.uint64)
        self.ids: npt.NDArray[np.int64] | npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.alive = np.zeros(0, dtype=bool)
        self.indexed = 0  # rows [0, indexed) are in the chunk tables, the rest is the tail
        self.row_bytes = 3
        self.offsets = np.zeros((self.m, BUCKETS + 1), dtype=np.int32)
        self.fps = np.zeros((self.m - 1, 0), dtype=np.uint16)
        self.rows = np.zeros((self.m - 1, 0), dtype=np.uint8)
        self._probes: dict[int, _Probe] = {}
        self.use_kernel = kernel.AVAILABLE  # False: the pure-numpy path (tests compare both)
        # Threads for batches of 64+ queries (the compiled search releases the GIL). Opt-in:
        # on the shared 2-core reference machine a second thread gave 0.7-1.8x
        # (docs/benchmarks.md), and a node's crawler wants the other core.
        self.threads = 1
        self.upgraded_from: int | None = None  # set when loaded from an older file format

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
        """Sort the codes by chunk 0 and build tables 1..m-1. Expects no tombstones."""
        n = self.codes.shape[0]
        if n >= 2**31:
            raise ValueError("one index holds at most 2**31 codes; shard beyond that")
        order = np.argsort(_chunk(self.codes, 0), kind="stable")  # radix sort for uint16
        self.codes = np.ascontiguousarray(self.codes[order])
        self.ids = self.ids[order]
        self.alive = self.alive[order]
        self.row_bytes = 3 if n < THREE_BYTE_ROWS else 4
        self.offsets = np.zeros((self.m, BUCKETS + 1), dtype=np.int32)
        self.fps = np.empty((self.m - 1, n), dtype=np.uint16)
        self.rows = np.empty((self.m - 1, n * self.row_bytes), dtype=np.uint8)
        for t in range(self.m):
            key = _chunk(self.codes, t)
            np.cumsum(np.bincount(key, minlength=BUCKETS), out=self.offsets[t, 1:])
            if t == 0:
                continue
            perm = np.argsort(key, kind="stable")
            self.fps[t - 1] = _chunk(self.codes, (t + 1) % self.m)[perm]
            self.rows[t - 1] = _pack_rows(perm, self.row_bytes)
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
        """Everything the index holds in memory (the search keeps no other per-code state)."""
        return int(
            self.codes.nbytes
            + self.ids.nbytes
            + self.alive.nbytes
            + self.offsets.nbytes
            + self.fps.nbytes
            + self.rows.nbytes
        )

    # ---------------------------------------------------------------- search

    def _probe(self, radius: int) -> _Probe:
        if radius not in self._probes:
            self._probes[radius] = _Probe.of(radius)
        return self._probes[radius]

    def search(self, queries: U64, radius: int) -> list[list[tuple[int, int]]]:
        """For each query row, (id, distance) of every live code within ``radius``,
        sorted by distance then id."""
        if radius < 0:
            raise ValueError("radius must be >= 0")
        queries = np.ascontiguousarray(queries, dtype=np.uint64).reshape(-1, self.words)
        nq = queries.shape[0]
        parts: list[Found] = []
        if nq and self.indexed:
            parts.append(self._indexed_search(queries, radius))
        if nq and self.codes.shape[0] > self.indexed:
            parts.append(self._tail_search(queries, radius))
        results: list[list[tuple[int, int]]] = [[] for _ in range(nq)]
        if not parts:
            return results
        q_idx = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        dist = np.concatenate([p[2] for p in parts])
        ids = self.ids[rows]
        order = np.lexsort((ids, dist, q_idx))
        for qi, ident, d in zip(
            q_idx[order].tolist(), ids[order].tolist(), dist[order].tolist(), strict=True
        ):
            results[qi].append((ident, d))
        return results

    def _tail_search(self, queries: U64, radius: int) -> Found:
        """Brute force over the unmerged tail (at most ``merge_at`` codes)."""
        tail = self.codes[self.indexed :]
        q_parts, r_parts, d_parts = [], [], []
        step = max(1, 2_000_000 // max(1, tail.shape[0]))
        for start in range(0, queries.shape[0], step):
            block = queries[start : start + step]
            d = np.bitwise_count(block[:, None, :] ^ tail[None, :, :]).sum(axis=2, dtype=np.int64)
            qi, ti = np.nonzero((d <= radius) & self.alive[self.indexed :][None, :])
            q_parts.append(qi.astype(np.int64) + start)
            r_parts.append(ti.astype(np.int64) + self.indexed)
            d_parts.append(d[qi, ti])
        return np.concatenate(q_parts), np.concatenate(r_parts), np.concatenate(d_parts)

    def _indexed_search(self, queries: U64, radius: int) -> Found:
        tau1, tau2 = radius // self.m, (2 * radius) // self.m
        probe = self._probe(tau1)
        if not self.use_kernel:
            return self._numpy_search(queries, radius, probe)
        args = (
            self.codes[: self.indexed],
            self.alive,
            self.offsets,
            self.fps,
            self.rows,
            self.row_bytes,
        )
        nq = queries.shape[0]
        threads = self.threads if nq >= 64 else 1
        if threads <= 1:
            return kernel.search(*args, queries, probe.masks, probe.bits, radius, tau1, tau2)
        bounds = np.linspace(0, nq, threads + 1).astype(int)
        with ThreadPoolExecutor(threads) as pool:
            futures = [
                pool.submit(
                    kernel.search,
                    *args,
                    queries[lo:hi],
                    probe.masks,
                    probe.bits,
                    radius,
                    tau1,
                    tau2,
                )
                for lo, hi in itertools.pairwise(bounds.tolist())
            ]
            found = [f.result() for f in futures]
        return (
            np.concatenate([q + lo for (q, _, _), lo in zip(found, bounds, strict=False)]),
            np.concatenate([r for _, r, _ in found]),
            np.concatenate([d for _, _, d in found]),
        )

    def _numpy_search(self, queries: U64, radius: int, probe: _Probe) -> Found:
        """The same search in vectorised numpy, a block of queries at a time so the
        temporary candidate arrays stay around 4M entries however large the batch is."""
        per_query = len(probe.masks) * self.m * max(1, self.indexed >> 16)
        step = max(1, 4_000_000 // per_query)
        parts = [
            self._numpy_block(queries[start : start + step], radius, probe, start)
            for start in range(0, queries.shape[0], step)
        ]
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    def _numpy_block(self, queries: U64, radius: int, probe: _Probe, first: int) -> Found:
        m, tau2 = self.m, (2 * radius) // self.m
        nprobe = probe.masks.shape[0]
        qchunks = np.stack([_chunk(queries, c) for c in range(m)], axis=1).astype(np.int64)
        cand_q, cand_r, cand_t = [], [], []
        for t in range(m):
            keys = (qchunks[:, t, None] ^ probe.masks[None, :]).ravel()  # (nq * nprobe)
            starts = self.offsets[t, keys].astype(np.int64)
            lengths = self.offsets[t, keys + 1].astype(np.int64) - starts
            pos, bucket = _expand(starts, lengths)
            q_of = bucket // nprobe
            if t == 0:
                rows = pos  # table 0 is the code array itself
            else:
                nxt = qchunks[q_of, (t + 1) % m].astype(np.uint16)
                d_next = np.bitwise_count(self.fps[t - 1, pos] ^ nxt).astype(np.int64)
                keep = d_next + probe.bits[bucket % nprobe] <= tau2
                q_of = q_of[keep]
                rows = _unpack_rows(self.rows[t - 1], pos[keep], self.row_bytes)
            cand_q.append(q_of)
            cand_r.append(rows)
            cand_t.append(np.full(rows.shape[0], t, dtype=np.int64))
        q_idx, rows, table = np.concatenate(cand_q), np.concatenate(cand_r), np.concatenate(cand_t)
        x = self.codes[rows] ^ queries[q_idx]
        dist = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
        ok = (dist <= radius) & self.alive[rows]
        q_idx, rows, table, dist, x = q_idx[ok], rows[ok], table[ok], dist[ok], x[ok]
        # Report each pair from the first table whose chain condition it meets (as the kernel).
        d = np.stack([np.bitwise_count(_chunk(x, c)) for c in range(m)], axis=1).astype(np.int64)
        chain = (d <= radius // m) & (d + np.roll(d, -1, axis=1) <= tau2)
        ok = np.argmax(chain, axis=1) == table
        return q_idx[ok] + first, rows[ok], dist[ok]

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """Header (magic, JSON length, JSON padded to 8 bytes) then raw little-endian
        arrays, each starting 8-aligned relative to the blob: no pickle."""
        self.compact()  # a saved index has no tail and no tombstones
        n = int(self.codes.shape[0])
        header = json.dumps(
            {"version": FORMAT_VERSION, "bits": self.bits, "n": n, "row_bytes": self.row_bytes}
        ).encode()
        header += b" " * (-(12 + len(header)) % 8)
        parts = [
            MAGIC,
            struct.pack("<I", len(header)),
            header,
            self.codes.astype("<u8").tobytes(),
            self.ids.astype("<i8").tobytes(),
            # An empty index stores no bucket offsets (they are all zero).
            self.offsets.astype("<i4").tobytes() if n else b"",
            self.fps.astype("<u2").tobytes(),
            self.rows.tobytes(),
        ]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> MultiIndex:
        view = memoryview(data)
        if len(view) < 12 or bytes(view[:8]) != MAGIC:
            raise IndexFormatError("not a LIBRA multi-index file")
        (hlen,) = struct.unpack("<I", view[8:12])
        try:
            header = json.loads(bytes(view[12 : 12 + hlen]))
            bits, n, version = int(header["bits"]), int(header["n"]), int(header["version"])
            row_bytes = int(header.get("row_bytes", 4))
            index = cls(bits)
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"bad index header: {exc}") from exc
        if version == 1:
            return cls._from_v1(view[12 + hlen :], bits, n)
        if version != FORMAT_VERSION:
            raise IndexFormatError(f"index format version {version} (expected {FORMAT_VERSION})")
        if row_bytes not in (3, 4) or n < 0:
            raise IndexFormatError(f"bad index header: n={n}, row_bytes={row_bytes}")
        tables = index.m - 1
        layout = [
            ("<u8", n * index.words),
            ("<i8", n),
            ("<i4", index.m * (BUCKETS + 1) if n else 0),
            ("<u2", tables * n),
            ("u1", tables * n * row_bytes),
        ]
        arrays = cls._arrays(view, 12 + hlen, layout)
        # Views on the buffer, no copies (on little-endian hosts): loading is O(1) work.
        index.codes = arrays[0].astype(np.uint64, copy=False).reshape(n, index.words)
        index.ids = _ids(arrays[1].astype(np.int64, copy=False))
        if n:
            offsets = arrays[2].astype(np.int32, copy=False).reshape(index.m, BUCKETS + 1)
            # The compiled search trusts the bucket bounds: check them (row numbers read
            # from the tables are checked by the search itself).
            if (offsets[:, 0] != 0).any() or (offsets[:, -1] != n).any():
                raise IndexFormatError("index bucket offsets do not match the code count")
            if (np.diff(offsets, axis=1) < 0).any():
                raise IndexFormatError("index bucket offsets are not ordered")
            index.offsets = offsets
        index.fps = arrays[3].astype(np.uint16, copy=False).reshape(tables, n)
        index.rows = arrays[4].astype(np.uint8, copy=False).reshape(tables, n * row_bytes)
        index.row_bytes = row_bytes
        index.alive = np.ones(n, dtype=bool)
        index.indexed = n
        return index

    @staticmethod
    def _arrays(
        view: memoryview, at: int, layout: list[tuple[str, int]]
    ) -> list[npt.NDArray[np.generic]]:
        sizes = [np.dtype(dtype).itemsize * count for dtype, count in layout]
        if len(view) != at + sum(sizes):
            raise IndexFormatError("index file is truncated or has trailing bytes")
        arrays = []
        for (dtype, count), size in zip(layout, sizes, strict=True):
            arrays.append(_aligned(np.frombuffer(view[at : at + size], dtype=dtype, count=count)))
            at += size
        return arrays

    @classmethod
    def _from_v1(cls, body: memoryview, bits: int, n: int) -> MultiIndex:
        """Format 1 (plain MIH tables, no fingerprints): its codes and ids are rebuilt into
        the current layout (``upgraded_from`` tells the caller; ``to_bytes`` writes format 2).
        The node's own index file (persist.py) is rebuilt from the lists instead."""
        probe = cls(bits)
        layout = [
            ("<u8", n * probe.words),
            ("<i8", n),
            ("<i4", probe.m * n),
            ("<i4", probe.m * (BUCKETS + 1) if n else 0),
        ]
        codes, ids, _, _ = cls._arrays(body, 0, layout)
        logger.warning(
            "multi-index file is format 1 (current %d): rebuilding its %d codes", FORMAT_VERSION, n
        )
        index = cls.build(bits, ids.astype(np.int64), codes.astype(np.uint64).reshape(n, -1))
        index.upgraded_from = 1
        return index
