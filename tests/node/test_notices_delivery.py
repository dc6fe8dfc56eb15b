"""Delivery of notices: SMTP (aiosmtpd on 127.0.0.1) and webhooks (a local endpoint), retries
with back-off, failures kept and audited, webhook destination rules, blocked notices,
re-notice only after a conclusive re-check. No traffic leaves loopback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.config import NoticeSettings, SmtpSettings
from node.contacts.model import AbuseContact
from node.dispatch import AnalyzeFailure
from node.matching.matcher import MatchIndex
from node.models import ListEntry
from node.notices.delivery import Channels, retry_failed
from node.notices.models import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SENT,
    SENT,
    Notice,
    NoticeDelivery,
)
from node.notices.service import run_notices
from protocol.lab import LabNetwork
from protocol.models import HashResult
from tests.node.conftest import hash_result, image_hashes
from tests.node.fake_coordinator import free_port
from tests.node.notices_kit import FakeResolver, SmtpSink, WebhookSink, xarf_attachments
from tests.node.test_notices import T0, add_cycle

MAILBOX = "abuse@hoster-a.test"


class ScriptedFunction:
    """Answers re-checks from a per-URL script (a default for anything else)."""

    def __init__(self, default: HashResult | AnalyzeFailure | None = None) -> None:
        self.answers: dict[str, HashResult | AnalyzeFailure] = {}
        self.default = default
        self.calls: list[str] = []

    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure:
        self.calls.append(url)
        if url in self.answers:
            return self.answers[url]
        if self.default is not None:
            return self.default
        return AnalyzeFailure(url, "timeout", "scripted", 504)


def _policy(tmp_path: Path, smtp_port: int | None = None, **extra: Any) -> NoticeSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "require_approval": False,
        "reporter_org": "Lab Police Unit",
        "reporter_contact": "notices@police.test",
        "reporter_domain": "police.test",
        "retry_minutes": 10,
        "max_attempts": 3,
    }
    if smtp_port is not None:
        values["smtp"] = SmtpSettings(host="127.0.0.1", port=smtp_port, security="none")
    values.update(extra)
    return NoticeSettings(**values)


@pytest.fixture
async def channels_factory() -> AsyncIterator[Any]:
    made: list[Channels] = []

    def make(settings: NoticeSettings, lab: LabNetwork | None) -> Channels:
        channels = Channels(settings, lab)
        made.append(channels)
        return channels

    yield make
    for channels in made:
        await channels.aclose()


async def _tick(
    engine: Engine,
    settings: NoticeSettings,
    channels: Channels,
    resolver: FakeResolver,
    now: Any,
    function: ScriptedFunction | None = None,
) -> Any:
    return await run_notices(
        engine,
        settings,
        resolver=resolver,
        function=function or ScriptedFunction(),
        index=MatchIndex.from_db(engine),
        channels=channels,
        now=now,
    )


def _deliveries(engine: Engine) -> list[NoticeDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(NoticeDelivery).order_by(col(NoticeDelivery.id))).all())


def _mail_resolver() -> FakeResolver:
    return FakeResolver({"Hoster A": AbuseContact((MAILBOX,), None, "operator-table", "a")})


async def test_smtp_delivery_and_the_message(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(
        engine,
        [("http://a.test/1.png", "Hoster A", "A2"), ("http://a.test/2.png", "Hoster A", "A2")],
    )
    with SmtpSink() as smtp:
        settings = _policy(tmp_path, smtp.port)
        run = await _tick(engine, settings, channels_factory(settings, None), _mail_resolver(), T0)
        assert run.delivered.sent == 1
        [message] = smtp.to(MAILBOX)
    reports = xarf_attachments(message)
    assert sorted(r["url"] for r in reports) == ["http://a.test/1.png", "http://a.test/2.png"]
    assert {r["classification"] for r in reports} == {"A2"}
    assert message["From"] == settings.smtp.from_address
    assert "notice 1, #1" in message["Subject"]
    with Session(engine) as session:
        notice = session.exec(select(Notice)).one()
    assert notice.state == SENT and notice.first_sent_at == T0 and notice.notices_sent == 1
    assert notice.contact_source == "operator-table"
    [sent] = audit.entries(engine, "notice.send")
    assert sent.details["destination"] == MAILBOX


async def test_hash_values_only_when_policy_allows(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    with Session(engine) as session:
        value = session.exec(select(ListEntry.value)).one()
    with SmtpSink() as smtp:
        settings = _policy(tmp_path, smtp.port, include_hashes=True)
        await _tick(engine, settings, channels_factory(settings, None), _mail_resolver(), T0)
        [message] = smtp.to(MAILBOX)
    [report] = xarf_attachments(message)
    assert report["hash_values"] == {"sha256": value}


async def test_smtp_failures_are_retried_then_kept_as_failed(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    port = free_port()  # nothing listens here yet
    settings = _policy(tmp_path, port)
    channels = channels_factory(settings, None)
    resolver = _mail_resolver()
    run = await _tick(engine, settings, channels, resolver, T0)
    assert (run.delivered.sent, run.delivered.retrying) == (0, 1)
    [delivery] = _deliveries(engine)
    assert delivery.status == DELIVERY_PENDING and delivery.attempts == 1
    assert delivery.next_attempt_at == T0 + timedelta(minutes=10)
    assert "SMTP 127.0.0.1" in (delivery.last_error or "")
    # Not due yet: nothing is attempted.
    run = await _tick(engine, settings, channels, resolver, T0 + timedelta(minutes=5))
    assert run.delivered.retrying == 0 and _deliveries(engine)[0].attempts == 1
    run = await _tick(engine, settings, channels, resolver, T0 + timedelta(minutes=10))
    assert _deliveries(engine)[0].next_attempt_at == T0 + timedelta(minutes=30)  # doubled
    run = await _tick(engine, settings, channels, resolver, T0 + timedelta(minutes=30))
    assert run.delivered.failed == 1
    [delivery] = _deliveries(engine)
    assert delivery.status == DELIVERY_FAILED and delivery.attempts == 3
    [failed] = audit.entries(engine, "notice.delivery_failed")
    assert failed.subject == f"notice:{delivery.notice_id}"
    with Session(engine) as session:
        assert session.exec(select(Notice)).one().notices_sent == 0  # never counted as sent
    # The operator fixes the relay and retries.
    assert retry_failed(engine, delivery.notice_id, actor="ops", now=T0 + timedelta(hours=1)) == 1
    with SmtpSink() as smtp:
        relay = _policy(tmp_path, smtp.port)
        await _tick(engine, relay, channels_factory(relay, None), resolver, T0 + timedelta(hours=1))
        assert len(smtp.to(MAILBOX)) == 1
    assert _deliveries(engine)[0].status == DELIVERY_SENT


async def test_webhook_signed_retried_and_counted_once(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(engine, [("http://b.test/1.png", "Hoster B", None)])
    secret = b"s3cret"
    (tmp_path / "hook.key").write_bytes(secret + b"\n")
    with WebhookSink(secret) as hook:
        hook.fail_next = 1
        lab = LabNetwork(hosts={"hooks.b.test": "127.0.0.1"}, allow_ports=[hook.port])
        settings = _policy(tmp_path, webhook_secret_file=tmp_path / "hook.key", webhook_retries=0)
        channels = channels_factory(settings, lab)
        url = f"http://hooks.b.test:{hook.port}/xarf"
        resolver = FakeResolver({"Hoster B": AbuseContact((), url, "operator-table", "b")})
        run = await _tick(engine, settings, channels, resolver, T0)
        assert run.delivered.retrying == 1 and hook.received == []
        assert "HTTP 503" in (_deliveries(engine)[0].last_error or "")
        # The run says why, not only how many (the CLI prints these lines).
        [why] = run.delivered.errors
        assert why.startswith("notice 1 round 1 over webhook: ") and "HTTP 503" in why
        run = await _tick(engine, settings, channels, resolver, T0 + timedelta(minutes=10))
        assert run.delivered.sent == 1
        [received] = hook.received
        assert hook.rejected == 0
    assert received.address == "/xarf"
    assert received.payload["round"] == 1 and len(received.payload["reports"]) == 1
    with Session(engine) as session:
        notice = session.exec(select(Notice)).one()
    # Sent when the delivery succeeded, not when it was first tried.
    assert notice.first_sent_at == T0 + timedelta(minutes=10) and notice.notices_sent == 1


async def test_a_webhook_key_file_that_is_not_text_holds_the_notice(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    """Raw random bytes as a key: the node would cut any whitespace byte at either end and
    every notice would be refused by the hoster holding the whole key (the demo's desks did,
    one run in twenty). The notice is held with the reason instead, and goes out once the
    file holds text."""
    add_cycle(engine, [("http://b.test/1.png", "Hoster B", None)])
    key = tmp_path / "hook.key"
    key.write_bytes(b"\n\x8f\x00binary\xff key \t")
    with WebhookSink(b"hex-key-0123") as hook:
        lab = LabNetwork(hosts={"hooks.b.test": "127.0.0.1"}, allow_ports=[hook.port])
        settings = _policy(tmp_path, webhook_secret_file=key, webhook_retries=0)
        channels = channels_factory(settings, lab)
        url = f"http://hooks.b.test:{hook.port}/xarf"
        resolver = FakeResolver({"Hoster B": AbuseContact((), url, "operator-table", "b")})
        run = await _tick(engine, settings, channels, resolver, T0)
        assert run.blocked == 1 and _deliveries(engine) == [] and hook.received == []
        with Session(engine) as session:
            blocked = session.exec(select(Notice)).one().blocked or ""
        assert "webhook_secret_file" in blocked and "is not text" in blocked
        assert "openssl rand -hex 32" in blocked
        key.write_text("hex-key-0123\n", encoding="utf-8")  # the final newline is not key
        run = await _tick(engine, settings, channels, resolver, T0 + timedelta(minutes=1))
        assert run.delivered.sent == 1 and hook.rejected == 0 and len(hook.received) == 1


async def test_webhook_destination_rules_in_production(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    (tmp_path / "hook.key").write_bytes(b"k")
    settings = _policy(tmp_path, webhook_secret_file=tmp_path / "hook.key", webhook_retries=0)
    channels = channels_factory(settings, None)  # production: public https only
    add_cycle(engine, [("http://b.test/1.png", "Hoster B", None)])
    plain = FakeResolver({"Hoster B": AbuseContact((), "http://hooks.example/x", "rdap", "B")})
    run = await _tick(engine, settings, channels, plain, T0)
    assert run.blocked == 1 and _deliveries(engine) == []
    with Session(engine) as session:
        notice = session.exec(select(Notice)).one()
    assert "needs https://" in (notice.blocked or "")
    await _tick(engine, settings, channels, plain, T0 + timedelta(minutes=1))
    assert len(audit.entries(engine, "notice.blocked")) == 1  # a new obstacle is audited once

    loopback = FakeResolver(
        {"Hoster B": AbuseContact((), "https://127.0.0.1:9/x", "operator-table", "b")}
    )
    run = await _tick(engine, settings, channels, loopback, T0 + timedelta(minutes=2))
    assert run.rounds_opened == 1 and run.delivered.retrying == 1
    [delivery] = _deliveries(engine)
    assert "non-public address" in (delivery.last_error or ""), delivery.last_error


async def test_no_contact_blocks_until_one_is_known(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    with SmtpSink() as smtp:
        settings = _policy(tmp_path, smtp.port)
        channels = channels_factory(settings, None)
        nobody = FakeResolver({})
        run = await _tick(engine, settings, channels, nobody, T0)
        assert run.blocked == 1
        with Session(engine) as session:
            assert "no abuse contact" in (session.exec(select(Notice)).one().blocked or "")
        run = await _tick(engine, settings, channels, _mail_resolver(), T0 + timedelta(hours=1))
        assert run.delivered.sent == 1 and len(smtp.to(MAILBOX)) == 1
    with Session(engine) as session:
        notice = session.exec(select(Notice)).one()
    assert notice.blocked is None and notice.first_sent_at == T0 + timedelta(hours=1)


async def test_missing_reporter_settings_block_sending(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    settings = _policy(tmp_path, free_port(), reporter_org="")
    run = await _tick(engine, settings, channels_factory(settings, None), _mail_resolver(), T0)
    assert run.blocked == 1 and _deliveries(engine) == []


async def test_renotice_waits_for_a_conclusive_recheck(
    engine: Engine, tmp_path: Path, channels_factory: Any
) -> None:
    rng = random.Random(8)
    listed = image_hashes(rng)
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    with Session(engine) as session, session.begin():
        entry = session.exec(select(ListEntry)).one()
        entry.value = listed.sha256
        session.add(entry)
    with SmtpSink() as smtp:
        settings = _policy(tmp_path, smtp.port)
        channels = channels_factory(settings, None)
        resolver = _mail_resolver()
        await _tick(engine, settings, channels, resolver, T0)
        down = ScriptedFunction(AnalyzeFailure("u", "function_unreachable", "down", None))
        run = await _tick(engine, settings, channels, resolver, T0 + timedelta(days=1), down)
        assert run.rechecked.outcomes == {"inconclusive": 1} and run.rounds_opened == 0
        there = ScriptedFunction(hash_result("http://a.test/1.png", listed))
        run = await _tick(
            engine, settings, channels, resolver, T0 + timedelta(days=1, hours=1), there
        )
        assert run.rechecked.outcomes == {"present": 1} and run.rounds_opened == 1
        assert len(smtp.to(MAILBOX)) == 2
        assert there.calls == ["http://a.test/1.png"]
