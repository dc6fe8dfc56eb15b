"""The PSI relay's rules: who may create, answer, post to and read a session.

* Only the two named nodes can see a session; to anyone else it does not exist (404).
* Every offer, consent and step message is a DSSE envelope verified with a registered,
  unrevoked key of the node it names as its sender; that node must also be the caller (its
  node token). The coordinator checks the envelopes' shape and bounds, never their content.
* Step messages are accepted only after the responder's signed ``accept``; each side posts
  each step once (the same envelope again is "unchanged", a different one a conflict).
* An expired session is deleted with its messages whenever the relay is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nacl.signing import VerifyKey
from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from protocol.dsse import Envelope
from protocol.errors import KeyMismatch, RevokedKey, UnknownKey
from protocol.freshness import check_fresh
from protocol.keys import decode_public_key
from protocol.psi import (
    PsiConsent,
    PsiMessage,
    PsiOffer,
    open_message,
)

from ..errors import Conflict, ExpiredKey, Forbidden, InvalidRequest, NodeNotActive, NotFound
from ..models import NodeKeyRow, NodeRow, NodeStatus
from .models import PsiMessageRow, PsiSessionRow

MAX_AGE = timedelta(minutes=15)  # a signed PSI message is posted right after it is made
OFFERED, ACCEPTED, DECLINED = "offered", "accepted", "declined"


def purge_expired(session: Session, now: datetime) -> None:
    expired = select(PsiSessionRow.session_id).where(col(PsiSessionRow.expires_at) <= now)
    session.execute(delete(PsiMessageRow).where(col(PsiMessageRow.session_id).in_(expired)))
    session.execute(delete(PsiSessionRow).where(col(PsiSessionRow.expires_at) <= now))
    session.commit()


def key_resolver(session: Session, node_id: str, now: datetime) -> Callable[[str], VerifyKey]:
    """Resolve a key id to a registered, unrevoked, not replaced key of ``node_id`` (an active
    node): a PSI message is signed when it is sent, so a rotated-out key no longer counts."""

    def resolve(keyid: str) -> VerifyKey:
        node = session.get(NodeRow, node_id)
        if node is None or node.status != NodeStatus.ACTIVE.value:
            raise NodeNotActive(f"node {node_id} is not an active member")
        row = session.get(NodeKeyRow, keyid)
        if row is None:
            raise UnknownKey(f"key {keyid} is not registered")
        if row.node_id != node_id:
            raise KeyMismatch(f"key {keyid} is not a key of {node_id}")
        if row.revoked_at is not None and row.revoked_at <= now:
            raise RevokedKey(f"key {keyid} is revoked")
        if row.valid_until is not None and row.valid_until <= now:
            raise ExpiredKey(f"key {keyid} was replaced by a newer key")
        return decode_public_key(row.public_key)

    return resolve


def _envelope_json(envelope: Envelope) -> str:
    return json.dumps(envelope.to_json(), sort_keys=True, separators=(",", ":"))


def _active(session: Session, node_id: str, role: str) -> None:
    node = session.get(NodeRow, node_id)
    if node is None or node.status != NodeStatus.ACTIVE.value:
        raise InvalidRequest(f"{role} {node_id} is not an active member")


@dataclass(frozen=True)
class Stored:
    row: PsiSessionRow
    status: str  # created | decided | unchanged | stored


def create_session(session: Session, raw: bytes, caller: str, now: datetime) -> Stored:
    """Store a signed offer made by ``caller`` (the initiator)."""
    offer, _, envelope = open_message(raw, PsiOffer, key_resolver(session, caller, now))
    if offer.initiator != caller:
        raise Forbidden(f"the offer names initiator {offer.initiator}, not the caller {caller}")
    check_fresh(offer.created_at, now, MAX_AGE)
    if offer.expiry <= now:
        raise InvalidRequest("the offer has already expired")
    _active(session, caller, "initiator")
    _active(session, offer.responder, "responder")
    text = _envelope_json(envelope)
    existing = session.get(PsiSessionRow, offer.session_id)
    if existing is not None:
        if existing.offer == text:
            return Stored(existing, "unchanged")
        raise Conflict(f"session {offer.session_id} exists with another offer")
    row = PsiSessionRow(
        session_id=offer.session_id,
        initiator=offer.initiator,
        responder=offer.responder,
        family=offer.family,
        status=OFFERED,
        offer=text,
        created_at=now,
        expires_at=offer.expiry,
    )
    session.add(row)
    session.commit()
    return Stored(row, "created")


def party_session(session: Session, session_id: str, node_id: str, now: datetime) -> PsiSessionRow:
    """The session, if ``node_id`` is one of its two nodes and it has not expired; otherwise
    it does not exist (a third node learns nothing, not even that the id is taken)."""
    row = session.get(PsiSessionRow, session_id)
    if row is None or row.expires_at <= now or node_id not in (row.initiator, row.responder):
        raise NotFound(f"no PSI session {session_id} for node {node_id}")
    return row


def sessions_for(
    session: Session, node_id: str, now: datetime, *, incoming: bool
) -> list[PsiSessionRow]:
    """``incoming``: offers addressed to the node awaiting its answer; else all its sessions."""
    query = select(PsiSessionRow).where(col(PsiSessionRow.expires_at) > now)
    if incoming:
        query = query.where(
            col(PsiSessionRow.responder) == node_id, col(PsiSessionRow.status) == OFFERED
        )
    else:
        query = query.where(
            or_(col(PsiSessionRow.initiator) == node_id, col(PsiSessionRow.responder) == node_id)
        )
    return list(session.exec(query.order_by(col(PsiSessionRow.created_at))))


def decide(session: Session, session_id: str, raw: bytes, caller: str, now: datetime) -> Stored:
    """Store the responder's signed accept or decline."""
    row = party_session(session, session_id, caller, now)
    if caller != row.responder:
        raise Forbidden("only the responder answers an offer")
    consent, _, envelope = open_message(raw, PsiConsent, key_resolver(session, caller, now))
    if consent.session_id != session_id or consent.node_id != caller:
        raise InvalidRequest("the consent names another session or node")
    check_fresh(consent.created_at, now, MAX_AGE)
    status = ACCEPTED if consent.decision == "accept" else DECLINED
    if row.status != OFFERED:
        if row.status == status:
            return Stored(row, "unchanged")
        raise Conflict(f"session {session_id} was already {row.status}")
    row.status, row.consent, row.decided_at = status, _envelope_json(envelope), now
    session.add(row)
    session.commit()
    return Stored(row, "decided")


