"""The multi-index-hashing search loop, compiled with numba.

Per query and chunk table: look up the bucket of every probe, scan the bucket's 16-bit
fingerprints (the next chunk of each code, stored inline and contiguous), and only for the
~1 % of entries that pass the pigeonring filter (see mih.py) read the row number and verify
the full code. Table 0 has no fingerprint array: the codes themselves are sorted by chunk 0,
so its buckets are runs of codes whose chunk 1 serves as the fingerprint. Each hit is
reported by exactly one table (the first whose chain condition it meets), so no
deduplication state is needed and the loop is safe to run on several threads at once
(``nogil``).

Two loop details matter as much as the layout (A/B in one process at 10M codes, on the
loaded 2-core machine: ~3x for PDQ, 1.8x for 64-bit codes over a plain filter loop; see
docs/benchmarks.md): each run's survivors are counted in a branch-free loop the compiler
vectorises before the run is walked (only runs holding a survivor are walked), and every
bucket run is touched once per cache line before the scan, so its misses overlap.

The pure-numpy formulation (mih._numpy_search) gives identical results; the benchmark
(benchmarks/bench_matching.py) reports both.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

# numba is imported, and the loop compiled (or loaded from numba's cache), on the first search
# only (issue 17): the import alone costs ~0.3 s idle and over 1 s at load, which a process
# that never searches with the kernel (`libra --help`, a `list match` of a few hashes, which
# uses the numpy path) should not pay.
AVAILABLE = importlib.util.find_spec("numba") is not None
_compile_lock = threading.Lock()
_compiled: list[Any] = []


def _popcount64(x: Any) -> Any:
    # SWAR popcount; LLVM turns this into the POPCNT instruction where the CPU has it.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _chunk_distance(x: Any, c: int) -> Any:
    shift = np.uint64(48 - 16 * (c & 3))
    return np.int64(_popcount64((x[c >> 2] >> shift) & np.uint64(0xFFFF)))


def _first_start(x: Any, m: int, tau1: int, tau2: int) -> int:
    """The first chunk t whose chain condition holds for the XOR ``x`` of two codes:
    d_t <= tau1 and d_t + d_{t+1} <= tau2 (-1 if none). The hit is reported by table t only."""
    prev = _chunk_distance(x, 0)
    for c in range(1, m + 1):
        d = _chunk_distance(x, c % m)
        if prev <= tau1 and prev + d <= tau2:
            return c - 1
        prev = d
    return -1


def _search(
    codes: Any,
    alive: Any,
    offsets: Any,
    fps: Any,
    rows: Any,
    row_bytes: int,
    queries: Any,
    masks: Any,
    mask_bits: Any,
    radius: int,
    tau1: int,
    tau2: int,
) -> tuple[Any, Any, Any, Any]:
    """Per query in three passes, each a run of independent loads the CPU can overlap:
    filter every probed bucket (sequential fingerprint runs), then turn the survivors'
    positions into row numbers, then verify their codes. (Doing all three per entry chains
    two cache misses per survivor and leaves the CPU waiting on each.) Measured variants:
    benchmarks/bench_matching.py and docs/benchmarks.md."""
    m = offsets.shape[0]
    words = codes.shape[1]
    limit = np.uint64(radius)  # all-unsigned arithmetic: mixing int64 would go via float64
    nprobe = masks.shape[0]
    cap = 256
    out_q = np.empty(cap, dtype=np.int64)
    out_r = np.empty(cap, dtype=np.int64)
    out_d = np.empty(cap, dtype=np.int64)
    cand_t = np.empty(1024, dtype=np.int64)
    cand_j = np.empty(1024, dtype=np.int64)
    los = np.empty(m * nprobe, dtype=np.int64)
    his = np.empty(m * nprobe, dtype=np.int64)
    code_stride = max(1, 8 // words)  # codes per 64-byte line
    touched = np.uint64(0)
    c1 = np.uint64(32)  # chunk 1 = bits 47..32 of word 0
    low16 = np.uint64(0xFFFF)
    x = np.empty(words, dtype=np.uint64)
    qchunk = np.empty(m, dtype=np.int64)
    count = 0
    for qi in range(queries.shape[0]):
        for c in range(m):
            shift = np.uint64(48 - 16 * (c & 3))
            qchunk[c] = np.int64((queries[qi, c >> 2] >> shift) & np.uint64(0xFFFF))
        # Bucket bounds of every probe, then one load per cache line of every bucket run:
        # all independent, so the memory system fetches them in parallel before the scan
        # needs them (numba has no prefetch instruction; ``touched`` keeps the loads alive).
        k = 0
        for t in range(m):
            for p in range(nprobe):
                key = qchunk[t] ^ masks[p]
                los[k] = offsets[t, key]
                his[k] = offsets[t, key + 1]
                k += 1
        k = 0
        for t in range(m):
            for _ in range(nprobe):
                if t == 0:
                    for j in range(los[k], his[k], code_stride):
                        touched += codes[j, 0]
                else:
                    for j in range(los[k], his[k], 32):
                        touched += fps[t - 1, j]
                k += 1
        # Pass 1: candidates (table, position); table 0 positions are rows already.
        nc = 0
        k = 0
        for t in range(m):
            nxt = np.uint64(qchunk[(t + 1) % m])
            for p in range(nprobe):
                lo = los[k]
                hi = his[k]
                k += 1
                lim = np.uint64(tau2 - mask_bits[p])
                if t == 0:  # the fingerprint is chunk 1 of the code itself
                    hits = 0
                    for j in range(lo, hi):
                        hits += _popcount64(((codes[j, 0] >> c1) & low16) ^ nxt) <= lim
                    if hits == 0:
                        continue
                    if nc + hits > cand_t.shape[0]:
                        cand_t = np.resize(cand_t, 2 * (nc + hits))
                        cand_j = np.resize(cand_j, 2 * (nc + hits))
                    for j in range(lo, hi):
                        if _popcount64(((codes[j, 0] >> c1) & low16) ^ nxt) <= lim:
                            cand_t[nc] = 0
                            cand_j[nc] = j
                            nc += 1
                    continue
                run = fps[t - 1, lo:hi]
                # Count first (a branch-free loop the compiler vectorises), and walk the
                # run again only when it holds a survivor (~1 % of entries for PDQ).
                hits = 0
                for i in range(run.shape[0]):
                    hits += _popcount64(np.uint64(run[i]) ^ nxt) <= lim
                if hits == 0:
                    continue
                if nc + hits > cand_t.shape[0]:
                    cand_t = np.resize(cand_t, 2 * (nc + hits))
                    cand_j = np.resize(cand_j, 2 * (nc + hits))
                for i in range(run.shape[0]):
                    if _popcount64(np.uint64(run[i]) ^ nxt) <= lim:
                        cand_t[nc] = t
                        cand_j[nc] = lo + i
                        nc += 1
        # Pass 2: positions -> row numbers.
        for i in range(nc):
            t = cand_t[i]
            if t == 0:
                continue
            k = cand_j[i] * row_bytes
            row = (
                np.int64(rows[t - 1, k])
                | (np.int64(rows[t - 1, k + 1]) << 8)
                | (np.int64(rows[t - 1, k + 2]) << 16)
            )
            if row_bytes == 4:
                row |= np.int64(rows[t - 1, k + 3]) << 24
            if row >= codes.shape[0]:  # a damaged table must not read outside the codes
                raise IndexError("corrupt index table: row number out of range")
            cand_j[i] = row
        # Pass 3: verify the full codes.
        for i in range(nc):
            row = cand_j[i]
            d = np.uint64(0)
            for w in range(words):
                x[w] = codes[row, w] ^ queries[qi, w]
                d += _popcount64(x[w])
            if d > limit or not alive[row]:
                continue
            if _first_start(x, m, tau1, tau2) != cand_t[i]:
                continue  # another table reports this pair
            if count == cap:
                cap *= 2
                out_q = np.resize(out_q, cap)
                out_r = np.resize(out_r, cap)
                out_d = np.resize(out_d, cap)
            out_q[count] = qi
            out_r[count] = row
            out_d[count] = np.int64(d)
            count += 1
    return out_q[:count], out_r[:count], out_d[:count], touched


def _compiled_search() -> Any:
    """The compiled ``_search``, made once per process (thread-safe). Its helpers are
    replaced by their compiled versions in this module's globals first: numba resolves the
    global names a compiled function calls when it compiles it."""
    with _compile_lock:
        if not _compiled:
            from numba import njit

            module = globals()
            module["_popcount64"] = njit(inline="always", cache=True)(_popcount64)
            module["_chunk_distance"] = njit(inline="always", cache=True)(_chunk_distance)
            module["_first_start"] = njit(cache=True)(_first_start)
            _compiled.append(njit(cache=True, nogil=True)(_search))
        return _compiled[0]


def search(
    codes: npt.NDArray[np.uint64],
    alive: npt.NDArray[np.bool_],
    offsets: npt.NDArray[np.int32],
    fps: npt.NDArray[np.uint16],
    rows: npt.NDArray[np.uint8],
    row_bytes: int,
    queries: npt.NDArray[np.uint64],
    masks: npt.NDArray[np.int64],
    mask_bits: npt.NDArray[np.int64],
    radius: int,
    tau1: int,
    tau2: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(query number, row, distance) of every live code within ``radius`` of a query."""
    q, r, d, _ = _compiled_search()(
        codes, alive, offsets, fps, rows, row_bytes, queries, masks, mask_bits, radius, tau1, tau2
    )
    return q, r, d
