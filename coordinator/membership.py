"""Federating a new country: invitation -> enrollment -> approval, and the federation-key relay.

The invitation code reads ``inv_<invitation_id>_<secret>``; like API tokens only the secret's
SHA-256 is stored. Enrolling consumes the invitation (single use) and returns a node token,
which works for the relay at once and for everything else the node role allows; reports are
refused (node_not_active) until an admin approves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from protocol.keys import decode_public_key, encode_public_key, key_id

from . import audit
from .auth import IssuedToken, Role, create_token
from .errors import Conflict, InvalidInvitation, InvalidRequest, NotFound
from .models import InvitationRow, NodeKeyRow, NodeRow, NodeStatus, SealedKeyRow
from .registry import COUNTRY_RE, NODE_ID_RE

INVITE_RE = re.compile(r"^inv_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# A SealedBox of a 32-byte key is 80 bytes; leave room for a small framed key file.
MAX_SEALED_BYTES = 4096


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    code: str  # shown once
    row: InvitationRow


def create_invitation(
    session: Session,
    *,
    country: str,
    ttl: timedelta,
    now: datetime,
    actor: str,
    note: str | None = None,
) -> IssuedInvitation:
    country = country.strip().upper()
    if not COUNTRY_RE.match(country):
        raise InvalidRequest(f"country {country!r} must be an ISO 3166 alpha-2 code")
    if ttl <= timedelta(0):
        raise InvalidRequest("an invitation's lifetime must be positive")
    invitation_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = InvitationRow(
        invitation_id=invitation_id,
        secret_sha256=_digest(secret),
        country=country,
        note=note,
        created_by=actor,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    audit.append(
        session, actor=actor, action="invitation.create", subject=invitation_id, now=now,
        details={"country": country, "expires_at": row.expires_at.isoformat()},
    )  # fmt: skip
    session.commit()
    return IssuedInvitation(code=f"inv_{invitation_id}_{secret}", row=row)


def _x25519(text: str) -> str:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("x25519_public_key is not standard base64") from None
    if len(raw) != 32:
        raise InvalidRequest("x25519_public_key must be 32 bytes")
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Enrollment:
    node_id: str
    key_id: str
    status: str
    token: IssuedToken


def enroll(
    session: Session,
    *,
    invitation_code: str,
    node_id: str,
    country: str,
    operator: str,
    ed25519_public_key: str,
    x25519_public_key: str,
    now: datetime,
    token_ttl: timedelta,
) -> Enrollment:
    """Consume the invitation, create the node as pending with its keys, issue a node token."""
    match = INVITE_RE.match(invitation_code)
    if match is None:
        raise InvalidInvitation("malformed invitation code")
    invitation_id, secret = match.groups()
    invitation = session.get(InvitationRow, invitation_id)
    if invitation is None or not hmac.compare_digest(invitation.secret_sha256, _digest(secret)):
        raise InvalidInvitation("unknown invitation")
    if invitation.used_at is not None:
        raise InvalidInvitation("this invitation was already used")
    if invitation.expires_at <= now:
        raise InvalidInvitation(f"this invitation expired at {invitation.expires_at.isoformat()}")
    country = country.strip().upper()
    if country != invitation.country:
        raise InvalidInvitation(f"this invitation is for country {invitation.country}")
    if not NODE_ID_RE.match(node_id):
        raise InvalidRequest("node_id must be 2-63 chars of a-z, 0-9 and '-'")
    if not operator.strip() or len(operator) > 200:
        raise InvalidRequest("operator must be 1-200 characters")
    try:
        verify_key = decode_public_key(ed25519_public_key)
    except ValueError as exc:
        raise InvalidRequest(f"ed25519_public_key: {exc}") from exc
    x_key = _x25519(x25519_public_key)
    kid = key_id(verify_key)
    if session.get(NodeRow, node_id) is not None:
        raise Conflict(f"node id {node_id} is taken")
    if session.get(NodeKeyRow, kid) is not None:
        raise Conflict(f"key {kid} is already registered")

    invitation.used_at = now
    invitation.used_by_node = node_id
    session.add(invitation)
    session.add(
        NodeRow(
            node_id=node_id,
            country=country,
            operator=operator.strip(),
            created_at=now,
            status=NodeStatus.PENDING.value,
            x25519_public_key=x_key,
        )
    )
    session.flush()
    session.add(
        NodeKeyRow(
            key_id=kid, node_id=node_id, public_key=encode_public_key(verify_key), created_at=now
        )
    )
    audit.append(
        session, actor=f"invitation:{invitation_id}", action="node.enroll", subject=node_id,
        now=now, details={"country": country, "key_id": kid, "x25519": x_key},
    )  # fmt: skip
    token = create_token(
        session,
        name=f"node {node_id}",
        role=Role.NODE,
        node_id=node_id,
        now=now,
        ttl=token_ttl,
        actor=f"invitation:{invitation_id}",
        commit=False,
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("a concurrent enrollment used this invitation, node id or key") from None
    return Enrollment(node_id=node_id, key_id=kid, status=NodeStatus.PENDING.value, token=token)


def approve(session: Session, node_id: str, *, now: datetime, actor: str) -> NodeRow:
    node = session.get(NodeRow, node_id)
    if node is None:
        raise NotFound(f"no node with id {node_id}")
    if node.status != NodeStatus.PENDING:
        raise Conflict(f"node {node_id} is {node.status}, not pending")
    node.status = NodeStatus.ACTIVE.value
    node.approved_at = now
    session.add(node)
    audit.append(session, actor=actor, action="node.approve", subject=node_id, now=now)
    session.commit()
    return node


def revoke_invitation(
    session: Session, invitation_id: str, *, now: datetime, actor: str
) -> InvitationRow:
    """End an unused invitation now (it then reads as expired; enroll refuses it)."""
    row = session.get(InvitationRow, invitation_id)
    if row is None:
        raise NotFound(f"no invitation with id {invitation_id}")
    if row.used_at is not None:
        raise Conflict(f"invitation {invitation_id} was already used by {row.used_by_node}")
    if row.expires_at > now:
        row.expires_at = now
        session.add(row)
    audit.append(session, actor=actor, action="invitation.revoke", subject=invitation_id, now=now)
    session.commit()
    return row


def pending_invitations(session: Session) -> list[InvitationRow]:
    return list(session.exec(select(InvitationRow).order_by(col(InvitationRow.created_at))))


# --- federation-key relay -------------------------------------------------------------------


def members_needing_key(session: Session, sponsor: str) -> list[NodeRow]:
    """Active or pending nodes (not the sponsor) that hold no sealed key from this sponsor
    for their current X25519 key."""
    have = {
        (row.recipient_node, row.recipient_x25519)
        for row in session.exec(
            select(SealedKeyRow).where(col(SealedKeyRow.sponsor_node) == sponsor)
        )
    }
    return [
        node
        for node in session.exec(select(NodeRow).order_by(col(NodeRow.node_id)))
        if node.node_id != sponsor
        and node.status != NodeStatus.REVOKED
        and node.x25519_public_key is not None
        and (node.node_id, node.x25519_public_key) not in have
    ]


def post_sealed_key(
    session: Session,
    *,
    sponsor: str,
    recipient: str,
    recipient_x25519: str,
    sealed_b64: str,
    now: datetime,
) -> SealedKeyRow:
    """Store an opaque sealed blob for ``recipient``. The coordinator cannot open it: it never
    holds the recipient's X25519 private key."""
    sponsor_row = session.get(NodeRow, sponsor)
    if sponsor_row is None or sponsor_row.status != NodeStatus.ACTIVE:
        raise Conflict("only an active (approved) node can sponsor the federation key")
    node = session.get(NodeRow, recipient)
    if node is None or node.status == NodeStatus.REVOKED:
        raise NotFound(f"no enrolled node {recipient}")
    if node.x25519_public_key != recipient_x25519:
        raise Conflict(f"node {recipient}'s X25519 key has changed; fetch it again and re-seal")
    try:
        raw = base64.b64decode(sealed_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("sealed_key is not standard base64") from None
    if not 48 < len(raw) <= MAX_SEALED_BYTES:  # SealedBox adds 48 bytes of overhead
        raise InvalidRequest(f"sealed_key must be 49-{MAX_SEALED_BYTES} bytes")
    existing = session.exec(
        select(SealedKeyRow).where(
            col(SealedKeyRow.recipient_node) == recipient,
            col(SealedKeyRow.sponsor_node) == sponsor,
        )
    ).first()
    row = existing or SealedKeyRow(
        recipient_node=recipient,
        sponsor_node=sponsor,
        recipient_x25519=recipient_x25519,
        sealed_blob=sealed_b64,
        created_at=now,
    )
    row.recipient_x25519, row.sealed_blob, row.created_at = recipient_x25519, sealed_b64, now
    session.add(row)
    audit.append(
        session, actor=f"node:{sponsor}", action="federation_key.relay", subject=recipient,
        now=now, details={"sponsor": sponsor, "sealed_sha256": hashlib.sha256(raw).hexdigest()},
    )  # fmt: skip
    session.commit()
    return row


def sealed_keys_for(session: Session, recipient: str) -> list[SealedKeyRow]:
    node = session.get(NodeRow, recipient)
    if node is None:
        raise NotFound(f"no node with id {recipient}")
    return list(
        session.exec(
            select(SealedKeyRow)
            .where(
                col(SealedKeyRow.recipient_node) == recipient,
                col(SealedKeyRow.recipient_x25519) == node.x25519_public_key,
            )
            .order_by(col(SealedKeyRow.created_at))
        )
    )
