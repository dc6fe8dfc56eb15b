"""The waterbed view (where matches fell and rose between two periods) in DP mode.

Made only from two noisy pictures, one per period, each its own release (the same one a
viewer gets asking for that period's picture, so asking for both costs nothing more):
the shift rows are post-processing and cost no further privacy. Crawl effort and prevalence
per row are not published, as in the noisy picture.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlmodel import Session

from protocol.hashes import Media, ReportFamily

from ..errors import InvalidRequest
from ..picture import PictureFilter, build_picture
from ..views import Direction, ShiftRow, Shifts
from .accountant import BudgetPolicy
from .release import DpPicture, Privacy, dp_picture


class DpShifts(Shifts):
    """Shifts between two noisy pictures, with their privacy label."""

    privacy: Privacy


def dp_shifts(
    session: Session,
    before: tuple[datetime, datetime],
    after: tuple[datetime, datetime],
    hash_family: ReportFamily | None,
    media: Media | None,
    policy: BudgetPolicy,
    now: datetime,
    write_lock: AbstractContextManager[Any],
) -> DpShifts:
    """Noisy shifts per country and hoster; PrivacyBudgetExhausted when either period's
    picture cannot be released."""
    length = before[1] - before[0]
    if length != after[1] - after[0]:
        raise InvalidRequest("the two periods differ in length: compare periods of equal length")
    pictures: list[DpPicture] = []
    for start, end in (before, after):
        filters = PictureFilter(start, end, hash_family, media=media)
        exact = build_picture(session, filters, now, write_lock=write_lock)
        with write_lock:
            pictures.append(dp_picture(session, exact, filters, policy, now))
    old, new = pictures
    countries = _rows(
        {(r.country,): r.matches for r in old.by_country},
        {(r.country,): r.matches for r in new.by_country},
    )
    hosters = _rows(
        {(r.country, r.hoster, r.asn): r.matches for r in old.by_hoster},
        {(r.country, r.hoster, r.asn): r.matches for r in new.by_hoster},
    )
    return DpShifts(
        generated_at=now,
        before_start=before[0],
        before_end=before[1],
        after_start=after[0],
        after_end=after[1],
        hash_family=hash_family,
        tier="viewer",
        by_country=countries,
        by_hoster=hosters,
        suppressed_rows=0,
        period_seconds=int(length.total_seconds()),
        media=media,
        privacy=new.privacy.model_copy(
            update={
                "releases": 2,
                "windows_charged": old.privacy.windows_charged + new.privacy.windows_charged,
            }
        ),
    )


def _rows(old: dict[tuple[Any, ...], int], new: dict[tuple[Any, ...], int]) -> list[ShiftRow]:
    rows = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, 0), new.get(key, 0)
        place: dict[str, Any] = {"country": key[0]}
        if len(key) == 3:
            place.update(hoster=key[1], asn=key[2])
        rows.append(
            ShiftRow(
                **place, matches_before=a, matches_after=b, delta=b - a, direction=_direction(a, b)
            )
        )
    return sorted(rows, key=lambda r: -abs(r.delta or 0))


def _direction(before: int, after: int) -> Direction:
    if before == 0 and after > 0:
        return "appeared"
    if after == 0 and before > 0:
        return "vanished"
    if after > before:
        return "rose"
    return "fell" if after < before else "unchanged"
