"""The filter of the per-hoster views that come with reports (removals, new material): period
bounds as in the picture (reports whose period starts at/after ``period_start`` and ends
at/before ``period_end``) plus an optional country, ASN and hoster (exact), and the query
parameters that set it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import ColumnElement
from sqlmodel import col

from .deps import checked_country, checked_period
from .models import ReportRow


@dataclass(frozen=True)
class HosterFilter:
    period_start: datetime | None = None
    period_end: datetime | None = None
    country: str | None = None
    asn: int | None = None
    hoster: str | None = None

    def conditions(self, rows: Any) -> list[ColumnElement[bool]]:
        """The WHERE terms on ``rows`` (a per-hoster table with country, asn and hoster
        columns) joined to its ReportRow."""
        where: list[ColumnElement[bool]] = []
        if self.period_start is not None:
            where.append(col(ReportRow.period_start) >= self.period_start)
        if self.period_end is not None:
            where.append(col(ReportRow.period_end) <= self.period_end)
        if self.country is not None:
            where.append(col(rows.country) == self.country)
        if self.asn is not None:
            where.append(col(rows.asn) == self.asn)
        if self.hoster is not None:
            where.append(col(rows.hoster) == self.hoster)
        return where


def hoster_filter(
    period_start: Annotated[
        datetime | None, Query(description="Reports whose period starts at/after this.")
    ] = None,
    period_end: Annotated[
        datetime | None, Query(description="Reports whose period ends at/before this.")
    ] = None,
    country: Annotated[
        str | None, Query(description="Only this country (ISO 3166 alpha-2).")
    ] = None,
    asn: Annotated[int | None, Query(ge=0, le=4294967295, description="Only this ASN.")] = None,
    hoster: Annotated[
        str | None, Query(max_length=200, description="Only this hoster (exact name).")
    ] = None,
) -> HosterFilter:
    start, end = checked_period(period_start, period_end)
    return HosterFilter(start, end, checked_country(country), asn, hoster)


HosterFilterDep = Annotated[HosterFilter, Depends(hoster_filter)]
