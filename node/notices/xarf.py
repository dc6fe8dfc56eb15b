"""XARF v4 reports (``category: content``, ``type: csam``) and the messages that carry them.

Field names follow the XARF v4 JSON schemas (xarf-core.json, types/content-base.json,
types/content-csam.json, xarf_version 4.0.0): core ``xarf_version``, ``report_id`` (UUID v4),
``timestamp``, ``reporter``/``sender`` (``org``, ``contact``, ``domain``),
``source_identifier``, ``category``, ``type``; content ``url`` (required), ``domain``,
``verified_at``, ``verification_method``, ``hosting_provider``, ``asn``, ``country_code``;
csam ``classification`` and ``detection_method`` (required), ``media_type``, ``hash_values``,
``content_removed``. ``check`` validates a report against those rules before it is sent.

One report per URL; one message per hoster batch: an e-mail (a text part for people plus one
JSON attachment per URL, so ticket systems that parse XARF get one report per attachment) or
one webhook POST whose JSON body holds the array of reports. Never any image or evidence item:
the XARF ``evidence`` member is refused by ``check``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx

from protocol.models import UNKNOWN_ASN, UNKNOWN_COUNTRY, UNKNOWN_HOSTER

XARF_VERSION = "4.0.0"
CLASSIFICATIONS = ("baseline", "A1", "A2", "B1", "B2")
DETECTION_METHODS = ("hash_match", "ai_detection", "manual_review", "user_report", "automated_scan")
MEDIA_TYPES = ("image", "video", "audio", "text", "mixed")
VERIFICATION_METHODS = (
    "manual",
    "automated_crawler",
    "user_report",
    "honeypot",
    "threat_intelligence",
)
# hash_values members the schema names, with its patterns (others are allowed, unconstrained).
HASH_PATTERNS = {
    "md5": re.compile(r"^[a-fA-F0-9]{32}$"),
    "sha1": re.compile(r"^[a-fA-F0-9]{40}$"),
    "sha256": re.compile(r"^[a-fA-F0-9]{64}$"),
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
_TAG = re.compile(r"^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+.-]*$")
_CORE_REQUIRED = (
    "xarf_version",
    "report_id",
    "timestamp",
    "reporter",
    "sender",
    "source_identifier",
    "category",
    "type",
)
SIGNATURE_HEADER = "X-Libra-Signature"
TIMESTAMP_HEADER = "X-Libra-Timestamp"
# How far a receiver accepts a webhook's timestamp from its own clock (replays, clock skew).
WEBHOOK_MAX_AGE_S = 300.0


@dataclass(frozen=True)
class Party:
    """XARF contact_info: the reporting organisation (reporter and sender are the node's)."""

    org: str
    contact: str
    domain: str

    def to_json(self) -> dict[str, str]:
        return {"org": self.org, "contact": self.contact, "domain": self.domain}


@dataclass(frozen=True)
class UrlFacts:
    """What the node knows about one noticed URL (nothing about the image but its match)."""

    url: str
    server_ip: str | None
    country: str
    asn: int
    hoster: str
    seen_at: datetime
    verified_at: datetime  # last time the node saw it present
    classification: str
    hash_family: str
    hash_value: str | None  # the matched list entry's value; None unless policy allows


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def url_host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, TypeError):
        return ""


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def classification_of(category: str | None, default: str) -> str:
    """The list entry's category when it is an XARF classification itself, else ``default``."""
    if category:
        for value in CLASSIFICATIONS:
            if category.strip().lower() == value.lower():
                return value
    return default


