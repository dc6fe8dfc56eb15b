"""Derived views of the picture: viewer-tier suppression, the waterbed (period shifts), CSV.

Suppression withholds whole rows whose match count is below ``min_count`` or that fewer than
``min_nodes`` nodes contributed to, so a viewer cannot single out one node's findings or a
near-unique item. Totals stay exact: they are already aggregated over every node.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from protocol.hashes import HashFamily
from protocol.models import UtcDatetime

from .picture import Picture, PictureFilter, Suppression


@dataclass(frozen=True)
class SuppressionPolicy:
    min_count: int = 0
    min_nodes: int = 1

    @property
    def active(self) -> bool:
        return self.min_count > 0 or self.min_nodes > 1

    def hides(self, matches: int, nodes: int | None) -> bool:
        return matches < self.min_count or (nodes is not None and nodes < self.min_nodes)


def for_viewer(picture: Picture, policy: SuppressionPolicy) -> Picture:
    """The viewer tier: small cells withheld and no per-node breakdown."""
    countries = [r for r in picture.by_country if not policy.hides(r.matches, r.nodes)]
    hosters = [r for r in picture.by_hoster if not policy.hides(r.matches, r.nodes)]
    families = [r for r in picture.by_family if not policy.hides(r.matches, None)]
    periods = [r for r in picture.by_period if not policy.hides(r.matches, None)]
    return picture.model_copy(
        update={
            "tier": "viewer",
            "by_country": countries,
            "by_hoster": hosters,
            "by_family": families,
            "by_period": periods,
            "by_node": None,
            "suppression": Suppression(
                min_count=policy.min_count,
                min_nodes=policy.min_nodes,
                by_country=len(picture.by_country) - len(countries),
                by_hoster=len(picture.by_hoster) - len(hosters),
                by_family=len(picture.by_family) - len(families),
                by_period=len(picture.by_period) - len(periods),
            ),
        }
    )


# --- waterbed view --------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# "withheld": one period's value is suppressed, so the direction would leak its size.
Direction = Literal["rose", "fell", "unchanged", "appeared", "vanished", "withheld"]


class ShiftRow(_Out):
    """One hoster (or country) in two periods. ``None`` = withheld by small-cell suppression."""

    country: str
    hoster: str | None = None
    asn: int | None = None
    matches_before: int | None
    matches_after: int | None
    delta: int | None
    direction: Direction


class Shifts(_Out):
    generated_at: UtcDatetime
    before_start: UtcDatetime
    before_end: UtcDatetime
    after_start: UtcDatetime
    after_end: UtcDatetime
    hash_family: HashFamily | None
    tier: Literal["full", "viewer"]
    by_country: list[ShiftRow]
    by_hoster: list[ShiftRow]
    suppressed_rows: int


def _direction(before: int, after: int) -> Direction:
    if before == 0 and after > 0:
        return "appeared"
    if after == 0 and before > 0:
        return "vanished"
    if after > before:
        return "rose"
    return "fell" if after < before else "unchanged"


def _counts(
    session: Session, filters: PictureFilter, by: Literal["country", "hoster"]
) -> dict[tuple[Any, ...], tuple[int, int]]:
    """{group: (matches, contributing nodes)} from the rollups: per country, or per
    (country, hoster, asn)."""
    from .rollups import aggregate_rollups

    agg = aggregate_rollups(session, filters)
    if by == "country":
        return {(country,): (m, n) for country, (m, n, _) in agg.by_country.items()}
    return {
        (country, hoster, asn): (m, n)
        for (hoster, asn, country), (m, n, _) in agg.by_hoster.items()
    }


def build_shifts(
    session: Session,
    before: tuple[datetime, datetime],
    after: tuple[datetime, datetime],
    hash_family: HashFamily | None,
    now: datetime,
    policy: SuppressionPolicy | None = None,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
) -> Shifts:
    """Where counts fell and where they rose between two periods, per hoster and country.

    ``policy`` (viewer tier) withholds each period's value that fails the thresholds; a row
    with both values withheld is dropped and counted in ``suppressed_rows``.
    """
    from .rollups import refresh_rollups

    refresh_rollups(session, write_lock=write_lock)
    f_before = PictureFilter(before[0], before[1], hash_family)
    f_after = PictureFilter(after[0], after[1], hash_family)
    suppressed = 0

    def rows(key: Literal["country", "hoster"], make: Any) -> list[ShiftRow]:
        nonlocal suppressed
        a, b = _counts(session, f_before, key), _counts(session, f_after, key)
        out: list[ShiftRow] = []
        for group in sorted(set(a) | set(b)):
            (ma, na), (mb, nb) = a.get(group, (0, 0)), b.get(group, (0, 0))
            shown_a: int | None = ma
            shown_b: int | None = mb
            if policy is not None:
                shown_a = None if ma and policy.hides(ma, na) else ma
                shown_b = None if mb and policy.hides(mb, nb) else mb
                # Nothing left to show: every non-zero value was withheld.
                if not shown_a and not shown_b and (shown_a is None or shown_b is None):
                    suppressed += 1
                    continue
            delta: int | None = None
            direction: Direction = "withheld"
            if shown_a is not None and shown_b is not None:
                delta, direction = shown_b - shown_a, _direction(ma, mb)
            out.append(make(group, shown_a, shown_b, delta, direction))
        return sorted(out, key=lambda r: (-(abs(r.delta) if r.delta is not None else -1),))

    by_country = rows(
        "country",
        lambda g, a, b, d, direction: ShiftRow(
            country=g[0], matches_before=a, matches_after=b, delta=d, direction=direction
        ),
    )
    by_hoster = rows(
        "hoster",
        lambda g, a, b, d, direction: ShiftRow(
            country=g[0],
            hoster=g[1],
            asn=int(g[2]),
            matches_before=a,
            matches_after=b,
            delta=d,
            direction=direction,
        ),
    )
    return Shifts(
        generated_at=now,
        before_start=before[0],
        before_end=before[1],
        after_start=after[0],
        after_end=after[1],
        hash_family=hash_family,
        tier="full" if policy is None else "viewer",
        by_country=by_country,
        by_hoster=by_hoster,
        suppressed_rows=suppressed,
    )


# --- CSV ------------------------------------------------------------------------------------

PictureSection = Literal["by_country", "by_hoster", "by_family", "by_period", "by_node"]


def rows_to_csv(rows: Sequence[BaseModel], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        data = row.model_dump(mode="json")
        writer.writerow(["" if data.get(c) is None else _safe_cell(data[c]) for c in columns])
    return buffer.getvalue()


def _safe_cell(value: Any) -> Any:
    # Hoster names come from the web: keep spreadsheets from running them as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


SECTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "by_country": ("country", "matches", "distinct", "nodes"),
    "by_hoster": ("hoster", "asn", "country", "matches", "distinct", "nodes"),
    "by_family": ("hash_family", "matches", "distinct"),
    "by_period": ("period_start", "period_end", "matches", "distinct"),
    "by_node": ("node_id", "country", "reports", "matches"),
}
SHIFT_COLUMNS = (
    "country",
    "hoster",
    "asn",
    "matches_before",
    "matches_after",
    "delta",
    "direction",
)


def picture_csv(picture: Picture, section: str) -> str:
    rows = getattr(picture, section) or []
    return rows_to_csv(rows, SECTION_COLUMNS[section])