def post_message(
    session: Session, session_id: str, raw: bytes, caller: str, now: datetime
) -> tuple[PsiMessageRow, str]:
    """Store one signed step message of ``caller``: (the row, "stored" | "unchanged")."""
    row = party_session(session, session_id, caller, now)
    if row.status != ACCEPTED:
        raise Conflict(
            f"session {session_id} is {row.status}: step messages need the responder's accept"
        )
    message, _, envelope = open_message(raw, PsiMessage, key_resolver(session, caller, now))
    if message.session_id != session_id or message.sender != caller:
        raise InvalidRequest("the message names another session or sender")
    check_fresh(message.created_at, now, MAX_AGE)
    text = _envelope_json(envelope)
    existing = session.get(PsiMessageRow, (session_id, caller, message.step))
    if existing is not None:
        if existing.envelope == text:
            return existing, "unchanged"
        raise Conflict(f"{caller} already posted its {message.step} for session {session_id}")
    stored = PsiMessageRow(
        session_id=session_id,
        sender=caller,
        step=message.step,
        envelope=text,
        body_bytes=len(message.body_bytes()),
        created_at=now,
    )
    session.add(stored)
    session.commit()
    return stored, "stored"


def messages_of(session: Session, session_id: str) -> list[PsiMessageRow]:
    return list(
        session.exec(
            select(PsiMessageRow)
            .where(PsiMessageRow.session_id == session_id)
            .order_by(col(PsiMessageRow.created_at), col(PsiMessageRow.sender))
        )
    )


def signing_keys(session: Session, envelopes: Iterable[str]) -> dict[str, str]:
    """key id -> public key (base64) of every key that signed one of these envelopes, so a
    node can check the other's signatures against the registry without another call."""
    keys: dict[str, str] = {}
    for text in envelopes:
        for signature in json.loads(text).get("signatures", []):
            keyid = signature.get("keyid")
            row = session.get(NodeKeyRow, keyid) if isinstance(keyid, str) else None
            if row is not None:
                keys[keyid] = row.public_key
    return keys
