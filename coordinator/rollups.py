"""Materialised rollups of the global picture, so a year-long query reads hundreds of rows
per group instead of every cell.

Layout. A bucket is either one report period exactly (level 0) or a 2^k-day block aligned on
1970-01-01 UTC (levels 1..MAX_LEVEL) holding every period that lies inside it, and one
all-time bucket (level ALL_TIME) holding every period. Per bucket and group,
``picture_rollups`` keeps the summed counts, the merged HLL sketch (compact HLL_8,
lg_k 12), the Theta union of the cells' ``url_theta`` (lg_k 15; issue 16) and a bitmap of the
contributing nodes: groups are the total ("T"), each country ("C") and each (country, ASN,
hoster) ("H"), once per hash family and once over all families (""). The "" rows also sum the
reports' per-hoster coverage, so a hoster crawled without findings has a row with no cells.

Maintenance. Ingest adds each stored report to ``rollup_queue`` in its own transaction.
``refresh_rollups`` folds queued reports in (under a lock on ``rollup_state``, so refreshes
never run concurrently) and removes them from the queue in the same transaction; the picture
endpoint refreshes before every read, so the picture always covers every committed report.

Query. A filter [start, end] is covered by the largest blocks inside it (disjoint by
construction) plus the level-0 rows of the periods no chosen block holds: an unbounded query
reads the all-time bucket, any window at most ~2 buckets per level, instead of every cell.
Sums and node bitmaps add up exactly, Theta and HLL unions are order-independent and
``canonical_estimate`` makes the HLL estimate so too: the result equals ``picture.aggregate_raw``
exactly (tests/coordinator/test_rollups.py). Rollups only grow: deleting reports needs
``rebuild_rollups``.
"""

from __future__ import annotations

import base64
import gc
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from datasketches import compact_theta_sketch, hll_sketch, hll_union, tgt_hll_type, theta_union
from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy import func as sa_func
from sqlalchemy import select as sa_select
from sqlmodel import Session

from protocol.theta import THETA_SEED

