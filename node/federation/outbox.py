"""Store and forward: deliver queued report envelopes to the coordinator, oldest first.

- 200 with a ReportAck (``accepted`` or ``duplicate``): delivered, removed from the outbox.
- connection error, timeout, 5xx, 408 or 429: transient; the report stays queued with the
  attempt recorded and the flush stops (later reports would only fail the same way, and
  sending them first would make the older one a sequence regression). A ``Retry-After`` on the
  answer (seconds or an HTTP date) is kept in ``FlushResult.retry_after_s``: `libra node serve`
  flushes again then instead of waiting for its next report run (node/scheduler.py).
- any other 4xx: the coordinator refused this report. It stays in the outbox, marked rejected
  with the coordinator's error code, and is reported to the operator; the flush goes on with
  the next report. Rejected reports are not re-sent until the operator asks
  (``libra node outbox retry``). Nothing is ever dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import metrics as node_metrics
from node import telemetry
from node.federation.tlog_witness import record_delivery
from node.models import OutboxItem
from protocol.models import ErrorResponse, ReportAck

REPORTS_PATH = "/v1/reports"
TRANSIENT_4XX = frozenset({408, 425, 429})
MAX_RETRY_AFTER_S = 24 * 3600.0  # a longer wait is taken as a day: the hourly runs go on anyway


@dataclass(frozen=True)
class Rejection:
    report_id: str
    sequence: int
    http_status: int
    code: str
    message: str


@dataclass
class FlushResult:
    delivered: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # still queued, will be retried
    last_error: str | None = None
    retry_after_s: float | None = None  # the coordinator's Retry-After on the transient answer

    @property
    def all_delivered(self) -> bool:
        return not self.rejected and not self.pending


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = ErrorResponse.model_validate(response.json())
    except (ValueError, ValidationError):
        return f"http_{response.status_code}", response.text[:200]
    return body.error.code, body.error.message


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from now (RFC 9110: delay-seconds or an HTTP date), or None
    when absent or unreadable; bounded to [0, MAX_RETRY_AFTER_S]."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        seconds = float(int(raw[:12]))
    else:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def pending_items(engine: Engine, *, include_rejected: bool = False) -> list[OutboxItem]:
    with Session(engine) as session:
        query = select(OutboxItem).order_by(col(OutboxItem.sequence))
        if not include_rejected:
            query = query.where(col(OutboxItem.rejected_code).is_(None))
        return list(session.exec(query).all())


def _record(engine: Engine, item_id: int | None, error: str, rejected: str | None) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(OutboxItem, item_id)
        if row is not None:
            row.attempts += 1
            row.last_error = error
            row.rejected_code = rejected
            session.add(row)


def _delete(engine: Engine, item_id: int | None) -> None:
    with Session(engine) as session, session.begin():
        row = session.get(OutboxItem, item_id)
        if row is not None:
            # Issue 15: remember what the coordinator acknowledged, to find it in its log.
            record_delivery(session, row)
            session.delete(row)


async def flush(
    engine: Engine,
    coordinator_url: str,
    *,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FlushResult:
    """Send every queued (not rejected) envelope, oldest sequence first."""
    with telemetry.span("libra.node.outbox_flush"):  # issue 8: one span per flush
        return await _flush(engine, coordinator_url, timeout_s, transport)


async def _flush(
    engine: Engine,
    coordinator_url: str,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None,
) -> FlushResult:
    result = FlushResult()
    items = pending_items(engine)
    url = coordinator_url.rstrip("/") + REPORTS_PATH
    async with httpx.AsyncClient(
        timeout=timeout_s, transport=transport, follow_redirects=False
    ) as client:
        telemetry.instrument_client(client)  # traceparent to the coordinator only
        for index, item in enumerate(items):
            try:
                response = await client.post(
                    url,
                    content=item.envelope.encode("utf-8"),
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _record(engine, item.id, error, None)
                node_metrics.observe_delivery("transient")
                result.last_error = error
                result.pending.extend(i.report_id for i in items[index:])
                return result
            status = response.status_code
            if status == 200:
                try:
                    ack = ReportAck.model_validate(response.json())
                except (ValueError, ValidationError):
                    ack = None
                if ack is not None and ack.report_id == item.report_id:
                    _delete(engine, item.id)
                    target = result.duplicates if ack.status == "duplicate" else result.delivered
                    target.append(item.report_id)
                    node_metrics.observe_delivery(ack.status)
                    continue
                error = "coordinator answered 200 without a matching acknowledgement"
            elif 400 <= status < 500 and status not in TRANSIENT_4XX:
                code, message = _error_of(response)
                _record(engine, item.id, f"{status} {code}: {message}", code)
                result.rejected.append(
                    Rejection(item.report_id, item.sequence, status, code, message)
                )
                node_metrics.observe_delivery(code)
                continue
            else:
                code, message = _error_of(response)
                error = f"{status} {code}: {message}"
                result.retry_after_s = retry_after_seconds(response)
            # Transient: keep this and everything after it for the next run.
            _record(engine, item.id, error, None)
            node_metrics.observe_delivery("transient")
            result.last_error = error
            result.pending.extend(i.report_id for i in items[index:])
            return result
    return result


def retry_rejected(engine: Engine, report_id: str | None = None) -> int:
    """Clear the rejected mark (of one report, or all) so the next flush sends it again."""
    with Session(engine) as session, session.begin():
        query = select(OutboxItem).where(col(OutboxItem.rejected_code).is_not(None))
        if report_id is not None:
            query = query.where(OutboxItem.report_id == report_id)
        rows = list(session.exec(query).all())
        for row in rows:
            row.rejected_code = None
            session.add(row)
    return len(rows)


def envelope_of(item: OutboxItem) -> dict[str, object]:
    data: dict[str, object] = json.loads(item.envelope)
    return data
