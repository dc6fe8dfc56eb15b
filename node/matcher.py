"""Match an image's hashes against the node's private lists.

Exact families (MD5, SHA-1, SHA-256) are dictionary lookups. Perceptual families (PDQ, pHash,
dHash) are matched by Hamming distance: each family's list is packed into a (n, words) uint64
array once, and a query is one XOR plus ``np.bitwise_count`` over the whole array. That is a
brute-force scan, fine for lists up to a few million entries; multi-index hashing is the next
step when lists grow beyond that.

PDQ hashes whose quality is below the configured minimum never match: low-quality PDQ hashes
(flat or tiny images) collide far too easily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from protocol.hashes import FAMILIES, PDQ_MIN_QUALITY, HashFamily, InvalidHash, normalize
from protocol.models import ImageHashes

from .models import ListEntry

EXACT_FAMILIES = tuple(f for f, spec in FAMILIES.items() if not spec.perceptual)
PERCEPTUAL_FAMILIES = tuple(f for f, spec in FAMILIES.items() if spec.perceptual)


@dataclass(frozen=True)
class Thresholds:
    """Largest Hamming distance that still counts as a match, per perceptual family."""

    pdq_max_distance: int = FAMILIES[HashFamily.PDQ].default_max_distance
    pdq_min_quality: int = PDQ_MIN_QUALITY
    phash_max_distance: int = FAMILIES[HashFamily.PHASH].default_max_distance
    dhash_max_distance: int = FAMILIES[HashFamily.DHASH].default_max_distance

    def max_distance(self, family: HashFamily) -> int:
        if family is HashFamily.PDQ:
            return self.pdq_max_distance
        if family is HashFamily.PHASH:
            return self.phash_max_distance
        if family is HashFamily.DHASH:
            return self.dhash_max_distance
        return 0


@dataclass(frozen=True)
class Match:
    entry_id: int
    family: HashFamily
    distance: int


def _rank(match: Match) -> tuple[int, int, int]:
    return (FAMILIES[match.family].precedence, match.distance, match.entry_id)


def best(matches: Iterable[Match]) -> Match | None:
    """The strongest match: family precedence (sha256 > sha1 > md5 > pdq > phash > dhash),
    then the smaller distance (then the smaller entry id, so the choice is deterministic)."""
    return min(matches, key=_rank, default=None)


def pack(values: Sequence[str], bits: int) -> npt.NDArray[np.uint64]:
    """Hex strings of ``bits`` bits -> (n, bits/64) array of big-endian 64-bit words."""
    words = bits // 64
    if not values:
        return np.zeros((0, words), dtype=np.uint64)
    raw = bytes.fromhex("".join(values))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(values), words)


class HammingTable:
    """One perceptual family's entries, packed for vectorised Hamming distance."""

    def __init__(self, family: HashFamily, ids: Sequence[int], values: Sequence[str]) -> None:
        self.family = family
        self.bits = FAMILIES[family].bits
        self.ids: npt.NDArray[np.int64] = np.asarray(ids, dtype=np.int64)
        self.words = pack(values, self.bits)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def distances(self, query: str) -> npt.NDArray[np.int64]:
        q = pack([query], self.bits)
        counts: npt.NDArray[np.int64] = np.bitwise_count(self.words ^ q).sum(axis=1, dtype=np.int64)
        return counts

    def within(self, queries: Sequence[str], max_distance: int) -> list[tuple[int, int]]:
        """(entry id, distance) of entries within ``max_distance`` of any query (minimum
        distance over the queries, e.g. the dihedral variants of one PDQ hash)."""
        if len(self) == 0 or not queries:
            return []
        nearest = self.distances(queries[0])
        for query in queries[1:]:
            nearest = np.minimum(nearest, self.distances(query))
        hits = np.flatnonzero(nearest <= max_distance)
        return [(int(self.ids[i]), int(nearest[i])) for i in hits]


class MatchIndex:
    """All list entries, ready for matching. Build once per crawl cycle."""

    def __init__(
        self,
        entries: Iterable[tuple[int, HashFamily | str, str]],
        thresholds: Thresholds | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self._exact: dict[HashFamily, dict[str, int]] = {f: {} for f in EXACT_FAMILIES}
        ids: dict[HashFamily, list[int]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        values: dict[HashFamily, list[str]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        for entry_id, family_name, value in entries:
            family = HashFamily(family_name)
            value = normalize(family, value)
            if family in self._exact:
                self._exact[family][value] = entry_id
            else:
                ids[family].append(entry_id)
                values[family].append(value)
        self._tables = {f: HammingTable(f, ids[f], values[f]) for f in PERCEPTUAL_FAMILIES}

    @classmethod
    def from_db(cls, engine: Engine, thresholds: Thresholds | None = None) -> MatchIndex:
        with Session(engine) as session:
            rows = session.exec(select(ListEntry.id, ListEntry.family, ListEntry.value)).all()
        return cls(((int(i), f, v) for i, f, v in rows if i is not None), thresholds)

    def __len__(self) -> int:
        return sum(len(d) for d in self._exact.values()) + sum(
            len(t) for t in self._tables.values()
        )

    def counts(self) -> dict[HashFamily, int]:
        out = {f: len(d) for f, d in self._exact.items()}
        out.update({f: len(t) for f, t in self._tables.items()})
        return out

    def _queries(self, family: HashFamily, hashes: ImageHashes) -> list[str]:
        raw: list[str] = [getattr(hashes, family.value)]
        if family is HashFamily.PDQ:
            if hashes.pdq_quality < self.thresholds.pdq_min_quality:
                return []
            raw.extend(hashes.pdq_dihedral or [])
        queries = []
        for value in raw:
            try:
                queries.append(normalize(family, value))
            except InvalidHash:
                continue  # a malformed value from the function cannot match anything
        return queries

    def match(self, hashes: ImageHashes) -> list[Match]:
        """Every entry the image matches, strongest first."""
        found: list[Match] = []
        for family, table in self._exact.items():
            for query in self._queries(family, hashes):
                entry_id = table.get(query)
                if entry_id is not None:
                    found.append(Match(entry_id, family, 0))
        for family, hamming_table in self._tables.items():
            limit = self.thresholds.max_distance(family)
            for entry_id, distance in hamming_table.within(self._queries(family, hashes), limit):
                found.append(Match(entry_id, family, distance))
        return sorted(found, key=_rank)

    def best(self, hashes: ImageHashes) -> Match | None:
        return best(self.match(hashes))
