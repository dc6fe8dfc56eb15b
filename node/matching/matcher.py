"""Match an image's hashes against the node's private lists.

Exact families (MD5, SHA-1, SHA-256) are binary searches in sorted digest arrays
(node.matching.index.exact: zero-copy views when loaded from the persisted index). Perceptual
families (PDQ, pHash, dHash) are matched by Hamming distance through
node.matching.index.MultiIndex (multi-index hashing: exact, sub-linear, incremental).
``match_many`` matches a whole crawl batch in one vectorised call per family. PhotoDNA entries
are stored and exported only, never matched (licence), and retired entries (removed lists still
referenced by a sighting) never match.

PDQ hashes whose quality is below the configured minimum never match: low-quality PDQ hashes
(flat or tiny images) collide far too easily.

Copies changed to evade PDQ (issue 18, docs/robust-matching.md) are matched by the query's
dihedral variants (mirrors, rotations), its border-trimmed hashes (frames, letterboxes), and
region hashes derived from the list entries (centred crops) in a table of their own. Each match
says how it was found (``Match.method``), so a node can count how much material is disguised.

An entry an analyst disabled (issue 14: ``EntryFlag.disabled_at``, false-positive control) is
never matched, like a retired one (``matchable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.discovery.models import EntryFlag
from node.matching.index import MultiIndex, kernel
from node.matching.index.exact import ExactTable
from node.models import ListEntry
from protocol.hashes import FAMILIES, PDQ_MIN_QUALITY, HashFamily, InvalidHash, normalize
from protocol.models import ImageHashes

if TYPE_CHECKING:
    from node.config import MatchSettings

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

    @classmethod
    def of(cls, match: MatchSettings) -> Thresholds:
        """The node's configured cut-offs (its ``[match]`` section)."""
        return cls(
            pdq_max_distance=match.pdq_max_distance,
            pdq_min_quality=match.pdq_min_quality,
            phash_max_distance=match.phash_max_distance,
            dhash_max_distance=match.dhash_max_distance,
        )

    def max_distance(self, family: HashFamily) -> int:
        if family is HashFamily.PDQ:
            return self.pdq_max_distance
        if family is HashFamily.PHASH:
            return self.phash_max_distance
        if family is HashFamily.DHASH:
            return self.dhash_max_distance
        return 0


class Method(StrEnum):
    """How a match was found, strongest evidence first (the order breaks distance ties)."""

    DIRECT = "direct"  # the image's own hash (any family)
    DIHEDRAL = "dihedral"  # a rotated or mirrored variant of its PDQ
    TRIMMED = "trimmed"  # PDQ of the image inside its uniform borders
    REGION = "region"  # PDQ matched a region hash derived from a list entry (a crop)


_METHOD_ORDER = {m: n for n, m in enumerate(Method)}


@dataclass(frozen=True)
class Match:
    entry_id: int
    family: HashFamily
    distance: int
    method: Method = Method.DIRECT


def _rank(match: Match) -> tuple[int, int, int, int]:
    return (
        FAMILIES[match.family].precedence,
        match.distance,
        _METHOD_ORDER[match.method],
        match.entry_id,
    )


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


ROWS_TICK = 100_000


def matchable() -> ColumnElement[bool]:
    """The condition on ListEntry rows that may match: not retired, not disabled by an analyst
    (issue 14). Disabled entries are few, so the subquery is a small set."""
    disabled = select(EntryFlag.entry_id).where(col(EntryFlag.disabled_at).is_not(None))
    return and_(col(ListEntry.retired).is_(False), col(ListEntry.id).not_in(disabled))


def _counted(
    rows: Iterable[tuple[int | None, str, str]], on_rows: Callable[[int], None] | None
) -> Iterator[tuple[int, str, str]]:
    for count, (i, f, v) in enumerate(rows, start=1):
        if on_rows is not None and count % ROWS_TICK == 0:
            on_rows(count)
        if i is not None:
            yield int(i), f, v


