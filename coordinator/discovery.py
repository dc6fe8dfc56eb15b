"""New material in the picture (issue 14): candidates found and verdicts given, across nodes.

Each accepted report may carry ``discovery`` rows (protocol HosterDiscovery): per (country, ASN,
hoster), the candidate images the node first found in the period beside known material, and the
candidates an analyst of its agency confirmed or rejected in it. They are counts only: the
coordinator never learns which image, where on the site or whose hash. They add up across
reports, nodes and periods like removal statistics (coordinator/removals.py), and are served
the same way: totals, per country, per hoster and per report period.

Viewer tier: a group from fewer than ``min_nodes`` nodes, or whose largest count is below
``min_count``, is withheld (counted in ``suppressed``), and the totals add up only the hoster
rows shown, so that a filter narrowed to one hoster cannot give a withheld row back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from protocol.models import UtcDatetime

from .hoster_filter import HosterFilter
from .models import DiscoveryRow, ReportRow
from .views import SuppressionPolicy

_STREAM_BATCH = 2000

DISCOVERY_COLUMNS = ("country", "asn", "hoster", "candidates", "confirmed", "rejected", "nodes")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DiscoveryPeriod(_Out):
    start: UtcDatetime | None
    end: UtcDatetime | None


class DiscoveryCounts(_Out):
    """Candidate images first found, and candidates confirmed or rejected by an analyst."""

    candidates: int
    confirmed: int
    rejected: int
    nodes: int  # contributing nodes (how many, never which)


class DiscoveryCountry(DiscoveryCounts):
    country: str


class DiscoveryHoster(DiscoveryCounts):
    country: str
    asn: int
    hoster: str


class DiscoveryByPeriod(_Out):
    period_start: UtcDatetime
    period_end: UtcDatetime
    candidates: int
    confirmed: int
    rejected: int


class DiscoverySuppressed(_Out):
    by_country: int
    by_hoster: int
    by_period: int


class Discovery(_Out):
    generated_at: UtcDatetime
    period: DiscoveryPeriod
    tier: Literal["full", "viewer"] = "full"
    totals: DiscoveryCounts
    by_country: list[DiscoveryCountry]
    rows: list[DiscoveryHoster]  # per (country, ASN, hoster), most candidates first
    by_period: list[DiscoveryByPeriod]
    suppressed: DiscoverySuppressed


@dataclass
class _Group:
    candidates: int = 0
    confirmed: int = 0
    rejected: int = 0
    nodes: set[str] = field(default_factory=set)

    def add(self, node_id: str, candidates: int, confirmed: int, rejected: int) -> None:
        self.candidates += candidates
        self.confirmed += confirmed
        self.rejected += rejected
        self.nodes.add(node_id)

    def merge(self, other: _Group) -> None:
        self.candidates += other.candidates
        self.confirmed += other.confirmed
        self.rejected += other.rejected
        self.nodes |= other.nodes

    def largest(self) -> int:
        return max(self.candidates, self.confirmed, self.rejected)


def build_discovery(
    session: Session,
    filters: HosterFilter,
    now: datetime,
    policy: SuppressionPolicy | None = None,
) -> Discovery:
    """The discovery counts for ``filters``; ``policy`` (viewer tier) withholds small groups."""
    total = _Group()
    countries: dict[str, _Group] = {}
    hosters: dict[tuple[str, int, str], _Group] = {}
    periods: dict[tuple[datetime, datetime], _Group] = {}
    stream = (
        sa_select(
            col(DiscoveryRow.country),
            col(DiscoveryRow.asn),
            col(DiscoveryRow.hoster),
            col(ReportRow.node_id),
            col(ReportRow.period_start),
            col(ReportRow.period_end),
            col(DiscoveryRow.candidates),
            col(DiscoveryRow.confirmed),
            col(DiscoveryRow.rejected),
        )
        .join(ReportRow, col(ReportRow.report_id) == col(DiscoveryRow.report_id))
        .where(*filters.conditions(DiscoveryRow))
        .execution_options(yield_per=_STREAM_BATCH)
    )
    for (
        country,
        asn,
        hoster,
        node_id,
        start,
        end,
        candidates,
        confirmed,
        rejected,
    ) in session.execute(stream):
        counts = (int(candidates), int(confirmed), int(rejected))
        total.add(node_id, *counts)
        countries.setdefault(country, _Group()).add(node_id, *counts)
        hosters.setdefault((country, int(asn), hoster), _Group()).add(node_id, *counts)
        periods.setdefault((start, end), _Group()).add(node_id, *counts)

    def hidden(group: _Group, nodes: bool = True) -> bool:
        return policy is not None and policy.hides(
            group.largest(), len(group.nodes) if nodes else None
        )

    by_country = [
        DiscoveryCountry(country=country, **_counts(group))
        for country, group in sorted(countries.items())
        if not hidden(group)
    ]
    shown = {key: group for key, group in hosters.items() if not hidden(group)}
    rows = [
        DiscoveryHoster(country=key[0], asn=key[1], hoster=key[2], **_counts(group))
        for key, group in shown.items()
    ]
    if policy is not None:
        # Viewer totals add up the rows shown: a narrow filter (one hoster, one ASN) must not
        # give a withheld row back as the total.
        total = _Group()
        for group in shown.values():
            total.merge(group)
    rows.sort(key=lambda r: (-r.candidates, -r.confirmed, r.country, r.asn, r.hoster))
    by_period = [
        DiscoveryByPeriod(
            period_start=key[0],
            period_end=key[1],
            candidates=group.candidates,
            confirmed=group.confirmed,
            rejected=group.rejected,
        )
        for key, group in sorted(periods.items())
        if not hidden(group, nodes=False)
    ]
    return Discovery(
        generated_at=now,
        period=DiscoveryPeriod(start=filters.period_start, end=filters.period_end),
        tier="full" if policy is None else "viewer",
        totals=DiscoveryCounts(**_counts(total)),
        by_country=by_country,
        rows=rows,
        by_period=by_period,
        suppressed=DiscoverySuppressed(
            by_country=len(countries) - len(by_country),
            by_hoster=len(hosters) - len(rows),
            by_period=len(periods) - len(by_period),
        ),
    )


def _counts(group: _Group) -> dict[str, int]:
    return {
        "candidates": group.candidates,
        "confirmed": group.confirmed,
        "rejected": group.rejected,
        "nodes": len(group.nodes),
    }
