"""The node's append-only audit log: who did what, when and why.

Any component records events here (list imports and removals, key rotations, ...). The API
only appends and reads; on SQLite and PostgreSQL a trigger also refuses UPDATE and DELETE, so
the log cannot be edited through the database either.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, Text, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from node.models import UtcDateTime, _now


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=_now, sa_type=UtcDateTime, index=True)
    actor: str
    action: str = Field(index=True)  # dotted verb, e.g. "list.import"
    subject: str = ""  # what it concerns, e.g. "list_version:3"
    reason: str = ""
    details: str = Field(default="{}", sa_type=Text)  # JSON object


_APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event "
        "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
        "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    ],
}
for _dialect, _statements in _APPEND_ONLY.items():
    for _sql in _statements:
        event.listen(
            AuditEvent.__table__,  # type: ignore[attr-defined]
            "after_create",
            DDL(_sql).execute_if(dialect=_dialect),  # type: ignore[no-untyped-call]
        )


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    reason: str
    details: dict[str, Any]


def record(
    session: Session,
    action: str,
    *,
    subject: str = "",
    reason: str = "",
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an event inside the caller's transaction (it commits or rolls back with it)."""
    session.add(
        AuditEvent(
            actor=actor or default_actor(),
            action=action,
            subject=subject,
            reason=reason,
            details=json.dumps(details or {}, sort_keys=True, default=str),
        )
    )


def log(engine: Engine, action: str, **kwargs: Any) -> None:
    """Append an event in its own transaction."""
    with Session(engine) as session, session.begin():
        record(session, action, **kwargs)


def entries(engine: Engine, action_prefix: str = "", limit: int = 100) -> list[Entry]:
    """The most recent events (newest first), optionally of one kind of action."""
    with Session(engine) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
        if action_prefix:
            query = query.where(col(AuditEvent.action).startswith(action_prefix))
        rows = session.exec(query).all()
    return [
        Entry(r.id or 0, r.at, r.actor, r.action, r.subject, r.reason, json.loads(r.details))
        for r in rows
    ]
