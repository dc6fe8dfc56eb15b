"""False-positive control of list entries (issue 14): count, flag, disable, enable.

A list entry that keeps matching images analysts rejected (a rejected candidate that matches
it, a held sighting of it they discarded, a match the negative list suppressed) gains
``EntryFlag.rejected_hits``; at ``flag_after_rejections`` it is flagged for review. An analyst
may then disable it: a disabled entry is never matched (node.matching.matcher.matchable, the
persisted index's stamp and the video index all leave it out) until it is enabled again.
Flagging, disabling and enabling are audited; the entry itself is never changed or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.discovery.models import EntryFlag
from node.lists.store import entry_details
from node.models import ListEntry
from protocol.models import utcnow

DEFAULT_FLAG_AFTER = 3  # DiscoverySettings.flag_after_rejections' default


class FlagError(ValueError):
    """A flag operation that cannot be done; ``code`` says why (not_found, wrong_state,
    reason_required), as the CLI and API report it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def record_rejected_hits(
    session: Session,
    hits: Mapping[int, int],
    *,
    flag_after: int = DEFAULT_FLAG_AFTER,
    actor: str,
    why: str,
    now: datetime | None = None,
) -> list[int]:
    """Add ``hits`` (entry id -> rejected images that matched it) inside the caller's
    transaction; flag (and audit) each entry that reaches ``flag_after``. Returns the ids
    flagged now."""
    moment = now or utcnow()
    flagged: list[int] = []
    for entry_id, count in sorted(hits.items()):
        if count <= 0 or session.get(ListEntry, entry_id) is None:
            continue
        row = session.get(EntryFlag, entry_id) or EntryFlag(entry_id=entry_id)
        row.rejected_hits += count
        if row.flagged_at is None and row.rejected_hits >= flag_after:
            row.flagged_at = moment
            flagged.append(entry_id)
            audit.record(
                session,
                "entry.flag",
                subject=f"list_entry:{entry_id}",
                reason=why,
                actor=actor,
                details={"rejected_hits": row.rejected_hits, "flag_after": flag_after},
            )
        session.add(row)
    return flagged


@dataclass(frozen=True)
class FlagRow:
    entry_id: int
    family: str | None
    source: str | None
    label: str | None
    category: str | None
    rejected_hits: int
    flagged_at: datetime | None
    disabled_at: datetime | None
    disabled_by: str | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "family": self.family,
            "source": self.source,
            "label": self.label,
            "category": self.category,
            "rejected_hits": self.rejected_hits,
            "flagged_at": self.flagged_at.isoformat() if self.flagged_at else None,
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "disabled_by": self.disabled_by,
            "reason": self.reason,
        }


def list_flags(engine: Engine, *, everything: bool = False) -> list[FlagRow]:
    """Flagged or disabled entries (``everything``: also those with any rejected hit), most
    rejected hits first. Never the entries' hash values."""
    query = select(EntryFlag)
    if not everything:
        query = query.where(
            (col(EntryFlag.flagged_at).is_not(None)) | (col(EntryFlag.disabled_at).is_not(None))
        )
    with Session(engine) as session:
        flags = list(
            session.exec(
                query.order_by(col(EntryFlag.rejected_hits).desc(), col(EntryFlag.entry_id))
            ).all()
        )
        families = dict(
            session.exec(
                select(ListEntry.id, ListEntry.family).where(
                    col(ListEntry.id).in_([f.entry_id for f in flags])
                )
            ).all()
        )
    details = entry_details(engine, [f.entry_id for f in flags])
    out = []
    for f in flags:
        d = details.get(f.entry_id, {})
        out.append(
            FlagRow(
                entry_id=f.entry_id,
                family=families.get(f.entry_id),
                source=_text(d.get("source")),
                label=_text(d.get("label")),
                category=_text(d.get("category")),
                rejected_hits=f.rejected_hits,
                flagged_at=f.flagged_at,
                disabled_at=f.disabled_at,
                disabled_by=f.disabled_by,
                reason=f.reason,
            )
        )
    return out


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _set_disabled(
    engine: Engine, entry_id: int, actor: str, reason: str, now: datetime | None, disable: bool
) -> EntryFlag:
    if not reason.strip():
        raise FlagError("reason_required", "disabling or enabling an entry needs a reason")
    with Session(engine) as session, session.begin():
        if session.get(ListEntry, entry_id) is None:
            raise FlagError("not_found", f"list entry {entry_id} does not exist")
        row = session.get(EntryFlag, entry_id, with_for_update=True) or EntryFlag(entry_id=entry_id)
        if disable and row.disabled_at is not None:
            raise FlagError("wrong_state", f"list entry {entry_id} is already disabled")
        if not disable and row.disabled_at is None:
            raise FlagError("wrong_state", f"list entry {entry_id} is not disabled")
        row.disabled_at = (now or utcnow()) if disable else None
        row.disabled_by = actor if disable else None
        row.reason = reason
        session.add(row)
        audit.record(
            session,
            "entry.disable" if disable else "entry.enable",
            subject=f"list_entry:{entry_id}",
            reason=reason,
            actor=actor,
            details={"rejected_hits": row.rejected_hits},
        )
        session.flush()
        session.expunge(row)
    return row


def disable(
    engine: Engine, entry_id: int, actor: str, reason: str, *, now: datetime | None = None
) -> EntryFlag:
    """Stop ``entry_id`` from matching (audited). The caller brings the persisted match
    index up to date (its stamp changed: node.matching.index.persist.apply_change)."""
    return _set_disabled(engine, entry_id, actor, reason, now, True)


def enable(
    engine: Engine, entry_id: int, actor: str, reason: str, *, now: datetime | None = None
) -> EntryFlag:
    """Let a disabled entry match again (audited); its hit count and flag stay."""
    return _set_disabled(engine, entry_id, actor, reason, now, False)


def entry_row(engine: Engine, entry_id: int) -> tuple[int, str, str] | None:
    """(id, family, value) of one live entry: what the persisted index adds back on enabling
    (None for an unknown or retired entry, which never matches anyway)."""
    with Session(engine) as session:
        entry = session.get(ListEntry, entry_id)
    if entry is None or entry.id is None or entry.retired:
        return None
    return (entry.id, entry.family, entry.value)
