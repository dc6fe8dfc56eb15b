"""Timestamp window checks shared by every receiver of signed reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import StaleTimestamp


def check_fresh(
    created_at: datetime,
    now: datetime,
    max_age: timedelta,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> None:
    if created_at > now + max_future_skew:
        raise StaleTimestamp(f"created_at {created_at.isoformat()} is in the future")
    if now - created_at > max_age:
        raise StaleTimestamp(
            f"created_at {created_at.isoformat()} is older than the {max_age} window"
        )