def entry_regions(
    engine: Engine, entry_ids: Sequence[int] | None = None
) -> list[tuple[int, list[str]]]:
    """(entry id, derived PDQ region hashes) of matchable entries that have some: all, or
    those of ``entry_ids``."""
    query = select(ListEntry.id, ListEntry.regions).where(
        matchable(),
        col(ListEntry.family) == HashFamily.PDQ.value,
        col(ListEntry.regions).is_not(None),
    )
    out: list[tuple[int, list[str]]] = []
    with Session(engine) as session:
        chunks = (
            [None]
            if entry_ids is None
            else [entry_ids[n : n + 500] for n in range(0, len(entry_ids), 500)]
        )
        for chunk in chunks:
            where = query if chunk is None else query.where(col(ListEntry.id).in_(chunk))
            for entry_id, regions in session.exec(where):
                if entry_id is not None and regions:
                    out.append((int(entry_id), regions.split()))
    return out


class MatchIndex:
    """All list entries, ready for matching. Build once per crawl cycle or load it
    (node.matching.index.persist); ``add``/``remove`` change it without a rebuild."""

    def __init__(
        self,
        entries: Iterable[tuple[int, HashFamily | str, str]] = (),
        thresholds: Thresholds | None = None,
    ) -> None:
        self.thresholds = thresholds or Thresholds()
        self._exact = {f: ExactTable(FAMILIES[f].bits // 8) for f in EXACT_FAMILIES}
        self._tables = {f: MultiIndex(FAMILIES[f].bits) for f in PERCEPTUAL_FAMILIES}
        # PDQ region hashes derived from list entries, keyed by their entry's id.
        self._regions = MultiIndex(FAMILIES[HashFamily.PDQ].bits)
        self.add(entries)

    @classmethod
    def from_parts(
        cls,
        exact: dict[HashFamily, ExactTable],
        tables: dict[HashFamily, MultiIndex],
        thresholds: Thresholds | None = None,
        regions: MultiIndex | None = None,
    ) -> MatchIndex:
        index = cls((), thresholds)
        index._exact.update(exact)
        index._tables.update(tables)
        if regions is not None:
            index._regions = regions
        return index

    @property
    def exact_tables(self) -> dict[HashFamily, ExactTable]:
        return self._exact

    @property
    def hamming_tables(self) -> dict[HashFamily, MultiIndex]:
        return self._tables

    @property
    def region_table(self) -> MultiIndex:
        return self._regions

    def add_regions(self, entries: Iterable[tuple[int, Sequence[str]]]) -> None:
        """Add the PDQ region hashes derived from list entries: (entry id, region hashes)."""
        ids: list[int] = []
        values: list[str] = []
        for entry_id, regions in entries:
            for value in regions:
                ids.append(entry_id)
                values.append(normalize(HashFamily.PDQ, value))
        if not ids:
            return
        codes = pack(values, self._regions.bits)
        if len(self._regions) == 0 and self._regions.codes.shape[0] == 0:
            self._regions = MultiIndex.build(self._regions.bits, ids, codes)
        else:
            self._regions.add(ids, codes)

    def add(self, entries: Iterable[tuple[int, HashFamily | str, str]]) -> None:
        ids: dict[HashFamily, list[int]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        values: dict[HashFamily, list[str]] = {f: [] for f in PERCEPTUAL_FAMILIES}
        for entry_id, family_name, value in entries:
            if family_name not in FAMILY_NAMES:
                continue  # stored-only families (PhotoDNA) are never matched
            family = HashFamily(family_name)
            value = normalize(family, value)
            if family in self._exact:
                self._exact[family].set(value, entry_id)
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
            removed += table.remove(doomed)
        for hamming in self._tables.values():
            removed += hamming.remove(sorted(doomed))
        self._regions.remove(sorted(doomed))  # derived data: not counted as entries
        return removed

    @classmethod
    def from_db(
        cls,
        engine: Engine,
        thresholds: Thresholds | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> MatchIndex:
        """Every matchable entry read from the database (streamed); ``on_rows`` is told the
        number of rows read so far every ROWS_TICK rows (progress of a long build)."""
        with Session(engine) as session:
            rows = session.exec(  # streamed (issue 12): no list of every row at 1M+ codes
                select(ListEntry.id, ListEntry.family, ListEntry.value)
                .where(matchable(), col(ListEntry.family).in_(FAMILY_NAMES))
                .execution_options(yield_per=10_000)
            )
            index = cls(_counted(rows, on_rows), thresholds)
        for table in index.exact_tables.values():
            table.compact()  # sorted arrays: a fraction of the memory of the build's dicts
        index.add_regions(entry_regions(engine))
        return index

    def use_compiled_search(self, on: bool) -> None:
        """Search the perceptual tables with the compiled kernel (``on``, the default) or the
        numpy path (same results). A one-shot process matching a few hundred hashes answers
        sooner without the kernel, whose first call in a process loads numba's cached machine
        code (~1 s at load); a crawl pays that once and then searches ~10x faster."""
        for table in (*self._tables.values(), self._regions):
            table.use_kernel = on and kernel.AVAILABLE

    def __len__(self) -> int:
        return sum(len(d) for d in self._exact.values()) + sum(
            len(t) for t in self._tables.values()
        )

    def counts(self) -> dict[HashFamily, int]:
        out = {f: len(d) for f, d in self._exact.items()}
        out.update({f: len(t) for f, t in self._tables.items()})
        return out

    def _queries(self, family: HashFamily, hashes: ImageHashes) -> list[tuple[str, Method]]:
        raw: list[tuple[str, Method]] = [(getattr(hashes, family.value), Method.DIRECT)]
        if family is HashFamily.PDQ:
            if hashes.pdq_quality < self.thresholds.pdq_min_quality:
                raw = []  # its dihedral variants share its quality
            else:
                # The function's pdq_dihedral[0] is the image itself: not queried twice.
                direct = hashes.pdq.lower()
                variants = [v for v in hashes.pdq_dihedral or [] if v.lower() != direct]
                raw.extend((v, Method.DIHEDRAL) for v in variants)
            trimmed_quality = hashes.pdq_trimmed_quality or 0
            if trimmed_quality >= self.thresholds.pdq_min_quality:
                raw.extend((v, Method.TRIMMED) for v in hashes.pdq_trimmed or [])
        queries = []
        for value, method in raw:
            try:
                queries.append((normalize(family, value), method))
            except InvalidHash:
                continue  # a malformed value from the function cannot match anything
        return queries

    def lookup(
        self, family: HashFamily, values: Sequence[str], max_distance: int | None = None
    ) -> list[list[Match]]:
        """Batch lookup of normalised values of one family: the matches of each value."""
        if family in self._exact:
            ids = self._exact[family].lookup(values)
            return [[] if i is None else [Match(i, family, 0)] for i in ids]
        limit = self.thresholds.max_distance(family) if max_distance is None else max_distance
        hamming = self._tables[family]
        found = hamming.search(pack(list(values), hamming.bits), limit) if values else []
        return [[Match(i, family, d) for i, d in hits] for hits in found]

    def match_many(self, images: Sequence[ImageHashes]) -> list[list[Match]]:
        """Every entry each image matches, strongest first: one batched search per family.
        For PDQ, an entry found by several queries (dihedral variants, trimmed hashes, its
        region hashes) counts once: by the first method in ``Method`` order that found it (a
        copy PDQ alone finds is ``direct`` even if a region hash is nearer), at that method's
        nearest distance."""
        out: list[dict[tuple[HashFamily, int], Match]] = [{} for _ in images]

        def keep(owner: int, m: Match) -> None:
            key = (m.family, m.entry_id)
            held = out[owner].get(key)
            if held is None or (_METHOD_ORDER[m.method], m.distance) < (
                _METHOD_ORDER[held.method],
                held.distance,
            ):
                out[owner][key] = m

        for family in (*EXACT_FAMILIES, *PERCEPTUAL_FAMILIES):
            owners: list[int] = []
            values: list[str] = []
            methods: list[Method] = []
            for n, hashes in enumerate(images):
                for value, method in self._queries(family, hashes):
                    owners.append(n)
                    values.append(value)
                    methods.append(method)
            if not values:
                continue
            found = self.lookup(family, values)
            for owner, method, matches in zip(owners, methods, found, strict=True):
                for m in matches:
                    keep(owner, Match(m.entry_id, m.family, m.distance, method))
            if family is HashFamily.PDQ and len(self._regions):
                limit = self.thresholds.pdq_max_distance
                hits = self._regions.search(pack(values, self._regions.bits), limit)
                for owner, region_hits in zip(owners, hits, strict=True):
                    for entry_id, distance in region_hits:
                        keep(owner, Match(entry_id, family, distance, Method.REGION))
        return [sorted(found.values(), key=_rank) for found in out]

    def match(self, hashes: ImageHashes) -> list[Match]:
        """Every entry the image matches, strongest first."""
        return self.match_many([hashes])[0]

    def best(self, hashes: ImageHashes) -> Match | None:
        return best(self.match(hashes))
