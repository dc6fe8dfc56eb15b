"""Roles, scopes and API tokens.

A token reads ``lbr_<token_id>_<secret>``. Only SHA-256(secret) is stored: a database leak
gives no usable token. The secret is 32 random bytes, so a plain hash (no slow KDF) suffices.
Tokens always expire; revocation is immediate.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from . import audit
from .errors import Forbidden, TokenError, Unauthenticated
from .models import ApiTokenRow
from .roles import ROLE_SCOPES, Role, Scope

__all__ = ["ROLE_SCOPES", "Role", "Scope"]  # re-exported: callers import them from here too


LAST_USED_GRANULARITY = timedelta(minutes=5)
TOKEN_RE = re.compile(r"^lbr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: from an API token, an OIDC bearer token, or anonymous access."""

    name: str
    role: Role
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    node_id: str | None = None

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"role {self.role.value} ({self.name}) lacks scope {scope.value}")

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse_scopes(role: Role, scopes: list[str] | None) -> frozenset[Scope]:
    """The role's scopes, or a subset of them; a scope outside the role is an error."""
    allowed = ROLE_SCOPES[role]
    if not scopes:
        return allowed
    chosen: set[Scope] = set()
    for text in scopes:
        try:
            scope = Scope(text)
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise TokenError(f"unknown scope {text!r} (known: {known})") from None
        if scope not in allowed:
            raise TokenError(f"scope {text} is not available to role {role.value}")
        chosen.add(scope)
    return frozenset(chosen)


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once, never stored
    row: ApiTokenRow


def create_token(
    session: Session,
    *,
    name: str,
    role: Role,
    now: datetime,
    ttl: timedelta,
    actor: str,
    scopes: list[str] | None = None,
    node_id: str | None = None,
    commit: bool = True,
) -> IssuedToken:
    if ttl <= timedelta(0):
        raise TokenError("a token's lifetime must be positive")
    if not name.strip() or len(name) > 200:
        raise TokenError("a token needs a name of 1-200 characters")
    if role == Role.NODE and node_id is None:
        raise TokenError("a node token must name its node (--node-id)")
    if role != Role.NODE and node_id is not None:
        raise TokenError("only node tokens are bound to a node")
    chosen = parse_scopes(role, scopes)
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiTokenRow(
        token_id=token_id,
        secret_sha256=_digest(secret),
        name=name.strip(),
        role=role.value,
        scopes=" ".join(sorted(s.value for s in chosen)),
        node_id=node_id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    audit.append(
        session,
        actor=actor,
        action="token.create",
        subject=token_id,
        now=now,
        details={"name": row.name, "role": row.role, "scopes": row.scopes, "node_id": node_id},
    )
    if commit:
        session.commit()
    return IssuedToken(token=f"lbr_{token_id}_{secret}", row=row)


def list_tokens(session: Session) -> list[ApiTokenRow]:
    return list(session.exec(select(ApiTokenRow).order_by(col(ApiTokenRow.created_at))))


def revoke_token(session: Session, token_id: str, *, now: datetime, actor: str) -> ApiTokenRow:
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise TokenError(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        audit.append(session, actor=actor, action="token.revoke", subject=token_id, now=now)
        session.commit()
    return row


def authenticate(session: Session, token: str, now: datetime) -> Principal:
    """Resolve an API token; every failure is the same 401 code with a specific message."""
    match = TOKEN_RE.match(token)
    if match is None:
        raise Unauthenticated("malformed API token")
    token_id, secret = match.groups()
    row = session.get(ApiTokenRow, token_id)
    # compare_digest: the secret check takes the same time however much of it matches.
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        raise Unauthenticated("unknown API token")
    if row.revoked_at is not None:
        raise Unauthenticated(f"API token {token_id} was revoked")
    if row.expires_at <= now:
        raise Unauthenticated(f"API token {token_id} expired at {row.expires_at.isoformat()}")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        # Coarse on purpose: one write per token per few minutes, not one per request.
        row.last_used_at = now
        session.add(row)
        session.commit()
    role = Role(row.role)
    scopes = frozenset(Scope(s) for s in row.scopes.split()) & ROLE_SCOPES[role]
    return Principal(name=f"token:{row.name}", role=role, scopes=scopes, node_id=row.node_id)


def anonymous(role: Role) -> Principal:
    return Principal(name="anonymous", role=role, scopes=ROLE_SCOPES[role])