def build_report(
    facts: UrlFacts,
    party: Party,
    *,
    notice_id: int,
    round_number: int,
    report_id: str | None = None,
) -> dict[str, Any]:
    """One XARF v4 content/csam report for one URL."""
    host = url_host(facts.url)
    report: dict[str, Any] = {
        "xarf_version": XARF_VERSION,
        "report_id": report_id or str(uuid.uuid4()),
        "timestamp": _iso(facts.seen_at),
        "reporter": party.to_json(),
        "sender": party.to_json(),
        "source_identifier": facts.server_ip or host,
        "category": "content",
        "type": "csam",
        "url": facts.url,
        "classification": facts.classification,
        "detection_method": "hash_match",
        "media_type": "image",
        "evidence_source": "crawler",
        "verified_at": _iso(facts.verified_at),
        "verification_method": "automated_crawler",
        "content_removed": False,
        "description": (
            f"An image at this URL matches a known child sexual abuse material hash list "
            f"entry ({facts.hash_family}). Notice {notice_id}, sent for the "
            f"{_ordinal(round_number)} time. No image is attached."
        ),
        "tags": [f"libra:notice-{notice_id}", f"libra:round-{round_number}"],
    }
    if host and not _is_ip(host):
        report["domain"] = host
    if facts.hoster != UNKNOWN_HOSTER:
        report["hosting_provider"] = facts.hoster
    if facts.asn != UNKNOWN_ASN:
        report["asn"] = facts.asn
    if facts.country != UNKNOWN_COUNTRY:
        report["country_code"] = facts.country
    if facts.hash_value is not None:
        report["hash_values"] = {facts.hash_family: facts.hash_value}
    return report


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date_time(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _check_party(name: str, value: Any, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{name} must be an object")
        return
    for key in ("org", "contact", "domain"):
        if not isinstance(value.get(key), str) or not value[key]:
            problems.append(f"{name}.{key} is required")
    extra = set(value) - {"org", "contact", "domain"}
    if extra:
        problems.append(f"{name} has unknown members {sorted(extra)}")
    if isinstance(value.get("org"), str) and len(value["org"]) > 200:
        problems.append(f"{name}.org is longer than 200 characters")
    if isinstance(value.get("contact"), str) and not _EMAIL.match(value["contact"]):
        problems.append(f"{name}.contact is not an e-mail address")
    if isinstance(value.get("domain"), str) and not _HOSTNAME.match(value["domain"]):
        problems.append(f"{name}.domain is not a host name")


def check(report: dict[str, Any]) -> list[str]:
    """Problems of ``report`` against the XARF v4 content/csam schema rules (empty = valid)."""
    problems: list[str] = []
    for key in _CORE_REQUIRED:
        if key not in report:
            problems.append(f"{key} is required")
    version = report.get("xarf_version")
    if not isinstance(version, str) or not re.match(r"^4\.[0-9]+\.[0-9]+$", version):
        problems.append("xarf_version must look like 4.x.y")
    try:
        uuid.UUID(str(report.get("report_id")))
    except ValueError:
        problems.append("report_id must be a UUID")
    if not _date_time(report.get("timestamp")):
        problems.append("timestamp must be an ISO 8601 date-time with a zone")
    _check_party("reporter", report.get("reporter"), problems)
    _check_party("sender", report.get("sender"), problems)
    if not isinstance(report.get("source_identifier"), str) or not report["source_identifier"]:
        problems.append("source_identifier must be a non-empty string")
    if report.get("category") != "content":
        problems.append("category must be 'content'")
    if report.get("type") != "csam":
        problems.append("type must be 'csam'")
    url = report.get("url")
    if not isinstance(url, str) or not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url):
        problems.append("url is required and must be a URI")
    if report.get("classification") not in CLASSIFICATIONS:
        problems.append(f"classification must be one of {CLASSIFICATIONS}")
    if report.get("detection_method") not in DETECTION_METHODS:
        problems.append(f"detection_method must be one of {DETECTION_METHODS}")
    if "media_type" in report and report["media_type"] not in MEDIA_TYPES:
        problems.append(f"media_type must be one of {MEDIA_TYPES}")
    if "verification_method" in report and report["verification_method"] not in (
        VERIFICATION_METHODS
    ):
        problems.append(f"verification_method must be one of {VERIFICATION_METHODS}")
    if "verified_at" in report and not _date_time(report["verified_at"]):
        problems.append("verified_at must be a date-time")
    if "domain" in report and not _HOSTNAME.match(str(report["domain"])):
        problems.append("domain must be a host name")
    if "asn" in report and not (
        isinstance(report["asn"], int) and 1 <= report["asn"] <= 4294967295
    ):
        problems.append("asn must be an integer in 1..4294967295")
    if "country_code" in report and not re.match(r"^[A-Z]{2}$", str(report["country_code"])):
        problems.append("country_code must be ISO 3166-1 alpha-2")
    if "description" in report and len(str(report["description"])) > 1000:
        problems.append("description is longer than 1000 characters")
    for tag in report.get("tags", []):
        if not isinstance(tag, str) or not _TAG.match(tag):
            problems.append(f"tag {tag!r} is not namespace:predicate")
    hashes = report.get("hash_values", {})
    if not isinstance(hashes, dict):
        problems.append("hash_values must be an object")
    else:
        for family, pattern in HASH_PATTERNS.items():
            if family in hashes and not pattern.match(str(hashes[family])):
                problems.append(f"hash_values.{family} does not match the schema's pattern")
    if "content_removed" in report and not isinstance(report["content_removed"], bool):
        problems.append("content_removed must be a boolean")
    # Our own rule on top of the schema: a notice never carries evidence (no image, ever).
    if "evidence" in report:
        problems.append("evidence is never sent: notices carry no image")
    return problems


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Batch:
    """Everything one message to one hoster says."""

    notice_id: int
    round_number: int
    hoster: str
    asn: int
    country: str
    party: Party
    reports: list[dict[str, Any]]
    escalation: bool = False


def _summary_text(batch: Batch) -> str:
    where = f"{batch.hoster} (AS{batch.asn}, {batch.country})"
    lines = [
        f"This is an automated abuse notice from {batch.party.org} ({batch.party.domain}).",
        "",
        f"The {len(batch.reports)} URL(s) below, served from your network {where}, serve "
        "images whose hashes match entries of a known child sexual abuse material (CSAM) "
        "hash list. Please remove the material and preserve any records your law requires.",
        "",
    ]
    if batch.escalation:
        lines[0:0] = [
            f"ESCALATION: notice {batch.notice_id} to {where} was sent {batch.round_number} "
            "time(s) and the material is still online.",
            "",
        ]
    elif batch.round_number > 1:
        lines.append(
            f"This is notice number {batch.round_number} about this material: it was still "
            "online when we checked again."
        )
        lines.append("")
    lines += [f"  {report['url']}" for report in batch.reports]
    lines += [
        "",
        "No image is attached to this message and none will be sent. Each URL has a "
        "machine-readable XARF v4 report (category content, type csam) attached as JSON.",
        "",
        f"Notice reference: {batch.notice_id}/{batch.round_number}",
        f"Contact: {batch.party.contact}",
    ]
    return "\n".join(lines) + "\n"


def email_message(batch: Batch, *, sender: str, recipients: list[str]) -> EmailMessage:
    """multipart/mixed: a text/plain part, then one application/json XARF report per URL."""
    message = EmailMessage()
    prefix = "[LIBRA escalation]" if batch.escalation else "[LIBRA abuse notice]"
    message["Subject"] = (
        f"{prefix} {len(batch.reports)} URL(s) on {batch.hoster} "
        f"(notice {batch.notice_id}, #{batch.round_number})"
    )
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=batch.party.domain or None)
    message.set_content(_summary_text(batch))
    for n, report in enumerate(batch.reports, start=1):
        message.add_attachment(
            json.dumps(report, indent=2, sort_keys=True).encode("utf-8"),
            maintype="application",
            subtype="json",
            filename=f"xarf-{batch.notice_id}-{batch.round_number}-{n}.json",
        )
    return message


def webhook_body(batch: Batch) -> bytes:
    body = {
        "notice_id": batch.notice_id,
        "round": batch.round_number,
        "escalation": batch.escalation,
        "hoster": batch.hoster,
        "reports": batch.reports,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_webhook(secret: bytes, body: bytes, timestamp: int) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``: the receiver checks it and
    refuses stale timestamps, so a captured POST cannot be replayed later."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    secret: bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    max_age_s: float | None = WEBHOOK_MAX_AGE_S,
    now: float | None = None,
) -> bool:
    """The receiver's side of ``sign_webhook`` (used by tests and documented for hosters):
    the signature must match and, unless ``max_age_s`` is None, the timestamp must be within
    ``max_age_s`` of ``now`` (default: the current time), so a captured POST cannot be
    replayed later."""
    try:
        stamp = int(timestamp)
        expected = sign_webhook(secret, body, stamp)
    except ValueError:
        return False
    if max_age_s is not None:
        current = time.time() if now is None else now
        if abs(current - stamp) > max_age_s:
            return False
    return hmac.compare_digest(expected, signature)
