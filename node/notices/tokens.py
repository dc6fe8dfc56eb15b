"""The analysts' bearer tokens, shared by the notices API and the candidate review API
(node/discovery/api.py): made by `libra node notices token-create NAME`, shown once, stored as
SHA-256 only; the token's name is the actor in the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.notices.models import NoticeApiToken
from protocol.models import utcnow

TOKEN_BYTES = 32


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, name: str, *, actor: str | None = None) -> str:
    """A new bearer token named ``name``; returns it (the only time it is ever seen)."""
    if not name.strip():
        raise ValueError("a token needs a name (it is the actor in the audit log)")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with Session(engine) as session, session.begin():
        session.add(NoticeApiToken(name=name.strip(), token_sha256=token_digest(token)))
        audit.record(session, "notice.api_token_create", subject=f"token:{name}", actor=actor)
    return token


def revoke_token(engine: Engine, name: str, *, actor: str | None = None) -> int:
    with Session(engine) as session, session.begin():
        rows = session.exec(
            select(NoticeApiToken).where(
                col(NoticeApiToken.name) == name, col(NoticeApiToken.revoked_at).is_(None)
            )
        ).all()
        for row in rows:
            row.revoked_at = utcnow()
            session.add(row)
        if rows:
            audit.record(session, "notice.api_token_revoke", subject=f"token:{name}", actor=actor)
    return len(rows)


def caller(request: Request) -> str:
    """The audit actor of a request: ``api:<token name>``; 401 without a valid token."""
    engine: Engine = request.app.state.engine
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing bearer token")
    with Session(engine) as session:
        row = session.exec(
            select(NoticeApiToken).where(
                col(NoticeApiToken.token_sha256) == token_digest(token.strip()),
                col(NoticeApiToken.revoked_at).is_(None),
            )
        ).first()
    if row is None:
        raise HTTPException(401, "unknown or revoked token")
    return f"api:{row.name}"


Caller = Annotated[str, Depends(caller)]
