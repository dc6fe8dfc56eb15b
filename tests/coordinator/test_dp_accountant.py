"""coordinator.dp.accountant: budget per window of report periods, refusal beyond it, the same
query answered again for free with the same noise, and all of it surviving a restart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from coordinator.db import make_engine, new_session
from coordinator.dp.accountant import (
    BudgetPolicy,
    PrivacyBudgetExhausted,
    release,
    spent_on,
    windows_of,
)

from .conftest import NOW, Backend

WEEK = timedelta(days=7)
POLICY = BudgetPolicy(epsilon=1.0, budget=3.0, window=WEEK)
T0 = datetime(2026, 11, 19, tzinfo=UTC)  # a Thursday: epoch-aligned weeks start on Thursdays


def test_windows_of_periods() -> None:
    day = timedelta(days=1)
    assert windows_of([(T0, T0 + day)], WEEK) == [T0]
    assert windows_of([(T0 + 6 * day, T0 + 7 * day)], WEEK) == [T0]  # end is exclusive
    assert windows_of([(T0 + 6 * day, T0 + 8 * day)], WEEK) == [T0, T0 + WEEK]
    assert windows_of([(T0, T0 + day), (T0 + 2 * WEEK, T0 + 2 * WEEK + day)], WEEK) == [
        T0,
        T0 + 2 * WEEK,
    ]
    assert windows_of([], WEEK) == []


class Draws:
    """make_answer for the tests: counts how often noise was drawn."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f'{{"draw": {self.calls}}}'


def _release(
    engine: Engine,
    draws: Draws,
    query: str,
    digest: str = "d1",
    windows: list[datetime] | None = None,
    *,
    policy: BudgetPolicy = POLICY,
    now: datetime = NOW,
) -> str:
    with new_session(engine) as session:
        return release(
            session,
            view="picture",
            query={"q": query},
            data_digest=digest,
            windows=[T0] if windows is None else windows,
            policy=policy,
            now=now,
            make_answer=draws,
        )


def test_budget_is_spent_and_then_refused(engine: Engine) -> None:
    draws = Draws()
    answers = [_release(engine, draws, q) for q in ("a", "b", "c")]
    assert answers == ['{"draw": 1}', '{"draw": 2}', '{"draw": 3}']
    with new_session(engine) as session:
        assert spent_on(session, T0) == 3.0
    with pytest.raises(PrivacyBudgetExhausted, match="3 of 3") as refused:
        _release(engine, draws, "d")
    assert refused.value.code == "privacy_budget_exhausted" and refused.value.http_status == 429
    assert draws.calls == 3  # no noise drawn for a refused release
    # Another window of data has its own budget; a release over both is refused as a whole.
    assert _release(engine, draws, "d", windows=[T0 + WEEK]) == '{"draw": 4}'
    with pytest.raises(PrivacyBudgetExhausted):
        _release(engine, draws, "e", windows=[T0, T0 + 2 * WEEK])
    with new_session(engine) as session:
        assert spent_on(session, T0 + 2 * WEEK) == 0.0  # the refusal rolled back its spending
        assert spent_on(session, T0 + WEEK) == 1.0


def test_same_query_same_data_is_free_and_identical(engine: Engine) -> None:
    draws = Draws()
    first = _release(engine, draws, "a")
    for _ in range(10):  # averaging these would remove no noise: they are one draw
        assert _release(engine, draws, "a") == first
    assert draws.calls == 1
    with new_session(engine) as session:
        assert spent_on(session, T0) == 1.0
    # New data for the same query is a new release, and is charged.
    assert _release(engine, draws, "a", digest="d2") != first
    with new_session(engine) as session:
        assert spent_on(session, T0) == 2.0


def test_refresh_interval_reuses_the_newest_release(engine: Engine) -> None:
    policy = BudgetPolicy(epsilon=1.0, budget=3.0, window=WEEK, refresh=timedelta(hours=1))
    draws = Draws()
    first = _release(engine, draws, "a", policy=policy)
    # New reports arrived (another digest), but the last release is younger than an hour.
    soon = NOW + timedelta(minutes=59)
    assert _release(engine, draws, "a", digest="d2", policy=policy, now=soon) == first
    assert _release(engine, draws, "b", digest="d2", policy=policy, now=soon) != first
    later = NOW + timedelta(hours=1, seconds=1)
    fresh = _release(engine, draws, "a", digest="d2", policy=policy, now=later)
    assert fresh not in (first, '{"draw": 2}') and draws.calls == 3
    with new_session(engine) as session:
        assert spent_on(session, T0) == 3.0
    # The newest release is now the one reused; the old data's own release is still served.
    assert _release(engine, draws, "a", digest="d3", policy=policy, now=later) == fresh
    assert _release(engine, draws, "a", digest="d1", policy=policy, now=later) == first


def test_exhausted_budget_still_answers_stored_queries(engine: Engine) -> None:
    draws = Draws()
    answers = {q: _release(engine, draws, q) for q in ("a", "b", "c")}
    with pytest.raises(PrivacyBudgetExhausted):
        _release(engine, draws, "d")
    assert {q: _release(engine, draws, q) for q in answers} == answers


def test_budget_and_releases_survive_a_restart(backend: Backend) -> None:
    draws = Draws()
    first = _release(backend.engine, draws, "a")
    _release(backend.engine, draws, "b")
    backend.engine.dispose()
    restarted = make_engine(backend.url)  # a PostgreSQL URL carries its test schema
    try:
        again = Draws()
        assert _release(restarted, again, "a") == first and again.calls == 0
        _release(restarted, again, "c")
        with pytest.raises(PrivacyBudgetExhausted):
            _release(restarted, again, "d")
    finally:
        restarted.dispose()


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        BudgetPolicy(epsilon=0.0, budget=1.0, window=WEEK)
    with pytest.raises(ValueError, match="window"):
        BudgetPolicy(epsilon=1.0, budget=1.0, window=timedelta(0))
    with pytest.raises(ValueError, match="refresh"):
        BudgetPolicy(epsilon=1.0, budget=1.0, window=WEEK, refresh=timedelta(seconds=-1))


def test_concurrent_releases_cannot_overspend(backend: Backend) -> None:
    # SQLite has one writer at a time and the app queues releases behind its write lock;
    # PostgreSQL runs them at once, and the conditional UPDATE must hold the line.
    if backend.name == "sqlite":
        pytest.skip("the app serialises SQLite writers itself")
    draws = Draws()
    outcomes: list[str] = []

    def one(query: str) -> None:
        try:
            _release(backend.engine, draws, query)
            outcomes.append("released")
        except PrivacyBudgetExhausted:
            outcomes.append("refused")

    threads = [threading.Thread(target=one, args=(f"q{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["refused"] * 5 + ["released"] * 3
    with new_session(backend.engine) as session:
        assert spent_on(session, T0) == 3.0
