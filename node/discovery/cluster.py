"""PDQ clusters of candidates: connected components of the "near-duplicate" graph.

Two images are near-duplicates when their PDQ hashes differ in at most ``max_distance`` bits
(settings.discovery.cluster_max_distance) and both hashes have quality >= 50 (below that PDQ
collides far too easily; such an image stays alone). A cluster is a connected component of
that graph (single linkage): A~B and B~C put A, B and C together even when A and C are farther
apart. Connected components, not leader clustering, because they do not depend on the order
the images arrive in, so a cycle that finds the same images in another order forms the same
clusters.

Incremental: the existing pending candidates were clustered by earlier cycles, so only the new
images are searched (against old and new: a numpy XOR-popcount over all pairs for small
problems, else the node's exact multi-index Hamming search, node.matching.index.MultiIndex);
the old clusters enter as given groups. When the given groups
are the components of the old images, the result equals the components of the whole graph
(tests/node/test_discovery_cluster.py proves both against brute force).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from node.matching.index import MultiIndex
from node.matching.vpdq import PDQ_BITS, WORDS
from protocol.hashes import PDQ_MIN_QUALITY

U64 = npt.NDArray[np.uint64]
# Up to this many (query, code) pairs the neighbours are found by a plain numpy XOR-popcount
# over all pairs: exact too, and for a cycle's few candidates faster than building a
# multi-index (whose compiled search kernel takes seconds to load in a process that has not
# used it yet).
BRUTE_PAIRS = 4_000_000
_BLOCK = 1_000_000  # XOR words held at once by the numpy path


def pack(values: Sequence[str]) -> U64:
    """PDQ hex strings (64 digits) -> (n, 4) big-endian uint64 words. A bad value raises
    ValueError naming it."""
    for value in values:
        if len(value) != PDQ_BITS // 4:
            raise ValueError(f"a PDQ hash has 64 hex digits, got {len(value)}: {value!r}")
    if not values:
        return np.zeros((0, WORDS), dtype=np.uint64)
    try:
        raw = bytes.fromhex("".join(values))
    except ValueError as exc:
        raise ValueError(f"a PDQ hash is not hex: {exc}") from exc
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), WORDS)


class _Forest:
    """Union-find with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def components(
    codes: U64,
    qualities: Sequence[int] | npt.NDArray[np.int64],
    max_distance: int,
    *,
    search: Iterable[int] | None = None,
    groups: Iterable[Sequence[int]] = (),
    brute_pairs: int = BRUTE_PAIRS,
) -> list[int]:
    """The component label of each row (the smallest row number in its component).

    ``search``: the rows whose neighbours are looked for (default: all); edges between two rows
    outside it are not searched, they come from ``groups`` (rows known to be connected, e.g.
    the clusters of earlier cycles). Rows whose quality is below 50 have no edges (alone unless
    a group joins them). ``brute_pairs``: the numpy path up to this many pairs, else the
    multi-index (both exact; tests run both).
    """
    if not 0 <= max_distance <= PDQ_BITS:
        raise ValueError(f"a PDQ distance is 0..{PDQ_BITS}, got {max_distance}")
    codes = np.ascontiguousarray(codes, dtype=np.uint64).reshape(-1, WORDS)
    n = codes.shape[0]
    quality = np.asarray(qualities, dtype=np.int64)
    if quality.shape != (n,):
        raise ValueError(f"{n} codes but {quality.shape[0]} qualities")
    forest = _Forest(n)
    for group in groups:
        rows = list(group)
        for row in rows[1:]:
            forest.union(rows[0], row)
    good = np.flatnonzero(quality >= PDQ_MIN_QUALITY)
    wanted = np.arange(n) if search is None else np.fromiter(search, dtype=np.int64)
    queries = wanted[quality[wanted] >= PDQ_MIN_QUALITY] if wanted.size else wanted
    if good.size and queries.size:
        if queries.size * good.size <= brute_pairs:
            pairs = _near_pairs(codes, queries, good, max_distance)
        else:
            pairs = _indexed_pairs(codes, queries, good, max_distance)
        for row, other in pairs:
            forest.union(row, other)
    roots = [forest.find(row) for row in range(n)]
    smallest: dict[int, int] = {}
    for row, root in enumerate(roots):
        smallest.setdefault(root, row)
    return [smallest[root] for root in roots]


def _near_pairs(
    codes: U64, queries: npt.NDArray[np.int64], good: npt.NDArray[np.int64], max_distance: int
) -> list[tuple[int, int]]:
    """(query row, row) of every pair within ``max_distance``, by XOR and popcount."""
    out: list[tuple[int, int]] = []
    against = codes[good]
    step = max(1, _BLOCK // max(1, good.size))
    for start in range(0, queries.size, step):
        block = queries[start : start + step]
        distance = np.bitwise_count(codes[block][:, None, :] ^ against[None, :, :]).sum(axis=2)
        q, g = np.nonzero(distance <= max_distance)
        out.extend(zip(block[q].tolist(), good[g].tolist(), strict=True))
    return out


def _indexed_pairs(
    codes: U64, queries: npt.NDArray[np.int64], good: npt.NDArray[np.int64], max_distance: int
) -> list[tuple[int, int]]:
    """The same pairs through the node's multi-index (sub-linear per query)."""
    index = MultiIndex.build(PDQ_BITS, good, codes[good])
    near = index.search(codes[queries], max_distance)
    return [
        (row, other)
        for row, found in zip(queries.tolist(), near, strict=True)
        for other, _distance in found
    ]
