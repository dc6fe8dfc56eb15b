"""Match an image's hashes against the node's private lists.

Exact families (MD5, SHA-1, SHA-256) are dictionary lookups. Perceptual families (PDQ, pHash,
dHash) are matched by Hamming distance through node.index.MultiIndex (multi-index hashing:
exact, sub-linear, incremental). ``match_many`` matches a whole crawl batch in one vectorised
call per family. PhotoDNA entries are stored and exported only, never matched (licence), and
retired entries (removed lists still referenced by a sighting) never match.

PDQ hashes whose quality is below the configured minimum never match: low-quality PDQ hashes
(flat or tiny images) collide far too easily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from protocol.hashes import FAMILIES, PDQ_MIN_QUALITY, HashFamily, InvalidHash, normalize
from protocol.models import ImageHashes

from .index import MultiIndex
from .models import ListEntry

EXACT_FAMILIES = tuple(f for f, spec in FAMILIES.items() if not spec.perceptual)
PERCEPTUAL_FAMILIES = tuple(f for f, spec in FAMILIES.items() if spec.perceptual)
FAMILY_NAMES = tuple(f.value for f in FAMILIES)


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


class MatchIndex:
    """All list entries, ready for matching. Build once per crawl cycle or load it
    (node.index.persist); ``add``/``remove`` change it without a rebuild."""

    def __init__(
        self,
        entries: Iterable[tuple[int, HashFamily | str, str]] = (),
        thresholds: Thresholds | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self._exact: dict[HashFamily, dict[str, int]] = {f: {} for f in EXACT_FAMILIES}
        self._tables = {f: MultiIndex(FAMILIES[f].bits) for f in PERCEPTUAL_FAMILIES}
        self.add(entries)

    @classmethod
    def from_parts(
        cls,
        exact: dict[HashFamily, dict[str, int]],
        tables: dict[HashFamily, MultiIndex],
        thresholds: Thresholds | None = None,
    ) -> MatchIndex:
        index = cls((), thresholds)
        index._exact.update(exact)
        index._tables.update(tables)
        return index

    @property
    def exact_tables(self) -> dict[HashFamily, dict[str, int]]:
        return self._exact

    @property
    def hamming_tables(self) -> dict[HashFamily, MultiIndex]:
        return self._tables

    def add(self, entries: Iterable[tuple[int, HashFamily | str, str]]) -> None:
        ids: dict[HashFamily, list[int]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        values: dict[HashFamily, list[str]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        for entry_id, family_name, value in entries:
            if family_name not in FAMILY_NAMES:
                continue  # stored-only families (PhotoDNA) are never matched
            family = HashFamily(family_name)
            value = normalize(family, value)
            if family in self._exact:
                self._exact[family][value] = entry_id
            else:
                ids[family].append(entry_id)
                values[family].append(value)
        for family in PERCEPTUAL_FAMILIES:
            if ids[family]:
                table = self._tables[family]
                if len(table) == 0 and table.codes.shape[0] == 0:
                    self._tables[family] = MultiIndex.build(
                        table.bits, ids[family], pack(values[family], table.bits)
                    )
                else:
                    table.add(ids[family], pack(values[family], table.bits))

    def remove(self, entry_ids: Iterable[int]) -> int:
        doomed = set(entry_ids)
        removed = 0
        for table in self._exact.values():
            for value in [v for v, i in table.items() if i in doomed]:
                del table[value]
                removed += 1
        for hamming in self._tables.values():
            removed += hamming.remove(sorted(doomed))
        return removed

    @classmethod
    def from_db(cls, engine: Engine, thresholds: Thresholds | None = None) -> MatchIndex:
        with Session(engine) as session:
            rows = session.exec(
                select(ListEntry.id, ListEntry.family, ListEntry.value).where(
                    col(ListEntry.retired).is_(False),
                    col(ListEntry.family).in_(FAMILY_NAMES),
                )
            ).all()
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

    def lookup(
        self, family: HashFamily, values: Sequence[str], max_distance: int | None = None
    ) -> list[list[Match]]:
        """Batch lookup of normalised values of one family: the matches of each value."""
        if family in self._exact:
            table = self._exact[family]
            return [[Match(table[v], family, 0)] if v in table else [] for v in values]
        limit = self.thresholds.max_distance(family) if max_distance is None else max_distance
        hamming = self._tables[family]
        found = hamming.search(pack(list(values), hamming.bits), limit) if values else []
        return [[Match(i, family, d) for i, d in hits] for hits in found]

    def match_many(self, images: Sequence[ImageHashes]) -> list[list[Match]]:
        """Every entry each image matches, strongest first: one batched search per family.
        For PDQ with dihedral variants an entry counts once, at its nearest variant."""
        out: list[dict[tuple[HashFamily, int], Match]] = [{} for _ in images]
        for family in (*EXACT_FAMILIES, *PERCEPTUAL_FAMILIES):
            owners: list[int] = []
            values: list[str] = []
            for n, hashes in enumerate(images):
                for query in self._queries(family, hashes):
                    owners.append(n)
                    values.append(query)
            if not values:
                continue
            for owner, matches in zip(owners, self.lookup(family, values), strict=True):
                for m in matches:
                    key = (m.family, m.entry_id)
                    if key not in out[owner] or m.distance < out[owner][key].distance:
                        out[owner][key] = m
        return [sorted(found.values(), key=_rank) for found in out]

    def match(self, hashes: ImageHashes) -> list[Match]:
        """Every entry the image matches, strongest first."""
        return self.match_many([hashes])[0]

    def best(self, hashes: ImageHashes) -> Match | None:
        return best(self.match(hashes))
