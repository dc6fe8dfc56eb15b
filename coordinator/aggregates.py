"""What a picture is computed from, before it is shaped: the filter and the aggregated
groups. Shared by the raw path (coordinator.picture) and the rollups (coordinator.rollups), so
that neither imports the other's internals and the two stay one-way: picture -> rollups ->
aggregates."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocol.hashes import Media, ReportFamily

from .distinct import DistinctCount

# Matches by how they were found, in the order of every per-method list.
METHODS = ("direct", "dihedral", "trimmed", "region", "unspecified")


@dataclass(frozen=True)
class PictureFilter:
    """period_start: reports whose period starts at or after it; period_end: reports whose
    period ends at or before it; hash_family, country, hoster (exact name), asn: only cells
    of that family / country / hoster / ASN; media: only cells of image or of video families
    (issue 13, protocol.hashes.media_of). Report, node and denominator counts cover every
    report in the period (they belong to reports, not cells)."""

    period_start: datetime | None = None
    period_end: datetime | None = None
    hash_family: ReportFamily | None = None
    country: str | None = None
    hoster: str | None = None
    asn: int | None = None
    media: Media | None = None


@dataclass(frozen=True)
class CoverageSums:
    """A group's coverage over the reports that carried it: pages and images from their
    coverage rows, ``matches`` of their cells (of the family filtered to), ``nodes`` that
    reported coverage there, ``rows`` coverage rows (reports, for the total)."""

    pages_fetched: int = 0
    images_hashed: int = 0
    matches: int = 0
    nodes: int = 0
    rows: int = 0


@dataclass
class Aggregates:
    """Everything a picture shows, before it is shaped: from raw cells or from rollups.

    Group values: country -> (matches, nodes, distinct); (hoster, asn, country) -> (matches,
    nodes, distinct); family -> (matches, distinct); (start, end) -> (matches, distinct).
    """

    reports: int = 0
    nodes: int = 0
    matches: int = 0
    distinct: int = 0
    pages_fetched: int = 0
    images_hashed: int = 0
    hosts_seen: int = 0
    by_country: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    by_hoster: dict[tuple[str, int, str], tuple[int, int, int]] = field(default_factory=dict)
    by_family: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_period: dict[tuple[datetime, datetime], tuple[int, int]] = field(default_factory=dict)
    # Matches per method, in METHODS order: overall, per country, per (hoster, asn, country).
    methods: list[int] = field(default_factory=lambda: [0] * len(METHODS))
    methods_by_country: dict[str, list[int]] = field(default_factory=dict)
    methods_by_hoster: dict[tuple[str, int, str], list[int]] = field(default_factory=dict)
    # Issue 16, keyed ("total",), ("country", c), ("hoster", h, asn, c), ("family", f),
    # ("period", start, end): each group's distinct count with its bounds; and the coverage
    # of the total, country and hoster groups (only those some covered report reached).
    distinct_counts: dict[Hashable, DistinctCount] = field(default_factory=dict)
    coverage: dict[tuple[Any, ...], CoverageSums] = field(default_factory=dict)
