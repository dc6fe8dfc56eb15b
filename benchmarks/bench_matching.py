"""Hamming range search: numpy brute force vs faiss IndexBinaryFlat vs faiss
IndexBinaryMultiHash (HMA's configuration) vs our multi-index-hashing index (numba kernel,
and the same index through its pure-numpy path), in one run.

    .venv/bin/python benchmarks/bench_matching.py [--sizes 1000000 10000000] [--bits 256 64]
        [--queries 1000] [--single 200] [--threads 2] [--no-numpy-path] [--json out.json]

Data: random codes (fixed seeds), "uniform" (independent bits) and "clustered" (codes drawn
around n/8 centres with ~6 % of bits flipped, so most codes have near neighbours, as real
image hashes do). Queries: half planted within the radius of a stored code, half drawn
like the data. PDQ (256 bits) at r <= 31, 64-bit hashes (pHash/dHash) at r <= 10.
faiss: IndexBinaryMultiHash(256, 16, 16) nflip=1 as HMA uses it (for 64 bits: (64, 4, 16)
nflip=2, the same pigeonhole bound); faiss range_search counts distance < radius, so it is
given radius + 1. All engines run single-threaded (faiss.omp_set_num_threads(1)); ours is
also timed with its batch split over --threads threads (a separate row; the targets are
checked on one thread).
Reported per engine: build seconds, memory (bytes per code / raw code bytes), queries/s one
at a time ("single") and as one batch ("batched"), and recall against brute force.
Targets: PDQ >= 10,000 q/s at 1M and >= 3,000 at 10M; 64-bit >= 8,000 at 1M and >= 2,000
at 10M; memory <= 4x the raw codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.matching.index import MultiIndex

RADIUS = {256: 31, 64: 10}
TARGETS = {
    (256, 1_000_000): 10_000,
    (256, 10_000_000): 3_000,
    (64, 1_000_000): 8_000,
    (64, 10_000_000): 2_000,
}
OURS = "ours (MIH+pigeonring, numba, 1 thread)"
OURS_NUMPY = "ours (same index, numpy path, 1 thread)"
Codes = npt.NDArray[np.uint64]
Results = list[set[int]]


def make_codes(n: int, bits: int, kind: str, rng: np.random.Generator) -> Codes:
    words = bits // 64
    if kind == "uniform":
        return rng.integers(0, 2**64, size=(n, words), dtype=np.uint64)
    centres = rng.integers(0, 2**64, size=(max(1, n // 8), words), dtype=np.uint64)
    codes = centres[rng.integers(0, centres.shape[0], size=n)]
    return codes ^ flips(n, bits, 0.06, rng)


def flips(n: int, bits: int, p: float, rng: np.random.Generator) -> Codes:
    """Random masks with each bit set with probability p (built 64 bits at a time)."""
    words = bits // 64
    out = np.zeros((n, words), dtype=np.uint64)
    for bit in range(64):
        on = (rng.random((n, words)) < p).astype(np.uint64)
        out |= on << np.uint64(bit)
    return out


def make_queries(codes: Codes, bits: int, kind: str, count: int, rng: np.random.Generator) -> Codes:
    radius = RADIUS[bits]
    half = count // 2
    planted = codes[rng.integers(0, codes.shape[0], size=half)].copy()
    for row in planted:  # flip a random number of bits <= radius
        positions = rng.choice(bits, size=int(rng.integers(0, radius + 1)), replace=False)
        for pos in positions:
            row[pos // 64] ^= np.uint64(1) << np.uint64(pos % 64)
    others = (
        make_codes(count - half, bits, kind, rng)
        if kind == "uniform"
        else (
            codes[rng.integers(0, codes.shape[0], size=count - half)]
            ^ flips(count - half, bits, 0.2, rng)
        )
    )
    return np.concatenate([planted, others])


def to_faiss(codes: Codes) -> npt.NDArray[np.uint8]:
    # faiss packs bits little-endian per byte; the byte order just has to agree for both sides.
    return np.ascontiguousarray(codes).view(np.uint8).reshape(codes.shape[0], -1)


def brute(codes: Codes, queries: Codes, radius: int) -> Results:
    out = []
    for q in queries:
        d = np.bitwise_count(codes ^ q).sum(axis=1, dtype=np.int64)
        out.append(set(np.flatnonzero(d <= radius).tolist()))
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_engine(
    name: str, search: Callable[[Codes], Results], queries: Codes, single: int, truth: Results
) -> dict[str, Any]:
    search(queries[:2])  # warm-up (numba compilation, faiss lazy init)
    t_batch, found = timed(lambda: search(queries))
    t_single, _ = timed(lambda: [search(queries[i : i + 1]) for i in range(single)])
    hits = sum(len(f & t) for f, t in zip(found, truth, strict=True))
    total = sum(len(t) for t in truth)
    return {
        "engine": name,
        "batched_qps": len(queries) / t_batch,
        "single_qps": single / t_single,
        "recall": hits / total if total else 1.0,
        "true_matches": total,
    }


def bench(
    n: int,
    bits: int,
    kind: str,
    nq: int,
    single: int,
    with_brute_single: int,
    numpy_path: bool,
    threads: int,
) -> list[dict[str, Any]]:
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(n + bits + (kind == "clustered"))
    codes = make_codes(n, bits, kind, rng)
    queries = make_queries(codes, bits, kind, nq, rng)
    radius = RADIUS[bits]
    raw = codes.nbytes
    rows: list[dict[str, Any]] = []

    # Ground truth: faiss flat (exhaustive, exact); numpy brute force is checked against it.
    t_build, flat = timed(lambda: _flat(faiss, codes, bits))

    def flat_search(q: Codes) -> Results:
        lims, _, labels = flat.range_search(to_faiss(q), radius + 1)
        return [set(labels[lims[i] : lims[i + 1]].tolist()) for i in range(q.shape[0])]

    _, truth = timed(lambda: flat_search(queries))
    sample = min(with_brute_single, nq)
    t_np, brute_found = timed(lambda: brute(codes, queries[:sample], radius))
    assert brute_found == truth[:sample], "numpy brute force and faiss flat disagree"
    rows.append(
        {
            "engine": "numpy brute force",
            "build_s": 0.0,
            "mem_x": 1.0,
            "batched_qps": sample / t_np,
            "single_qps": sample / t_np,
            "recall": 1.0,
        }
    )
    flat_row = run_engine(
        "faiss IndexBinaryFlat",
        flat_search,
        queries[: max(sample, 20)],
        min(single, sample),
        truth[: max(sample, 20)],
    )
    rows.append({**flat_row, "build_s": t_build, "mem_x": 1.0})

    m, nflip = (16, 1) if bits == 256 else (4, 2)
    t_build, mh = timed(lambda: _multihash(faiss, codes, bits, m, nflip))
    mem = len(faiss.serialize_index_binary(mh))

    def mh_search(q: Codes) -> Results:
        lims, _, labels = mh.range_search(to_faiss(q), radius + 1)
        return [set(labels[lims[i] : lims[i + 1]].tolist()) for i in range(q.shape[0])]

    row = run_engine(
        f"faiss IndexBinaryMultiHash({bits},{m},16) nflip={nflip}",
        mh_search,
        queries,
        single,
        truth,
    )
    rows.append({**row, "build_s": t_build, "mem_x": mem / raw})

    t_build, ours = timed(lambda: MultiIndex.build(bits, np.arange(n), codes))

    def ours_search(q: Codes) -> Results:
        return [{i for i, _ in hits} for hits in ours.search(q, radius)]

    mem_x = ours.nbytes / raw
    ours.threads = 1
    row = run_engine(OURS, ours_search, queries, single, truth)
    rows.append({**row, "build_s": t_build, "mem_x": mem_x})
    if threads > 1:  # batches split over threads (the compiled search releases the GIL)
        ours.threads = threads
        row = run_engine(f"ours (numba, {threads} threads)", ours_search, queries, single, truth)
        rows.append({**row, "build_s": t_build, "mem_x": mem_x})
        ours.threads = 1
    if numpy_path:  # what numba pays: the same index searched by the pure-numpy path
        ours.use_kernel = False
        row = run_engine(OURS_NUMPY, ours_search, queries, single, truth)
        rows.append({**row, "build_s": t_build, "mem_x": mem_x})
        ours.use_kernel = True
    t_save, blob = timed(ours.to_bytes)
    t_load, _ = timed(lambda: MultiIndex.from_bytes(blob))
    for r in rows:
        if r["engine"].startswith("ours"):
            r.update({"save_s": t_save, "load_s": t_load})
    for r in rows:
        # The machine may be shared: the load average says how much of a core we had.
        r.update({"n": n, "bits": bits, "kind": kind, "radius": radius, "load": os.getloadavg()[0]})
    return rows


def _flat(faiss: Any, codes: Codes, bits: int) -> Any:
    index = faiss.IndexBinaryFlat(bits)
    index.add(to_faiss(codes))
    return index


def _multihash(faiss: Any, codes: Codes, bits: int, m: int, nflip: int) -> Any:
    index = faiss.IndexBinaryMultiHash(bits, m, bits // m)
    index.nflip = nflip
    index.add(to_faiss(codes))
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--bits", type=int, nargs="+", default=[256, 64])
    parser.add_argument("--kinds", nargs="+", default=["uniform", "clustered"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--brute", type=int, default=50, help="queries for numpy brute force")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--no-numpy-path", action="store_true", help="skip timing our index without numba"
    )
    parser.add_argument("--threads", type=int, default=2, help="also time ours on N threads")
    args = parser.parse_args()
    results = []
    print(
        f"{'n':>9} {'bits':>4} {'kind':9} {'engine':42} {'build s':>8} {'mem x':>6} "
        f"{'single q/s':>10} {'batch q/s':>10} {'recall':>6}"
    )
    for n in args.sizes:
        for bits in args.bits:
            for kind in args.kinds:
                rows = bench(
                    n,
                    bits,
                    kind,
                    args.queries,
                    args.single,
                    args.brute,
                    not args.no_numpy_path,
                    args.threads,
                )
                base = {r["engine"]: r for r in rows}
                mh = next(r for name, r in base.items() if "MultiHash" in name)
                for r in rows:
                    r["batched_vs_faiss_mih"] = r["batched_qps"] / mh["batched_qps"]
                    print(
                        f"{n:>9} {bits:>4} {kind:9} {r['engine']:42} {r['build_s']:8.2f} "
                        f"{r['mem_x']:6.2f} {r['single_qps']:10.0f} {r['batched_qps']:10.0f} "
                        f"{r['recall']:6.3f}",
                        flush=True,
                    )
                ours = base[OURS]
                brute_row = base["numpy brute force"]
                flat = base["faiss IndexBinaryFlat"]
                ratios = (
                    f"  ours batched: {ours['batched_qps'] / mh['batched_qps']:.1f}x faiss "
                    f"MultiHash, {ours['batched_qps'] / flat['batched_qps']:.1f}x faiss flat, "
                    f"{ours['batched_qps'] / brute_row['batched_qps']:.0f}x numpy brute force"
                )
                if OURS_NUMPY in base:
                    speedup = ours["batched_qps"] / base[OURS_NUMPY]["batched_qps"]
                    ratios += f", numba {speedup:.1f}x numpy path"
                print(
                    ratios + f"; index load {ours['load_s']:.2f}s; "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                target = TARGETS.get((bits, n))
                if target:
                    print(
                        f"  target {target} q/s: ours batched {ours['batched_qps']:.0f} "
                        f"({'met' if ours['batched_qps'] >= target else 'NOT met'}), "
                        f"single {ours['single_qps']:.0f} "
                        f"({'met' if ours['single_qps'] >= target else 'NOT met'})"
                    )
                results.extend(rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
