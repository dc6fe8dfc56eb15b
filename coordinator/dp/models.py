"""The privacy accountant's tables: stored releases and the budget spent per data window.

Registered on the coordinator's own registry (``CoordinatorModel``) by one import line in
coordinator/db.py; created by migration 0008.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Text
from sqlmodel import Field

from ..db import UTCDateTime
from ..models import CoordinatorModel


class DpReleaseRow(CoordinatorModel, table=True):
    """One noisy release: the same query on the same data is answered from here, free.

    ``key`` is the SHA-256 (hex) of the canonical query and the digest of the reports it
    counted; ``answer`` the released JSON exactly as first served (asking again must not draw
    fresh noise, or averaging the answers would remove it)."""

    __tablename__ = "dp_releases"

    key: str = Field(primary_key=True, max_length=64)
    # SHA-256 of the query alone: its newest release is reused within the refresh interval.
    query_key: str = Field(max_length=64, index=True)
    view: str = Field(max_length=32)
    query: str = Field(sa_type=Text)  # canonical JSON of the view and its filters
    epsilon_micro: int = Field(sa_type=BigInteger)  # epsilon spent, in millionths
    windows: int = Field(sa_type=BigInteger)  # how many budget windows it was charged to
    answer: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class DpBudgetRow(CoordinatorModel, table=True):
    """Epsilon spent (millionths: integer sums never drift) on one window of report periods."""

    __tablename__ = "dp_budget"

    window_start: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    spent_micro: int = Field(default=0, sa_type=BigInteger)
    releases: int = Field(default=0, sa_type=BigInteger)
