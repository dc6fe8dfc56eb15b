"""The multi-index-hashing search loop, compiled with numba.

The numpy formulation (mih._candidates) materialises every candidate pair of a batch in
temporary arrays and dedupes by sorting; this loop keeps one query's candidates in a small
buffer, verifies each full code with early exit and dedupes hits with a per-row stamp. The
benchmark (benchmarks/bench_matching.py) measures it against faiss and brute force. Without
numba the numpy path gives identical results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

njit: Any
try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a declared dependency
    njit = None

AVAILABLE = njit is not None


def _popcount64(x: Any) -> Any:
    # SWAR popcount; LLVM turns this into the POPCNT instruction where the CPU has it.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _search(
    codes: Any,
    alive: Any,
    rows: Any,
    offsets: Any,
    queries: Any,
    qchunks: Any,
    masks: Any,
    radius: int,
    seen: Any,
    stamp0: int,
) -> tuple[Any, Any, Any]:
    """Per query in three passes, each a run of independent loads the CPU can overlap:
    bucket bounds of every probe, then the candidate row numbers, then the full codes.
    (Walking bucket by bucket chains three cache misses per bucket instead.)"""
    m = offsets.shape[0]
    words = codes.shape[1]
    limit = np.uint64(radius)  # all-unsigned arithmetic: mixing int64 would go via float64
    nprobe = masks.shape[0]
    starts = np.empty(m * nprobe, dtype=np.int64)
    ends = np.empty(m * nprobe, dtype=np.int64)
    cand = np.empty(1024, dtype=np.int32)
    cap = 1024
    out_q = np.empty(cap, dtype=np.int64)
    out_r = np.empty(cap, dtype=np.int64)
    out_d = np.empty(cap, dtype=np.int64)
    count = 0
    for qi in range(queries.shape[0]):
        stamp = stamp0 + qi
        total = 0
        k = 0
        for t in range(m):
            base = qchunks[qi, t]
            for p in range(nprobe):
                key = base ^ masks[p]
                starts[k] = offsets[t, key]
                ends[k] = offsets[t, key + 1]
                total += ends[k] - starts[k]
                k += 1
        if total > cand.shape[0]:
            cand = np.empty(total * 2, dtype=np.int32)
        c = 0
        for t in range(m):
            for p in range(nprobe):
                k = t * nprobe + p
                for j in range(starts[k], ends[k]):
                    cand[c] = rows[t, j]
                    c += 1
        for i in range(c):
            row = cand[i]
            d = np.uint64(0)
            for w in range(words):
                d += _popcount64(codes[row, w] ^ queries[qi, w])
            # Dedupe only verified hits: touching `seen` for every candidate would cost a
            # second cache miss each.
            if d <= limit and alive[row] and seen[row] != stamp:
                seen[row] = stamp
                if count == cap:
                    cap *= 2
                    out_q = np.resize(out_q, cap)
                    out_r = np.resize(out_r, cap)
                    out_d = np.resize(out_d, cap)
                out_q[count] = qi
                out_r[count] = row
                out_d[count] = np.int64(d)
                count += 1
    return out_q[:count], out_r[:count], out_d[:count]


if njit is not None:
    _popcount64 = njit(inline="always", cache=True)(_popcount64)
    _search = njit(cache=True, nogil=True)(_search)


def search(
    codes: npt.NDArray[np.uint64],
    alive: npt.NDArray[np.bool_],
    rows: npt.NDArray[np.int32],
    offsets: npt.NDArray[np.int32],
    queries: npt.NDArray[np.uint64],
    qchunks: npt.NDArray[np.int64],
    masks: npt.NDArray[np.int64],
    radius: int,
    seen: npt.NDArray[np.int64],
    stamp0: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    q, r, d = _search(codes, alive, rows, offsets, queries, qchunks, masks, radius, seen, stamp0)
    return q, r, d
