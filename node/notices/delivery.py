"""Sending notices: plan a round (resolve the contact, pick channels), deliver, retry.

Channels: e-mail through the operator's SMTP relay (smtplib in a thread; STARTTLS, implicit
TLS or, for lab relays only, none; the password comes from a file) and webhooks (httpx POST of
the JSON batch, HMAC-signed, see xarf.sign_webhook). A webhook URL comes from the operator table
but is still checked like any destination the node reaches: it goes through node.net's pinned
client, so in production it must resolve to public addresses only and use https; in lab mode
only the lab's loopback hosts and ports.

A failed delivery is recorded (attempts, last error) and retried with exponential back-off
(retry_minutes * 2^(attempts-1), at most a day); after max_attempts it is marked failed and
audited, and stays listed until an operator retries it: never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.config import NoticeSettings, SmtpSettings
from node.contacts.model import AbuseContact, HosterIdentity
from node.models import ListEntry
from node.net import make_client
from node.notices import xarf
from node.notices.models import (
    APPROVED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SENT,
    SENT,
    Notice,
    NoticeDelivery,
    NoticeRound,
    NoticeUrl,
)
from protocol.lab import LabNetwork

MAX_BACKOFF = timedelta(days=1)
SMTP = "smtp"
WEBHOOK = "webhook"


class DeliveryError(Exception):
    """One delivery attempt failed (the message says why; it is recorded and retried)."""


class SecretFileError(DeliveryError):
    """A secret file that cannot be used as it is (missing, unreadable, empty, not text)."""


def read_secret_file(path: Path | None, what: str) -> bytes:
    """The secret in ``path``: its text without the surrounding whitespace (an editor's final
    newline is not part of a key), as UTF-8 bytes.

    The file must hold text. A binary key would be cut wherever it happens to begin or end
    with a whitespace byte, and the hoster's desk, holding the whole key, would refuse every
    notice; so a file that is not UTF-8 or holds control characters is refused instead, with
    a message saying how to make a good one. Hosters check signatures with the same bytes.
    """
    if path is None:
        raise SecretFileError(f"{what} is not configured")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = None
    if text is None or any(unicodedata.category(c) == "Cc" for c in text):
        raise SecretFileError(
            f"{what} {path} is not text: write the key as text, for example "
            f"`openssl rand -hex 32 > {path}`, and give the hoster the same text"
        )
    if not text:
        raise SecretFileError(f"{what} {path} is empty")
    return text.encode("utf-8")


class Channels:
    """The node's ways of sending: SMTP relay and webhook client (one per notices run)."""

    def __init__(
        self,
        settings: NoticeSettings,
        lab: LabNetwork | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.lab = lab
        if transport is not None:  # tests of the retry logic only
            self._client = httpx.AsyncClient(transport=transport, trust_env=False)
        else:
            self._client = make_client(
                lab, timeout=settings.webhook_timeout_s, user_agent="LIBRA-node-notices/0.1"
            )

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def smtp_ready(self) -> bool:
        return self.settings.smtp.host is not None

    @property
    def webhook_ready(self) -> bool:
        return self.settings.webhook_secret_file is not None

    def webhook_key_problem(self) -> str | None:
        """Why the webhook key file cannot sign (a round is then held, not sent unsigned or
        refused by the hoster over and over); None when it can."""
        try:
            read_secret_file(self.settings.webhook_secret_file, "webhook_secret_file")
        except SecretFileError as exc:
            return str(exc)
        return None

    def webhook_problem(self, url: str) -> str | None:
        """Why ``url`` is not an acceptable webhook (scheme rules); None when it is."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            return f"webhook {url!r} is not a URL"
        wanted = "http" if self.lab is not None else "https"
        if parsed.scheme != wanted:
            mode = "lab mode" if self.lab is not None else "production"
            return f"webhook {url!r}: {mode} needs {wanted}://"
        return None

    async def send_email(self, message: EmailMessage, recipients: list[str]) -> None:
        smtp = self.settings.smtp
        password: str | None = None
        if smtp.username is not None:
            password = read_secret_file(smtp.password_file, "smtp.password_file").decode()
        try:
            await asyncio.to_thread(_smtp_send, smtp, password, message, recipients)
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}"
            ) from exc

    async def send_webhook(self, url: str, body: bytes) -> None:
        problem = self.webhook_problem(url)
        if problem:
            raise DeliveryError(problem)
        secret = read_secret_file(self.settings.webhook_secret_file, "webhook_secret_file")
        last = "no attempt"
        for attempt in range(self.settings.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                xarf.TIMESTAMP_HEADER: str(stamp),
                xarf.SIGNATURE_HEADER: xarf.sign_webhook(secret, body, stamp),
            }
            try:
                response = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= response.status_code < 300:
                return
            last = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refused it: asking again now would not help
        raise DeliveryError(f"webhook {url}: {last}")


def _smtp_send(
    smtp: SmtpSettings, password: str | None, message: EmailMessage, recipients: list[str]
) -> None:
    assert smtp.host is not None
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if smtp.security == "tls":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_s, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    with client:
        if smtp.security == "starttls":
            client.starttls(context=context)
        if smtp.username is not None and password is not None:
            client.login(smtp.username, password)
        refused = client.send_message(message, from_addr=smtp.from_address, to_addrs=recipients)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)


# --------------------------------------------------------------------------- planning


def party_of(settings: NoticeSettings) -> xarf.Party | None:
    if not (settings.reporter_org and settings.reporter_contact and settings.reporter_domain):
        return None
    return xarf.Party(settings.reporter_org, settings.reporter_contact, settings.reporter_domain)


@dataclass(frozen=True)
class PlanTarget:
    """A notice that needs a new round, and the URLs the round names."""

    notice_id: int
    round_number: int
    identity: HosterIdentity
    ip: str | None
    domain: str | None
    url_ids: list[int]
    escalation: bool = False


def _block(session: Session, notice: Notice, why: str, now: datetime) -> None:
    if notice.blocked != why:  # audit a new obstacle once, not on every run
        audit.record(
            session, "notice.blocked", subject=f"notice:{notice.id}", actor="notices", reason=why
        )
    notice.blocked = why
    session.add(notice)


def open_round(
    engine: Engine,
    settings: NoticeSettings,
    channels: Channels,
    target: PlanTarget,
    contact: AbuseContact,
    now: datetime,
) -> bool:
    """Create round ``target.round_number`` and its deliveries; False (and the notice marked
    blocked, with the reason) when no channel can carry it yet."""
    with Session(engine) as session, session.begin():
        notice = session.get(Notice, target.notice_id)
        assert notice is not None
        destinations: list[tuple[str, str]] = []
        problems: list[str] = []
        if party_of(settings) is None:
            problems.append("notices.reporter_org/contact/domain are not all set")
        elif target.escalation:
            if settings.escalation_email and channels.smtp_ready:
                destinations.append((SMTP, settings.escalation_email))
        else:
            if contact.emails:
                if channels.smtp_ready:
                    destinations.append((SMTP, ",".join(contact.emails)))
                else:
                    problems.append("the contact has e-mail only and notices.smtp.host is unset")
            if contact.webhook:
                problem = channels.webhook_problem(contact.webhook)
                if problem is None and not channels.webhook_ready:
                    problem = "the contact has a webhook and webhook_secret_file is unset"
                if problem is None:
                    problem = channels.webhook_key_problem()
                if problem is None:
                    destinations.append((WEBHOOK, contact.webhook))
                else:
                    problems.append(problem)
            if not contact.found:
                problems.append(f"no abuse contact ({contact.error or contact.source})")
        if not target.escalation and not destinations:
            _block(session, notice, "; ".join(problems) or "no channel", now)
            return False
        kind = "escalation" if target.escalation else "notice"
        if not target.escalation:
            session.add(
                NoticeRound(
                    notice_id=target.notice_id,
                    round=target.round_number,
                    created_at=now,
                    url_ids=json.dumps(target.url_ids),
                )
            )
            notice.blocked = None
            notice.contact_source, notice.contact_reference = contact.source, contact.reference
            session.add(notice)
        for channel, destination in destinations:
            session.add(
                NoticeDelivery(
                    notice_id=target.notice_id,
                    round=target.round_number,
                    kind=kind,
                    channel=channel,
                    destination=destination,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    return True


def first_round_targets(engine: Engine) -> list[PlanTarget]:
    """Approved notices whose first round has not been planned yet."""
    with Session(engine) as session:
        planned = select(NoticeRound.notice_id)
        notices = session.exec(
            select(Notice)
            .where(col(Notice.state) == APPROVED, col(Notice.id).not_in(planned))
            .order_by(col(Notice.id))
        ).all()
        targets = []
        for notice in notices:
            assert notice.id is not None
            urls = session.exec(
                select(NoticeUrl)
                .where(col(NoticeUrl.notice_id) == notice.id, col(NoticeUrl.removed_at).is_(None))
                .order_by(col(NoticeUrl.id))
            ).all()
            if not urls:
                continue
            targets.append(target_for(notice, list(urls), 1))
    return targets


def target_for(
    notice: Notice, urls: list[NoticeUrl], round_number: int, escalation: bool = False
) -> PlanTarget:
    assert notice.id is not None
    first = urls[0]
    host = xarf.url_host(first.url)
    return PlanTarget(
        notice_id=notice.id,
        round_number=round_number,
        identity=HosterIdentity(notice.country, notice.asn, notice.hoster),
        ip=first.server_ip,
        domain=host or None,
        url_ids=[u.id for u in urls if u.id is not None],
        escalation=escalation,
    )


# --------------------------------------------------------------------------- delivering


def _batch(session: Session, settings: NoticeSettings, delivery: NoticeDelivery) -> xarf.Batch:
    notice = session.get(Notice, delivery.notice_id)
    assert notice is not None and notice.id is not None
    round_row = session.exec(
        select(NoticeRound).where(
            col(NoticeRound.notice_id) == notice.id, col(NoticeRound.round) == delivery.round
        )
    ).one()
    ids = json.loads(round_row.url_ids)
    urls = session.exec(
        select(NoticeUrl).where(col(NoticeUrl.id).in_(ids)).order_by(col(NoticeUrl.id))
    ).all()
    party = party_of(settings)
    if party is None:
        raise DeliveryError("notices.reporter_org/contact/domain are not all set")
    reports = []
    for url in urls:
        value: str | None = None
        if settings.include_hashes:
            entry = session.get(ListEntry, url.entry_id)
            value = entry.value if entry is not None else None
        facts = xarf.UrlFacts(
            url=url.url,
            server_ip=url.server_ip,
            country=notice.country,
            asn=notice.asn,
            hoster=notice.hoster,
            seen_at=url.seen_at,
            verified_at=url.last_present_at or url.seen_at,
            classification=xarf.classification_of(url.category, settings.default_classification),
            hash_family=url.family,
            hash_value=value,
        )
        report = xarf.build_report(facts, party, notice_id=notice.id, round_number=delivery.round)
        problems = xarf.check(report)
        if problems:  # a bug or a bad setting: never send an invalid report
            raise DeliveryError("invalid XARF report: " + "; ".join(problems))
        reports.append(report)
    return xarf.Batch(
        notice_id=notice.id,
        round_number=delivery.round,
        hoster=notice.hoster,
        asn=notice.asn,
        country=notice.country,
        party=party,
        reports=reports,
        escalation=delivery.kind == "escalation",
    )


@dataclass
class DeliveryOutcome:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    # Why each delivery of this run that did not go through failed ("notice 3 round 1 over
    # webhook: ..."): a count alone leaves the operator to dig in the database.
    errors: list[str] = field(default_factory=list)


async def deliver_due(
    engine: Engine,
    settings: NoticeSettings,
    channels: Channels,
    now: datetime,
    clock: Callable[[], datetime] | None = None,
) -> DeliveryOutcome:
    """Attempt every pending delivery that is due at ``now``."""
    outcome = DeliveryOutcome()
    with Session(engine) as session:
        due = [
            d.id
            for d in session.exec(
                select(NoticeDelivery)
                .where(
                    col(NoticeDelivery.status) == DELIVERY_PENDING,
                    col(NoticeDelivery.next_attempt_at) <= now,
                )
                .order_by(col(NoticeDelivery.id))
            ).all()
            if d.id is not None
        ]
    for delivery_id in due:
        error: str | None = None
        with Session(engine) as session:
            delivery = session.get(NoticeDelivery, delivery_id)
            assert delivery is not None
            try:
                batch = _batch(session, settings, delivery)
            except DeliveryError as exc:
                batch, error = None, str(exc)
        if batch is not None:
            try:
                if delivery.channel == SMTP:
                    recipients = delivery.destination.split(",")
                    message = xarf.email_message(
                        batch, sender=settings.smtp.from_address, recipients=recipients
                    )
                    await channels.send_email(message, recipients)
                else:
                    await channels.send_webhook(delivery.destination, xarf.webhook_body(batch))
            except DeliveryError as exc:
                error = str(exc)
        at = clock() if clock is not None else now
        _record(engine, settings, delivery_id, error, at, outcome)
    return outcome


def _record(
    engine: Engine,
    settings: NoticeSettings,
    delivery_id: int,
    error: str | None,
    now: datetime,
    outcome: DeliveryOutcome,
) -> None:
    with Session(engine) as session, session.begin():
        delivery = session.get(NoticeDelivery, delivery_id)
        assert delivery is not None
        delivery.attempts += 1
        subject = f"notice:{delivery.notice_id}"
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = DELIVERY_SENT, now, None
            session.add(delivery)
            outcome.sent += 1
            audit.record(
                session,
                "notice.escalation_sent" if delivery.kind == "escalation" else "notice.send",
                subject=subject,
                actor="notices",
                reason=f"round {delivery.round} over {delivery.channel}",
                details={"destination": delivery.destination, "attempts": delivery.attempts},
            )
            if delivery.kind == "notice":
                _round_delivered(session, delivery, now)
            return
        delivery.last_error = error[:1000]
        outcome.errors.append(
            f"notice {delivery.notice_id} round {delivery.round} over {delivery.channel}: "
            f"{error[:300]}"
        )
        if delivery.attempts >= settings.max_attempts:
            delivery.status = DELIVERY_FAILED
            outcome.failed += 1
            audit.record(
                session,
                "notice.delivery_failed",
                subject=subject,
                actor="notices",
                reason=error[:500],
                details={"delivery": delivery_id, "attempts": delivery.attempts},
            )
        else:
            backoff = timedelta(minutes=settings.retry_minutes) * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = now + min(backoff, MAX_BACKOFF)
            outcome.retrying += 1
        session.add(delivery)


def _round_delivered(session: Session, delivery: NoticeDelivery, now: datetime) -> None:
    """The first successful delivery of a round counts the notice as sent (once per round)."""
    round_row = session.exec(
        select(NoticeRound).where(
            col(NoticeRound.notice_id) == delivery.notice_id,
            col(NoticeRound.round) == delivery.round,
        )
    ).one()
    if round_row.sent_at is not None:
        return
    round_row.sent_at = now
    session.add(round_row)
    notice = session.get(Notice, delivery.notice_id)
    assert notice is not None
    notice.notices_sent = max(notice.notices_sent, delivery.round)
    notice.last_sent_at = now
    if notice.first_sent_at is None:
        notice.first_sent_at = now
    if notice.state == APPROVED:
        notice.state = SENT
    session.add(notice)
    for url in session.exec(
        select(NoticeUrl).where(col(NoticeUrl.id).in_(json.loads(round_row.url_ids)))
    ).all():
        if url.first_notice_at is None:
            url.first_notice_at = now
            session.add(url)


def retry_failed(engine: Engine, notice_id: int, *, actor: str, now: datetime) -> int:
    """Put a notice's failed deliveries back in the queue (operator action, audited)."""
    with Session(engine) as session, session.begin():
        rows = session.exec(
            select(NoticeDelivery).where(
                col(NoticeDelivery.notice_id) == notice_id,
                col(NoticeDelivery.status) == DELIVERY_FAILED,
            )
        ).all()
        for row in rows:
            row.status, row.attempts, row.next_attempt_at = DELIVERY_PENDING, 0, now
            session.add(row)
        if rows:
            audit.record(
                session,
                "notice.retry",
                subject=f"notice:{notice_id}",
                actor=actor,
                details={"deliveries": len(rows)},
            )
    return len(rows)
