from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import Engine

from node.federation import outbox
from node.federation.reporter import queue_report
from protocol.keys import NodeKey
from protocol.models import Period
from tests.node.fake_coordinator import CoordinatorState, RunningCoordinator, free_port

FED_KEY = bytes(32)


def period(day: int) -> Period:
    return Period(
        start=datetime(2026, 3, day, tzinfo=UTC), end=datetime(2026, 3, day + 1, tzinfo=UTC)
    )


def queue(engine: Engine, key: NodeKey, day: int = 1) -> str:
    return queue_report(
        engine, node_id="node-a", key=key, federation_key=FED_KEY, period=period(day)
    ).report.report_id


async def test_unreachable_coordinator_keeps_report_until_next_run(engine: Engine) -> None:
    key = NodeKey.generate()
    first = queue(engine, key, 1)
    second = queue(engine, key, 2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    result = await outbox.flush(engine, url, timeout_s=2)
    assert result.pending == [first, second] and not result.delivered
    assert not result.all_delivered and result.last_error
    (item1, item2) = outbox.pending_items(engine)
    assert (item1.attempts, item2.attempts) == (1, 0)  # stopped at the first failure
    assert item1.last_error and "Connect" in item1.last_error

    state = CoordinatorState(keys={key.key_id: key.verify_key})
    with RunningCoordinator(state, port) as coordinator:
        result = await outbox.flush(engine, coordinator.url)
    assert result.delivered == [first, second] and result.all_delivered
    assert [r.sequence for r in state.received] == [1, 2]
    assert outbox.pending_items(engine, include_rejected=True) == []


async def test_5xx_keeps_report_and_duplicate_ack_deletes(engine: Engine) -> None:
    key = NodeKey.generate()
    report_id = queue(engine, key)
    state = CoordinatorState(keys={key.key_id: key.verify_key}, fail_with=503)
    port = free_port()
    with RunningCoordinator(state, port) as coordinator:
        result = await outbox.flush(engine, coordinator.url)
        assert result.pending == [report_id]
        assert "503 unavailable" in (result.last_error or "")
        state.fail_with = None
        # The coordinator stored it, but the node lost the ack: a resend is a duplicate.
        envelope = outbox.pending_items(engine)[0].envelope
        async with httpx.AsyncClient() as client:
            stored = await client.post(f"{coordinator.url}/v1/reports", content=envelope)
        assert stored.json()["status"] == "accepted"
        result = await outbox.flush(engine, coordinator.url)
    assert result.duplicates == [report_id] and result.all_delivered
    assert outbox.pending_items(engine, include_rejected=True) == []


async def test_4xx_is_kept_marked_and_reported(engine: Engine) -> None:
    key = NodeKey.generate()
    rejected_id = queue(engine, key, 1)
    state = CoordinatorState()  # key not registered: unknown_key (401)
    with RunningCoordinator(state, free_port()) as coordinator:
        result = await outbox.flush(engine, coordinator.url)
        assert result.pending == [] and result.delivered == []
        (rejection,) = result.rejected
        assert (rejection.report_id, rejection.http_status, rejection.code) == (
            rejected_id,
            401,
            "unknown_key",
        )
        # Kept, marked, and not re-sent by later flushes...
        (held,) = outbox.pending_items(engine, include_rejected=True)
        assert held.rejected_code == "unknown_key" and held.attempts == 1
        assert outbox.pending_items(engine) == []
        again = await outbox.flush(engine, coordinator.url)
        assert again.rejected == [] and again.delivered == []
        # ...until the operator fixed the cause and asked for a retry.
        state.keys[key.key_id] = key.verify_key
        assert outbox.retry_rejected(engine) == 1
        later = queue(engine, key, 2)
        final = await outbox.flush(engine, coordinator.url)
    assert final.delivered == [rejected_id, later]


def _mock(handler: object) -> httpx.MockTransport:
    return httpx.MockTransport(handler)  # type: ignore[arg-type]


async def test_mock_transport_outcomes(engine: Engine) -> None:
    key = NodeKey.generate()
    ids = [queue(engine, key, day) for day in (1, 2, 3)]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/reports"
        assert request.headers["content-type"] == "application/json"
        report_id = ids[len(seen)]
        seen.append(report_id)
        if report_id == ids[0]:
            return httpx.Response(
                409, json={"error": {"code": "sequence_regression", "message": "x"}}
            )
        if report_id == ids[1]:
            return httpx.Response(200, json={"report_id": report_id, "status": "accepted"})
        return httpx.Response(200, json={"report_id": "f" * 32, "status": "accepted"})

    result = await outbox.flush(engine, "http://coordinator.test", transport=_mock(handler))
    assert [r.code for r in result.rejected] == ["sequence_regression"]
    assert result.delivered == [ids[1]]
    # A 200 without a matching acknowledgement is not proof of delivery: kept for a retry.
    assert result.pending == [ids[2]]
    remaining = {i.report_id: i for i in outbox.pending_items(engine, include_rejected=True)}
    assert set(remaining) == {ids[0], ids[2]}
    assert remaining[ids[2]].rejected_code is None


async def test_429_and_non_json_errors_are_transient(engine: Engine) -> None:
    key = NodeKey.generate()
    report_id = queue(engine, key)

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, text="slow down")

    result = await outbox.flush(engine, "http://coordinator.test", transport=_mock(busy))
    assert result.pending == [report_id] and result.rejected == []
    assert "http_429" in (result.last_error or "")


async def test_a_transient_answer_keeps_the_coordinators_retry_after(engine: Engine) -> None:
    key = NodeKey.generate()
    report_id = queue(engine, key)

    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "30"}, json={})

    result = await outbox.flush(engine, "http://coordinator.test", transport=_mock(unavailable))
    assert result.pending == [report_id] and result.retry_after_s == 30.0

    def gone(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="no header")

    result = await outbox.flush(engine, "http://coordinator.test", transport=_mock(gone))
    assert result.pending == [report_id] and result.retry_after_s is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    def after(value: str) -> float | None:
        response = httpx.Response(503, headers={"Retry-After": value})
        return outbox.retry_after_seconds(response, now)

    assert after("120") == 120.0
    assert after("Sun, 01 Mar 2026 12:01:30 GMT") == 90.0
    assert after("Sun, 01 Mar 2026 11:00:00 GMT") == 0.0  # in the past: at once
    assert after("99999999999") == outbox.MAX_RETRY_AFTER_S
    assert after("soon") is None and after("-5") is None and after("") is None
