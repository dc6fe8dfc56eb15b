"""The privacy accountant: a budget of epsilon per window of report periods, and stored
releases so the same query on the same data is answered again for free, with the same noise.

Windows: report periods are cut into fixed windows of ``window`` length counted from the Unix
epoch. A release spends its epsilon on every window that any report it counted overlaps
(sequential composition on the data of that window); windows hold disjoint reports, so a
release over one week costs nothing in another (parallel composition). A release that would
take any of its windows past ``budget`` is refused with 429 ``privacy_budget_exhausted``;
new reports in later windows bring fresh budget, older windows stay spent.

Refresh interval: the same query asked again within ``refresh`` of its newest release gets
that release even if new reports arrived since (its ``generated_at`` says how old it is), so
a dashboard polling a picture while reports stream in spends at most one release per
interval instead of one per report.

Same query, same answer: without this, asking one query n times and averaging would shrink
the noise by sqrt(n) and no budget could stop it. The key of a release is the view, its
filters, epsilon and a digest of the reports it counted, so new data is a new release (and
is charged), while repeating a question is not.

The budget check and the spending are one conditional UPDATE per window inside the
release's transaction, so concurrent releases cannot overspend on either backend.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from protocol.errors import ProtocolError

from .models import DpBudgetRow, DpReleaseRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICRO = 1_000_000
_RETRIES = 3


class PrivacyBudgetExhausted(ProtocolError):
    """The release would spend more epsilon on a window of data than its budget allows."""

    code = "privacy_budget_exhausted"
    http_status = 429


@dataclass(frozen=True)
class BudgetPolicy:
    epsilon: float  # spent by each release
    budget: float  # total per window
    window: timedelta
    refresh: timedelta = timedelta(0)  # reuse a query's newest release this long

    def __post_init__(self) -> None:
        if not self.epsilon > 0 or not self.budget > 0:
            raise ValueError("epsilon and budget must be positive")
        if self.window <= timedelta(0):
            raise ValueError("the budget window must be a positive duration")
        if self.refresh < timedelta(0):
            raise ValueError("the refresh interval must not be negative")

    @property
    def epsilon_micro(self) -> int:
        return round(self.epsilon * MICRO)

    @property
    def budget_micro(self) -> int:
        return round(self.budget * MICRO)


def windows_of(spans: Iterable[tuple[datetime, datetime]], window: timedelta) -> list[datetime]:
    """The starts of the windows that the half-open periods [start, end) overlap, sorted."""
    found: set[int] = set()
    for start, end in spans:
        first = (start - EPOCH) // window
        last = max(end, start + timedelta(microseconds=1)) - timedelta(microseconds=1) - EPOCH
        found.update(range(first, last // window + 1))
    return [EPOCH + i * window for i in sorted(found)]


def release_key(view: str, query: dict[str, Any], data_digest: str) -> tuple[str, str, str]:
    """(key, query key, canonical query JSON) of a release."""
    canonical = json.dumps({"view": view, **query}, sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256(f"{canonical}\n{data_digest}".encode()).hexdigest()
    return key, hashlib.sha256(canonical.encode()).hexdigest(), canonical


def _recent_answer(session: Session, query_key: str, since: datetime) -> str | None:
    row = session.exec(
        select(DpReleaseRow)
        .where(col(DpReleaseRow.query_key) == query_key, col(DpReleaseRow.created_at) > since)
        .order_by(col(DpReleaseRow.created_at).desc())
        .limit(1)
    ).first()
    return None if row is None else row.answer


def stored_answer(session: Session, key: str) -> str | None:
    row = session.get(DpReleaseRow, key)
    return None if row is None else row.answer


def release(
    session: Session,
    *,
    view: str,
    query: dict[str, Any],
    data_digest: str,
    windows: list[datetime],
    policy: BudgetPolicy,
    now: datetime,
    make_answer: Callable[[], str],
) -> str:
    """The stored answer for this query and data, or a new one from ``make_answer`` (which
    draws the noise) paid for on every window in ``windows``; raise PrivacyBudgetExhausted
    when a window cannot pay. Commits the session."""
    key, query_key, canonical = release_key(view, {**query, "epsilon": policy.epsilon}, data_digest)
    for _ in range(_RETRIES):
        found = stored_answer(session, key)
        if found is None and policy.refresh > timedelta(0):
            found = _recent_answer(session, query_key, now - policy.refresh)
        if found is not None:
            return found
        try:
            answer = _spend_and_store(
                session, (key, query_key), view, canonical, windows, policy, now, make_answer
            )
        except IntegrityError:
            # A concurrent request stored the same release or opened the same window first:
            # everything here was rolled back; look again.
            session.rollback()
            continue
        return answer
    raise RuntimeError(f"release {key} could not be stored after {_RETRIES} attempts")


def _spend_and_store(
    session: Session,
    keys: tuple[str, str],
    view: str,
    canonical: str,
    windows: list[datetime],
    policy: BudgetPolicy,
    now: datetime,
    make_answer: Callable[[], str],
) -> str:
    cost = policy.epsilon_micro
    for start in windows:
        if session.get(DpBudgetRow, start) is None:
            session.add(DpBudgetRow(window_start=start, spent_micro=0, releases=0))
            session.flush()
    for start in windows:
        paid = session.exec(
            update(DpBudgetRow)
            .where(
                col(DpBudgetRow.window_start) == start,
                col(DpBudgetRow.spent_micro) + cost <= policy.budget_micro,
            )
            .values(
                spent_micro=col(DpBudgetRow.spent_micro) + cost,
                releases=col(DpBudgetRow.releases) + 1,
            )
        )
        if paid.rowcount != 1:
            session.rollback()
            spent = spent_on(session, start)
            raise PrivacyBudgetExhausted(
                f"the privacy budget of the data window starting {start.isoformat()} is spent "
                f"({spent:g} of {policy.budget:g}; this release needs {policy.epsilon:g}): "
                "ask a query already answered (it is free), or wait for newer data"
            )
    answer = make_answer()
    session.add(
        DpReleaseRow(
            key=keys[0],
            query_key=keys[1],
            view=view,
            query=canonical,
            epsilon_micro=cost,
            windows=len(windows),
            answer=answer,
            created_at=now,
        )
    )
    session.commit()
    return answer


def spent_on(session: Session, window_start: datetime) -> float:
    """Epsilon spent so far on the window starting at ``window_start``."""
    row = session.get(DpBudgetRow, window_start)
    return 0.0 if row is None else row.spent_micro / MICRO