from .aggregates import Aggregates, CoverageSums, PictureFilter
from .distinct import HLL_LG_K, DistinctCounter, new_theta_union
from .models import (
    CellRow,
    CoverageRow,
    DenominatorRow,
    PictureRollupRow,
    ReportRow,
    RollupBucketRow,
    RollupNodeRow,
    RollupQueueRow,
    RollupStateRow,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_LEVEL = 10  # blocks of up to 1,024 days
# Above them one bucket holds every period: a query without period bounds reads only it.
ALL_TIME = MAX_LEVEL + 1
ALL_TIME_SPAN = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
ALL = ""  # hash_family of the rows over every family
TOTAL, COUNTRY, HOSTER = "T", "C", "H"
NO_ASN = -1
REFRESH_CHUNK = 500  # reports per refresh transaction
_IN_CHUNK = 500  # ids per IN (...) list

Span = tuple[int, datetime, datetime]  # (level, start, end)
Key = tuple[str, str, str, int, str]  # (hash_family, dim, country, asn, hoster)

_queue = RollupQueueRow.__table__  # type: ignore[attr-defined]
_state = RollupStateRow.__table__  # type: ignore[attr-defined]
_nodes = RollupNodeRow.__table__  # type: ignore[attr-defined]
_buckets = RollupBucketRow.__table__  # type: ignore[attr-defined]
_rollups = PictureRollupRow.__table__  # type: ignore[attr-defined]
_reports = ReportRow.__table__  # type: ignore[attr-defined]
_denoms = DenominatorRow.__table__  # type: ignore[attr-defined]
_cells = CellRow.__table__  # type: ignore[attr-defined]
_coverage = CoverageRow.__table__  # type: ignore[attr-defined]

# Matches by how they were found (picture.METHODS order), one column each.
_METHOD_COLUMNS = ("m_direct", "m_dihedral", "m_trimmed", "m_region", "m_unspecified")
# Issue 16: cells with url_theta, and coverage (see PictureRollupRow).
_THETA_COVERAGE = ("theta_cells", "covered", "cov_pages", "cov_images", "cov_matches")
_COUNTS = ("cells", "matches", "plain_distinct", "reports", *_METHOD_COLUMNS, *_THETA_COVERAGE)
_DENOMS = ("pages_fetched", "images_hashed", "hosts_seen")


def block_of(start: datetime, level: int) -> tuple[datetime, datetime]:
    """The level-``level`` block that holds instant ``start``."""
    if level == ALL_TIME:
        return ALL_TIME_SPAN
    size = timedelta(days=1 << level)
    index = (start - EPOCH) // size
    begin = EPOCH + index * size
    return begin, begin + size


def blocks_holding(start: datetime, end: datetime) -> list[Span]:
    """Every block (level >= 1) that holds the whole period [start, end)."""
    spans: list[Span] = []
    for level in range(1, ALL_TIME + 1):
        begin, stop = block_of(start, level)
        if begin <= start and end <= stop:
            spans.append((level, begin, stop))
    return spans


class Acc:
    """One group's running rollup: sums, HLL and Theta unions, node bitmaps."""

    __slots__ = (
        "cells",
        "cov_images",
        "cov_matches",
        "cov_nodes",
        "cov_pages",
        "covered",
        "hosts_seen",
        "images_hashed",
        "m_dihedral",
        "m_direct",
        "m_region",
        "m_trimmed",
        "m_unspecified",
        "matches",
        "nodes",
        "pages_fetched",
        "plain_distinct",
        "reports",
        "theta",
        "theta_cells",
        "union",
    )  # fmt: skip

    def __init__(self) -> None:
        self.cells = self.matches = self.plain_distinct = self.reports = 0
        self.pages_fetched = self.images_hashed = self.hosts_seen = 0
        self.m_direct = self.m_dihedral = self.m_trimmed = self.m_region = 0
        self.m_unspecified = 0
        self.nodes = 0
        self.union: hll_union | None = None
        self.theta_cells = self.covered = self.cov_pages = self.cov_images = self.cov_matches = 0
        self.cov_nodes = 0
        self.theta: theta_union | None = None

    def add_theta(self, sketch: compact_theta_sketch) -> None:
        if self.theta is None:
            self.theta = new_theta_union()
        self.theta.update(sketch)

    def theta_result(self) -> compact_theta_sketch | None:
        return None if self.theta is None else self.theta.get_result()

    def add_sketch(self, sketch: hll_sketch) -> None:
        if self.union is None:
            self.union = hll_union(HLL_LG_K)
        self.union.update(sketch)

    def result(self) -> hll_sketch | None:
        return None if self.union is None else self.union.get_result(tgt_hll_type.HLL_8)

    def merge(self, other: Acc, other_sketch: hll_sketch | None) -> None:
        """Add ``other`` (whose union's result the caller computed once: ``other_sketch``)."""
        self.theta_cells += other.theta_cells
        self.covered += other.covered
        self.cov_pages += other.cov_pages
        self.cov_images += other.cov_images
        self.cov_matches += other.cov_matches
        self.cov_nodes |= other.cov_nodes
        other_theta = other.theta_result()
        if other_theta is not None:
            self.add_theta(other_theta)
        self.cells += other.cells
        self.matches += other.matches
        self.plain_distinct += other.plain_distinct
        self.reports += other.reports
        self.pages_fetched += other.pages_fetched
        self.images_hashed += other.images_hashed
        self.hosts_seen += other.hosts_seen
        self.add_methods(other.method_counts())
        self.nodes |= other.nodes
        if other_sketch is not None:
            self.add_sketch(other_sketch)

    def method_counts(self) -> tuple[int, int, int, int, int]:
        return (self.m_direct, self.m_dihedral, self.m_trimmed, self.m_region, self.m_unspecified)

    def add_methods(self, counts: Sequence[int]) -> None:
        self.m_direct += counts[0]
        self.m_dihedral += counts[1]
        self.m_trimmed += counts[2]
        self.m_region += counts[3]
        self.m_unspecified += counts[4]

    def values(self) -> dict[str, Any]:
        result = self.result()
        theta = self.theta_result()
        return {
            "theta_cells": self.theta_cells,
            "url_theta": None if theta is None else theta.serialize(True),
            "covered": self.covered,
            "cov_pages": self.cov_pages,
            "cov_images": self.cov_images,
            "cov_matches": self.cov_matches,
            "cov_nodes": _bitmap_bytes(self.cov_nodes) if self.cov_nodes else None,
            **dict(zip(_METHOD_COLUMNS, self.method_counts(), strict=True)),
            "cells": self.cells,
            "matches": self.matches,
            "plain_distinct": self.plain_distinct,
            "reports": self.reports,
            "pages_fetched": self.pages_fetched,
            "images_hashed": self.images_hashed,
            "hosts_seen": self.hosts_seen,
            "nodes": _bitmap_bytes(self.nodes),
            "sketch": None if result is None else result.serialize_compact(),
        }


def _bitmap_bytes(bits: int) -> bytes:
    return bits.to_bytes(max(1, (bits.bit_length() + 7) // 8), "little")


def _acc_from_row(row: Any) -> Acc:
    acc = Acc()
    for name in (*_COUNTS, *_DENOMS):
        setattr(acc, name, int(getattr(row, name)))
    acc.nodes = int.from_bytes(row.nodes, "little")
    if row.sketch is not None:
        acc.add_sketch(hll_sketch.deserialize(bytes(row.sketch)))
    if row.cov_nodes is not None:
        acc.cov_nodes = int.from_bytes(row.cov_nodes, "little")
    if row.url_theta is not None:
        acc.add_theta(compact_theta_sketch.deserialize(bytes(row.url_theta), THETA_SEED))
    return acc


# --- building deltas ------------------------------------------------------------------------


class Deltas:
    """Level-0 rollups of a set of reports, before they are written: {period: {key: Acc}}."""

    def __init__(self) -> None:
        self.periods: dict[tuple[datetime, datetime], dict[Key, Acc]] = {}

    def _acc(self, period: tuple[datetime, datetime], key: Key) -> Acc:
        accs = self.periods.setdefault(period, {})
        acc = accs.get(key)
        if acc is None:
            acc = accs[key] = Acc()
        return acc

    def add_report(
        self,
        period: tuple[datetime, datetime],
        node_bit: int,
        denominators: Sequence[int],
        coverage: Sequence[tuple[str, int, str, int, int]] = (),
    ) -> None:
        """A report's own figures; ``coverage`` its rows (country, asn, hoster, pages,
        images), which go to the "" family rows of the total, their countries and hosters,
        each counting the report once."""
        acc = self._acc(period, (ALL, TOTAL, "", NO_ASN, ""))
        acc.reports += 1
        acc.nodes |= node_bit
        acc.pages_fetched += denominators[0]
        acc.images_hashed += denominators[1]
        acc.hosts_seen += denominators[2]
        if not coverage:
            return
        reached: set[Key] = {(ALL, TOTAL, "", NO_ASN, "")}
        for country, asn, hoster, pages, images in coverage:
            for key in ((ALL, COUNTRY, country, NO_ASN, ""), (ALL, HOSTER, country, asn, hoster)):
                reached.add(key)
                group = self._acc(period, key)
                group.cov_pages += pages
                group.cov_images += images
            acc.cov_pages += pages
            acc.cov_images += images
        for key in reached:
            group = self._acc(period, key)
            group.covered += 1
            group.cov_nodes |= node_bit

    def add_cell(
        self,
        period: tuple[datetime, datetime],
        node_bit: int,
        *,
        country: str,
        asn: int,
        hoster: str,
        family: str,
        matches: int,
        distinct: int,
        sketch: hll_sketch | None,
        methods: Sequence[int | None] = (None, None, None, None),
        theta: compact_theta_sketch | None = None,
        covered: bool = False,
    ) -> None:
        """A cell: ``theta`` its url_theta, ``covered`` whether its report carried coverage."""
        # The cell's methods, or all its matches "unspecified" when the node did not say.
        counts = (
            (0, 0, 0, 0, matches) if methods[0] is None else (*(int(m or 0) for m in methods), 0)
        )
        for key in (
            (ALL, TOTAL, "", NO_ASN, ""),
            (family, TOTAL, "", NO_ASN, ""),
            (ALL, COUNTRY, country, NO_ASN, ""),
            (family, COUNTRY, country, NO_ASN, ""),
            (ALL, HOSTER, country, asn, hoster),
            (family, HOSTER, country, asn, hoster),
        ):
            acc = self._acc(period, key)
            acc.cells += 1
            acc.matches += matches
            acc.add_methods(counts)
            acc.nodes |= node_bit
            if sketch is None:
                acc.plain_distinct += distinct
            else:
                acc.add_sketch(sketch)
            if theta is not None:
                acc.theta_cells += 1
                acc.add_theta(theta)
            if covered:
                acc.cov_matches += matches

    def by_bucket(self) -> dict[Span, dict[Key, Acc]]:
        """Level-0 rows plus every block holding them. Each period goes to the smallest block
        holding it, and each block into its parent: a sketch is merged once per level."""
        out: dict[Span, dict[Key, Acc]] = {}
        pending: dict[int, dict[Span, dict[Key, Acc]]] = {}
        for (start, end), accs in self.periods.items():
            out[(0, start, end)] = accs
            holding = blocks_holding(start, end)
            if holding:
                level, begin, stop = holding[0]
                _merge_into(
                    pending.setdefault(level, {}).setdefault((level, begin, stop), {}), accs
                )
        for level in range(1, ALL_TIME + 1):
            for span, accs in pending.pop(level, {}).items():
                out[span] = accs
                if level < ALL_TIME:
                    begin, stop = block_of(span[1], level + 1)
                    parent = (level + 1, begin, stop)
                    _merge_into(pending.setdefault(level + 1, {}).setdefault(parent, {}), accs)
        return out


def _merge_into(dest: dict[Key, Acc], source: dict[Key, Acc]) -> None:
    for key, acc in source.items():
        target = dest.get(key)
        if target is None:
            target = dest[key] = Acc()
        target.merge(acc, acc.result())


# --- writing --------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def node_bits(conn: Connection, node_ids: Iterable[str]) -> dict[str, int]:
    """Each node's bitmap bit, assigning new ordinals (caller holds the refresh lock)."""
    wanted = sorted(set(node_ids))
    known: dict[str, int] = {}
    for part in _chunks(wanted):
        for node_id, ordinal in conn.execute(
            sa_select(_nodes.c.node_id, _nodes.c.ordinal).where(_nodes.c.node_id.in_(part))
        ):
            known[node_id] = int(ordinal)
    missing = [n for n in wanted if n not in known]
    if missing:
        top = conn.execute(sa_select(sa_func.max(_nodes.c.ordinal))).scalar()
        next_ordinal = -1 if top is None else int(top)
        rows = []
        for node_id in missing:
            next_ordinal += 1
            known[node_id] = next_ordinal
            rows.append({"node_id": node_id, "ordinal": next_ordinal})
        conn.execute(insert(_nodes), rows)
    return {node_id: 1 << ordinal for node_id, ordinal in known.items()}


def _bucket_ids(conn: Connection, spans: Sequence[Span]) -> dict[Span, int]:
    def lookup() -> dict[Span, int]:
        found: dict[Span, int] = {}
        for part in _chunks(list(spans)):
            for bucket_id, level, start, end in conn.execute(
                sa_select(
                    _buckets.c.id, _buckets.c.level, _buckets.c.span_start, _buckets.c.span_end
                ).where(
                    tuple_(_buckets.c.level, _buckets.c.span_start, _buckets.c.span_end).in_(part)
                )
            ):
                found[(int(level), start, end)] = int(bucket_id)
        return found

    found = lookup()
    missing = [span for span in spans if span not in found]
    if missing:
        conn.execute(
            insert(_buckets),
            [{"level": lv, "span_start": start, "span_end": end} for lv, start, end in missing],
        )
        found = lookup()
    return found


def apply_deltas(conn: Connection, deltas: Deltas) -> int:
    """Merge the deltas into the stored rollups; returns the number of rows written."""
    spans = deltas.by_bucket()
    ids = _bucket_ids(conn, list(spans))
    by_id = {ids[span]: accs for span, accs in spans.items()}
    existing: dict[tuple[int, Key], Acc] = {}
    for part in _chunks(list(by_id)):
        for row in conn.execute(sa_select(_rollups).where(_rollups.c.bucket_id.in_(part))):
            key: Key = (row.hash_family, row.dim, row.country, int(row.asn), row.hoster)
            if key in by_id[row.bucket_id]:
                existing[(row.bucket_id, key)] = _acc_from_row(row)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for bucket_id, accs in by_id.items():
        for key, acc in accs.items():
            stored = existing.get((bucket_id, key))
            if stored is not None:
                stored.merge(acc, acc.result())
                acc = stored
            family, dim, country, asn, hoster = key
            pk = {"hash_family": family, "dim": dim, "country": country, "asn": asn}
            values = {**acc.values(), "bucket_id": bucket_id, **pk, "hoster": hoster}
            (updates if stored is not None else inserts).append(values)
    if inserts:
        conn.execute(insert(_rollups), inserts)
    if updates:
        conn.execute(_UPDATE, [{f"k_{k}": v for k, v in row.items()} for row in updates])
    return len(inserts) + len(updates)


_PK = ("bucket_id", "hash_family", "dim", "country", "asn", "hoster")
_VALUES = (*_COUNTS, *_DENOMS, "nodes", "sketch", "url_theta", "cov_nodes")
_UPDATE = (
    update(_rollups)
    .where(*(_rollups.c[name] == bindparam(f"k_{name}") for name in _PK))
    .values({name: bindparam(f"k_{name}") for name in _VALUES})
)


# --- refresh --------------------------------------------------------------------------------


def pending_reports(session: Session) -> int:
    count = session.connection().execute(sa_select(sa_func.count()).select_from(_queue)).scalar()
    return int(count or 0)


def refresh_rollups(
    session: Session,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
    chunk: int = REFRESH_CHUNK,
) -> int:
    """Fold every queued report into the rollups; returns how many were folded.

    Ends the session's open transaction first: on SQLite a read snapshot taken earlier would
    hide the refresh's own writes (and refuse to turn into a write transaction).
    """
    session.commit()
    queued = session.connection().execute(sa_select(_queue.c.report_id).limit(1)).first()
    session.commit()
    if queued is None:
        return 0
    done = 0
    with write_lock if write_lock is not None else nullcontext():
        while True:
            folded = _refresh_chunk(session, chunk)
            if folded == 0:
                return done
            done += folded


def _refresh_chunk(session: Session, chunk: int) -> int:
    try:
        conn = session.connection()
        # First statement a write: takes the lock (row lock / SQLite's write lock) before reading.
        conn.execute(
            update(_state).where(_state.c.id == 1).values(refreshes=_state.c.refreshes + 1)
        )
        ids = [rid for (rid,) in conn.execute(sa_select(_queue.c.report_id).limit(chunk))]
        if not ids:
            session.commit()
            return 0
        deltas = Deltas()
        reports: dict[str, tuple[tuple[datetime, datetime], str]] = {}
        denominators: dict[str, tuple[int, int, int]] = {}
        for part in _chunks(ids):
            for rid, node_id, start, end, pages, images, hosts in conn.execute(
                sa_select(
                    _reports.c.report_id,
                    _reports.c.node_id,
                    _reports.c.period_start,
                    _reports.c.period_end,
                    _denoms.c.pages_fetched,
                    _denoms.c.images_hashed,
                    _denoms.c.hosts_seen,
                )
                .outerjoin(_denoms, _denoms.c.report_id == _reports.c.report_id)
                .where(_reports.c.report_id.in_(part))
            ):
                reports[rid] = ((start, end), node_id)
                denominators[rid] = (int(pages or 0), int(images or 0), int(hosts or 0))
        coverage: dict[str, list[tuple[str, int, str, int, int]]] = {}
        for part in _chunks(ids):
            for rid, country, asn, hoster, pages, images in conn.execute(
                sa_select(
                    _coverage.c.report_id, _coverage.c.country, _coverage.c.asn,
                    _coverage.c.hoster, _coverage.c.pages_fetched, _coverage.c.images_hashed,
                ).where(_coverage.c.report_id.in_(part))
            ):  # fmt: skip
                coverage.setdefault(rid, []).append(
                    (country, int(asn), hoster, int(pages), int(images))
                )
        bits = node_bits(conn, (node for _, node in reports.values()))
        for rid, (period, node_id) in reports.items():
            deltas.add_report(period, bits[node_id], denominators[rid], coverage.get(rid, ()))
        for part in _chunks(ids):
            for (
                rid,
                country,
                asn,
                hoster,
                family,
                matches,
                distinct,
                sketch,
                url_theta,
                *methods,
            ) in conn.execute(
                sa_select(
                    _cells.c.report_id,
                    _cells.c.country,
                    _cells.c.asn,
                    _cells.c.hoster,
                    _cells.c.hash_family,
                    _cells.c.matches,
                    _cells.c.distinct,
                    _cells.c.sketch,
                    _cells.c.url_theta,
                    *(_cells.c[name] for name in _METHOD_COLUMNS[:4]),
                ).where(_cells.c.report_id.in_(part))
            ):
                period, node_id = reports[rid]
                deltas.add_cell(
                    period,
                    bits[node_id],
                    country=country,
                    asn=int(asn),
                    hoster=hoster,
                    family=family,
                    matches=int(matches),
                    distinct=int(distinct),
                    sketch=None
                    if sketch is None
                    else hll_sketch.deserialize(base64.b64decode(sketch)),
                    methods=methods,
                    theta=None
                    if url_theta is None
                    else compact_theta_sketch.deserialize(base64.b64decode(url_theta), THETA_SEED),
                    covered=rid in coverage,
                )
        apply_deltas(conn, deltas)
        for part in _chunks(ids):
            conn.execute(delete(_queue).where(_queue.c.report_id.in_(part)))
        session.commit()
        return len(ids)
    except BaseException:
        session.rollback()
        raise


def rebuild_rollups(session: Session) -> int:
    """Drop every rollup and queue every stored report again; the next refresh rebuilds."""
    conn = session.connection()
    conn.execute(update(_state).where(_state.c.id == 1).values(refreshes=_state.c.refreshes + 1))
    conn.execute(delete(_rollups))
    conn.execute(delete(_buckets))
    conn.execute(delete(_queue))
    conn.execute(insert(_queue).from_select(["report_id"], sa_select(_reports.c.report_id)))
    queued = conn.execute(sa_select(sa_func.count()).select_from(_queue)).scalar()
    session.commit()
    return int(queued or 0)


# --- querying -------------------------------------------------------------------------------


def cover(session: Session, filters: PictureFilter) -> tuple[list[int], list[int]]:
    """(bucket ids that together hold exactly the periods inside the filter, once each;
    level-0 bucket ids of every period inside the filter)."""
    where = []
    if filters.period_start is not None:
        where.append(_buckets.c.span_start >= filters.period_start)
    if filters.period_end is not None:
        where.append(_buckets.c.span_end <= filters.period_end)
    blocks: dict[tuple[int, datetime], int] = {}
    periods: list[tuple[int, datetime, datetime]] = []
    for bucket_id, level, start, end in session.connection().execute(
        sa_select(
            _buckets.c.id, _buckets.c.level, _buckets.c.span_start, _buckets.c.span_end
        ).where(*where)
    ):
        if level == 0:
            periods.append((int(bucket_id), start, end))
        else:
            blocks[(int(level), start)] = int(bucket_id)
    # A block whose parent lies inside the filter too is held by it (a parent exists whenever
    # a child does): the rest are the largest blocks inside, and disjoint.
    chosen = {
        (level, start): bucket_id
        for (level, start), bucket_id in blocks.items()
        if level == ALL_TIME or (level + 1, block_of(start, level + 1)[0]) not in blocks
    }
    use = list(chosen.values())
    for bucket_id, start, end in periods:
        if not any((level, begin) in chosen for level, begin, _ in blocks_holding(start, end)):
            use.append(bucket_id)
    return use, [bucket_id for bucket_id, _, _ in periods]


def _text(name: str) -> Any:
    # The count columns' raw decimal text: converting here is cheaper than the TypeDecorator.
    return type_coerce(_rollups.c[name], String)


def aggregate_rollups(
    session: Session, filters: PictureFilter, *, distinct: bool = True
) -> Aggregates:
    """The picture's numbers from the rollups; see ``_aggregate``. ``distinct=False`` skips
    the sketch unions (distinct counts stay 0) for callers that only need sums."""
    # The loop allocates tens of thousands of short-lived objects: a full collection of a
    # large server heap in the middle would dominate the latency, so collect afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _aggregate(session, filters, with_distinct=distinct)
    finally:
        if collecting:
            gc.enable()


def _aggregate(session: Session, filters: PictureFilter, *, with_distinct: bool) -> Aggregates:
    """The picture's numbers from the rollups (see ``picture.aggregate_raw`` for the same from
    the cells). Hot loop: tens of thousands of rows for a year, so plain tuples throughout.

    The "base" rows give the totals, families and periods: the total rows, or with a country
    filter that country's rows, or with a hoster/ASN filter the matching hoster rows. Rows
    without cells (a hoster crawled where nothing was found) only carry coverage.
    """
    use, period_ids = cover(session, filters)
    family = None if filters.hash_family is None else filters.hash_family.value
    wanted = family or ALL
    by_hoster_filter = filters.hoster is not None or filters.asn is not None
    base = HOSTER if by_hoster_filter else COUNTRY if filters.country is not None else TOTAL
    conn = session.connection()
    agg = Aggregates()
    distinct = DistinctCounter()
    keys_seen: dict[Any, None] = {("total",): None}

    def add_distinct(
        key: Any, cells: str, sketch: bytes | None, plain_text: str, theta_cells: str,
        theta: bytes | None,
    ) -> None:  # fmt: skip
        if not with_distinct:
            return
        keys_seen[key] = None
        distinct.add(
            key,
            cells=int(cells),
            hll=None if sketch is None else bytes(sketch),
            plain=0 if plain_text == "0" else int(plain_text),
            theta_cells=0 if theta_cells == "0" else int(theta_cells),
            theta=None if theta is None else bytes(theta),
        )

    group_match = []  # conditions on C / H rows
    if filters.country is not None:
        group_match.append(_rollups.c.country == filters.country)
    if filters.hoster is not None:
        group_match.append(_rollups.c.hoster == filters.hoster)
    if filters.asn is not None:
        group_match.append(_rollups.c.asn == filters.asn)
    family_ok = (
        _rollups.c.hash_family == family
        if family is not None
        else _rollups.c.hash_family.is_not(None)
    )
    report_rows = and_(_rollups.c.dim == TOTAL, _rollups.c.hash_family == ALL)
    if base == TOTAL:
        rows_wanted = or_(
            and_(_rollups.c.dim == TOTAL, family_ok),
            and_(_rollups.c.dim.in_((COUNTRY, HOSTER)), _rollups.c.hash_family == wanted),
        )
    elif base == COUNTRY:
        rows_wanted = or_(
            and_(_rollups.c.dim == COUNTRY, family_ok, *group_match),
            and_(_rollups.c.dim == HOSTER, _rollups.c.hash_family == wanted, *group_match),
        )
    else:
        rows_wanted = and_(_rollups.c.dim == HOSTER, family_ok, *group_match)

    all_nodes = 0
    countries: dict[str, list[int]] = {}
    hosters: dict[tuple[str, int, str], list[int]] = {}
    families: dict[str, int] = {}
    for part in _chunks(use):
        for reports, pages, images, hosts, nodes in conn.execute(
            sa_select(
                _text("reports"), _text("pages_fetched"), _text("images_hashed"),
                _text("hosts_seen"), _rollups.c.nodes,
            ).where(_rollups.c.bucket_id.in_(part), report_rows)
        ):  # fmt: skip
            agg.reports += int(reports)
            agg.pages_fetched += int(pages)
            agg.images_hashed += int(images)
            agg.hosts_seen += int(hosts)
            all_nodes |= int.from_bytes(nodes, "little")
    columns = (
        _rollups.c.dim, _rollups.c.hash_family, _rollups.c.country, _rollups.c.asn,
        _rollups.c.hoster, _text("cells"), _text("matches"), _text("plain_distinct"),
        _rollups.c.sketch, _text("theta_cells"), _rollups.c.url_theta, _text("cov_matches"),
        _rollups.c.nodes, *(_text(name) for name in _METHOD_COLUMNS),
    )  # fmt: skip
    methods_country: dict[str, list[int]] = {}
    methods_hoster: dict[tuple[str, int, str], list[int]] = {}
    # Matches of cells in reports that carried coverage, per group key.
    covered_matches: dict[Any, int] = {}

    def add_methods(into: list[int], texts: Sequence[str]) -> None:
        for i, text in enumerate(texts):
            if text != "0":
                into[i] += int(text)

    def add_covered(key: Any, text: str) -> None:
        if text != "0":
            covered_matches[key] = covered_matches.get(key, 0) + int(text)

    for part in _chunks(use):
        rows = conn.execute(sa_select(*columns).where(_rollups.c.bucket_id.in_(part), rows_wanted))
        for (
            dim, fam, country, asn, hoster, cells, matches, plain_text, sketch, theta_cells,
            theta, cov_matches, nodes, *m,
        ) in rows:  # fmt: skip
            if cells == "0":
                continue  # coverage only: read below
            sketches = (cells, sketch, plain_text, theta_cells, theta)
            if dim == base:
                if fam == wanted:
                    agg.matches += int(matches)
                    add_methods(agg.methods, m)
                    add_distinct(("total",), *sketches)
                    add_covered(("total",), cov_matches)
                if fam != ALL:
                    families[fam] = families.get(fam, 0) + int(matches)
                    add_distinct(("family", fam), *sketches)
            if fam != wanted or dim == TOTAL:
                continue
            if dim == HOSTER:
                key = (hoster, int(asn), country)
                entry = hosters.get(key)
                if entry is None:
                    entry = hosters[key] = [0, 0]
                entry[0] += int(matches)
                entry[1] |= int.from_bytes(nodes, "little")
                add_distinct(("hoster", *key), *sketches)
                add_covered(("hoster", *key), cov_matches)
                add_methods(methods_hoster.setdefault(key, [0] * len(m)), m)
            if dim == COUNTRY or (dim == HOSTER and base == HOSTER):
                entry = countries.get(country)
                if entry is None:
                    entry = countries[country] = [0, 0]
                entry[0] += int(matches)
                entry[1] |= int.from_bytes(nodes, "little")
                add_distinct(("country", country), *sketches)
                add_covered(("country", country), cov_matches)
                add_methods(methods_country.setdefault(country, [0] * len(m)), m)

    periods: dict[tuple[datetime, datetime], int] = {}
    for part in _chunks(period_ids):
        for start, end, cells, matches, plain_text, sketch, theta_cells, theta in conn.execute(
            sa_select(
                _buckets.c.span_start, _buckets.c.span_end, _text("cells"), _text("matches"),
                _text("plain_distinct"), _rollups.c.sketch, _text("theta_cells"),
                _rollups.c.url_theta,
            )
            .join(_rollups, _rollups.c.bucket_id == _buckets.c.id)
            .where(
                _buckets.c.id.in_(part),
                _rollups.c.dim == base,
                _rollups.c.hash_family == wanted,
                *(group_match if base != TOTAL else ()),
            )
        ):  # fmt: skip
            if cells == "0":
                continue  # reports without cells: no period row (as from the cells)
            periods[(start, end)] = periods.get((start, end), 0) + int(matches)
            add_distinct(("period", start, end), cells, sketch, plain_text, theta_cells, theta)

    counts = {key: distinct.result(key) for key in keys_seen}
    agg.distinct_counts = counts

    def estimate(key: Any) -> int:
        return counts[key].estimate if key in counts else 0

    agg.nodes = all_nodes.bit_count()
    agg.distinct = estimate(("total",))
    agg.by_country = {
        country: (m, bits.bit_count(), estimate(("country", country)))
        for country, (m, bits) in countries.items()
    }
    agg.by_hoster = {
        key: (m, bits.bit_count(), estimate(("hoster", *key))) for key, (m, bits) in hosters.items()
    }
    agg.by_family = {f: (m, estimate(("family", f))) for f, m in families.items()}
    agg.methods_by_country = methods_country
    agg.methods_by_hoster = methods_hoster
    agg.by_period = {
        (start, end): (m, estimate(("period", start, end))) for (start, end), m in periods.items()
    }
    agg.coverage = _coverage_sums(conn, use, base, group_match, covered_matches)
    return agg


def _coverage_sums(
    conn: Connection,
    use: Sequence[int],
    base: str,
    group_match: Sequence[Any],
    covered_matches: dict[Any, int],
) -> dict[Any, CoverageSums]:
    """Coverage of the total (the base rows), each country and each hoster, from the ""
    family rows that some covered report reached (with a hoster or ASN filter, countries
    add up their matching hoster rows, as their matches do)."""
    if base == TOTAL:
        wanted = _rollups.c.dim.in_((TOTAL, COUNTRY, HOSTER))
    elif base == COUNTRY:
        wanted = and_(_rollups.c.dim.in_((COUNTRY, HOSTER)), *group_match)
    else:
        wanted = and_(_rollups.c.dim == HOSTER, *group_match)
    sums: dict[Any, list[int]] = {}  # key -> [pages, images, node bits, covered]
    for part in _chunks(list(use)):
        for dim, country, asn, hoster, covered, pages, images, nodes in conn.execute(
            sa_select(
                _rollups.c.dim, _rollups.c.country, _rollups.c.asn, _rollups.c.hoster,
                _text("covered"), _text("cov_pages"), _text("cov_images"), _rollups.c.cov_nodes,
            ).where(
                _rollups.c.bucket_id.in_(part),
                _rollups.c.hash_family == ALL,
                _rollups.c.covered != "0",
                wanted,
            )
        ):  # fmt: skip
            keys: list[Any] = []
            if dim == base:
                keys.append(("total",))
            if dim == COUNTRY or (dim == HOSTER and base == HOSTER):
                keys.append(("country", country))
            if dim == HOSTER:
                keys.append(("hoster", hoster, int(asn), country))
            for key in keys:
                entry = sums.setdefault(key, [0, 0, 0, 0])
                entry[0] += int(pages)
                entry[1] += int(images)
                entry[2] |= int.from_bytes(nodes or b"", "little")
                entry[3] += int(covered)
    return {
        key: CoverageSums(
            pages_fetched=pages,
            images_hashed=images,
            matches=covered_matches.get(key, 0),
            nodes=bits.bit_count(),
            rows=covered,
        )
        for key, (pages, images, bits, covered) in sums.items()
    }
