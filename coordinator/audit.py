"""Hash-chained audit log of membership changes.

Each entry's hash covers its own fields and the previous entry's hash, so removing, reordering
or editing any entry breaks every hash after it; ``verify`` recomputes the whole chain.
Entries are appended in the caller's transaction: a change and its audit entry commit together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from protocol.canonical import canonical_json

from .models import AuditRow

GENESIS_HASH = "0" * 64


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: str,
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> AuditRow:
    """Add the next entry (not committed). A concurrent append loses on the seq primary key."""
    last = session.exec(select(AuditRow).order_by(col(AuditRow.seq).desc()).limit(1)).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_HASH if last is None else last.entry_hash
    # Microsecond-free UTC text keeps the hash identical after a database round trip.
    at = now.replace(microsecond=0)
    text = canonical_json(details or {}).decode("utf-8")
    fields: dict[str, Any] = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": text,
        "prev_hash": prev,
    }
    row = AuditRow(**fields, entry_hash=entry_hash(**fields))
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    ok: bool
    first_bad_seq: int | None = None
    reason: str | None = None
    head_hash: str = GENESIS_HASH


def verify(session: Session) -> ChainCheck:
    """Recompute the chain from the first entry; report the first entry that does not fit."""
    prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    for row in session.exec(select(AuditRow).order_by(col(AuditRow.seq))):
        count += 1
        if row.seq != expected_seq:
            return ChainCheck(count, False, row.seq, f"expected entry {expected_seq}", prev)
        if row.prev_hash != prev:
            return ChainCheck(count, False, row.seq, "prev_hash does not match", prev)
        recomputed = entry_hash(
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            subject=row.subject,
            details=row.details,
            prev_hash=row.prev_hash,
        )
        if recomputed != row.entry_hash:
            return ChainCheck(count, False, row.seq, "entry was modified", prev)
        prev = row.entry_hash
        expected_seq += 1
    return ChainCheck(count, True, head_hash=prev)


def entries(session: Session, *, after: int = 0, limit: int = 1000) -> list[AuditRow]:
    return list(
        session.exec(
            select(AuditRow)
            .where(col(AuditRow.seq) > after)
            .order_by(col(AuditRow.seq))
            .limit(limit)
        )
    )


def count(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(AuditRow)).one())


def details_of(row: AuditRow) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row.details)
    return data
