"""Removal statistics: what came of the nodes' notices, per hoster, across nodes and periods.

Counts add up across reports. Median and p90 time to removal come from the merged KLL sketches
(k = 200) of the rows that removed something; a hoster with a single such row shows that
node's own exact figures instead (sketch or not), and a hoster whose several rows do not all
carry a sketch has no merged figure (null): the quantiles of a mix cannot be computed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from datasketches import kll_floats_sketch
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from protocol.models import UtcDatetime

from .hoster_filter import HosterFilter
from .models import RemovalRow, ReportRow
from .views import SuppressionPolicy

KLL_K = 200
_STREAM_BATCH = 2000

REMOVAL_COLUMNS = (
    "country",
    "asn",
    "hoster",
    "notices_sent",
    "urls_noticed",
    "removed",
    "removed_within_24h",
    "removed_within_72h",
    "share_removed_24h",
    "share_removed_72h",
    "median_seconds",
    "p90_seconds",
    "nodes",
)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class RemovalPeriod(_Out):
    start: UtcDatetime | None
    end: UtcDatetime | None


class RemovalStats(_Out):
    country: str
    asn: int
    hoster: str
    notices_sent: int
    urls_noticed: int
    removed: int
    removed_within_24h: int
    removed_within_72h: int
    share_removed_24h: float | None  # of the removed URLs; null when nothing was removed
    share_removed_72h: float | None
    median_seconds: int | None
    p90_seconds: int | None
    nodes: int  # contributing nodes (how many, never which)


class Removals(_Out):
    generated_at: UtcDatetime
    period: RemovalPeriod
    tier: Literal["full", "viewer"] = "full"
    rows: list[RemovalStats]
    suppressed: int  # rows withheld by small-cell suppression (viewer tier)


@dataclass
class _Group:
    notices_sent: int = 0
    urls_noticed: int = 0
    removed: int = 0
    within_24h: int = 0
    within_72h: int = 0
    nodes: set[str] = field(default_factory=set)
    # Rows that removed something: (median, p90, sketch bytes or None).
    timed: list[tuple[int, int, bytes | None]] = field(default_factory=list)

    def quantiles(self) -> tuple[int | None, int | None]:
        if not self.timed:
            return None, None
        if len(self.timed) == 1:
            median, p90, _ = self.timed[0]
            return median, p90
        if any(sketch is None for _, _, sketch in self.timed):
            return None, None
        merged = kll_floats_sketch(KLL_K)
        for _, _, sketch in self.timed:
            assert sketch is not None
            merged.merge(kll_floats_sketch.deserialize(sketch))
        return round(merged.get_quantile(0.5)), round(merged.get_quantile(0.9))


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def build_removals(
    session: Session,
    filters: HosterFilter,
    now: datetime,
    policy: SuppressionPolicy | None = None,
) -> Removals:
    """Removal statistics per (country, ASN, hoster); ``policy`` (viewer tier) withholds rows
    from fewer than ``min_nodes`` nodes or whose notices and removals are both below
    ``min_count``."""
    groups: dict[tuple[str, int, str], _Group] = {}
    # Core select: sqlmodel's typed select() stops at four columns.
    stream = (
        sa_select(
            col(RemovalRow.country),
            col(RemovalRow.asn),
            col(RemovalRow.hoster),
            col(ReportRow.node_id),
            col(RemovalRow.notices_sent),
            col(RemovalRow.urls_noticed),
            col(RemovalRow.removed),
            col(RemovalRow.removed_within_24h),
            col(RemovalRow.removed_within_72h),
            col(RemovalRow.median_seconds),
            col(RemovalRow.p90_seconds),
            col(RemovalRow.removal_sketch),
        )
        .join(ReportRow, col(ReportRow.report_id) == col(RemovalRow.report_id))
        .where(*filters.conditions(RemovalRow))
        .execution_options(yield_per=_STREAM_BATCH)
    )
    for row in session.execute(stream):
        (country, asn, hoster, node_id, sent, noticed, removed, w24, w72, median, p90, sketch) = row
        group = groups.setdefault((country, int(asn), hoster), _Group())
        group.notices_sent += int(sent)
        group.urls_noticed += int(noticed)
        group.removed += int(removed)
        group.within_24h += int(w24)
        group.within_72h += int(w72)
        group.nodes.add(node_id)
        if removed:
            # Ingest checked that every stored sketch decodes and holds `removed` times.
            raw = base64.b64decode(sketch) if sketch is not None else None
            group.timed.append((int(median), int(p90), raw))

    rows: list[RemovalStats] = []
    suppressed = 0
    for (country, asn, hoster), group in sorted(groups.items()):
        nodes = len(group.nodes)
        if policy is not None and policy.hides(max(group.notices_sent, group.removed), nodes):
            suppressed += 1
            continue
        median, p90 = group.quantiles()
        rows.append(
            RemovalStats(
                country=country,
                asn=asn,
                hoster=hoster,
                notices_sent=group.notices_sent,
                urls_noticed=group.urls_noticed,
                removed=group.removed,
                removed_within_24h=group.within_24h,
                removed_within_72h=group.within_72h,
                share_removed_24h=_share(group.within_24h, group.removed),
                share_removed_72h=_share(group.within_72h, group.removed),
                median_seconds=median,
                p90_seconds=p90,
                nodes=nodes,
            )
        )
    rows.sort(key=lambda r: (-r.notices_sent, r.country, r.asn, r.hoster))
    return Removals(
        generated_at=now,
        period=RemovalPeriod(start=filters.period_start, end=filters.period_end),
        tier="full" if policy is None else "viewer",
        rows=rows,
        suppressed=suppressed,
    )
