"""Node-initiated signing-key rotation.

The node sends one payload twice signed: ``announcement`` is a DSSE envelope signed with its
current key (who asks), ``proof`` the same payload signed with the new key (the node holds the
new private key, so nobody can register a key they do not own). The payload:

    {"node_id", "current_key_id", "new_public_key", "created_at", "overlap_seconds"|null}

canonical JSON, payload type ``KEY_ROTATION_PAYLOAD_TYPE``. The current key must be registered,
unrevoked and not yet replaced; ``created_at`` within ``MAX_AGE``. The new key is added as with
an admin rotation: the node's other keys stay valid for reports created before now + overlap
(the node's wish, at most the coordinator's ``key_overlap``). Repeating an accepted request
answers "unchanged", so a node may retry after a lost answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from nacl.signing import VerifyKey
from sqlmodel import Session

from protocol import KEY_ROTATION_PAYLOAD_TYPE
from protocol.dsse import parse_envelope, verify
from protocol.errors import (
    KeyMismatch,
    MalformedEnvelope,
    MalformedPayload,
    RevokedKey,
    UnknownKey,
)
from protocol.freshness import check_fresh
from protocol.keys import decode_public_key, key_id
from protocol.models import KeyRotation as RotationPayload
from protocol.models import check_canonical, parse_signed_payload, validate_payload
from protocol.strictjson import StrictJsonError, loads

from .errors import Conflict, ExpiredKey, NodeNotActive, RegistryError
from .models import NodeKeyRow, NodeRow, NodeStatus
from .rawbody import read_limited, require_json
from .registry import add_node

MAX_AGE = timedelta(minutes=15)
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_BODY_BYTES = 64 * 1024  # two envelopes of a few hundred bytes each


def parse_rotation_body(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"announcement": <envelope>, "proof": <envelope>}`` read by the strict parser (the
    same as for reports); any defect is malformed_envelope."""
    try:
        data = loads(raw)
    except StrictJsonError as exc:
        raise MalformedEnvelope(f"rotation request: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"announcement", "proof"}:
        raise MalformedEnvelope('a rotation request is {"announcement": ..., "proof": ...}')
    announcement, proof = data["announcement"], data["proof"]
    if not isinstance(announcement, dict) or not isinstance(proof, dict):
        raise MalformedEnvelope("announcement and proof must be DSSE envelopes (objects)")
    return announcement, proof


async def rotation_body(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """FastAPI dependency: the request's raw body, checked like a report's (415, 413, strict)."""
    require_json(request)
    return parse_rotation_body(await read_limited(request, MAX_BODY_BYTES))


@dataclass(frozen=True)
class Rotated:
    node_id: str
    key_id: str
    status: str  # "rotated" | "unchanged"
    previous_valid_until: datetime | None


def rotate_by_node(
    session: Session,
    announcement: dict[str, Any],
    proof: dict[str, Any],
    *,
    now: datetime,
    max_overlap: timedelta,
) -> Rotated:
    """Verify both signatures and register the new key; raises a ProtocolError if refused."""
    signed = parse_envelope(announcement)
    proved = parse_envelope(proof)
    current: dict[str, NodeKeyRow] = {}

    def current_key(kid: str) -> VerifyKey:
        row = session.get(NodeKeyRow, kid) if len(kid) == 64 else None
        if row is None:
            raise UnknownKey(f"key {kid} is not registered")
        if row.revoked_at is not None and row.revoked_at <= now:
            raise RevokedKey(f"key {kid} was revoked")
        if row.valid_until is not None and row.valid_until <= now:
            raise ExpiredKey(f"key {kid} was already replaced; sign with the current key")
        current[kid] = row
        return decode_public_key(row.public_key)

    signer, payload = verify(signed, KEY_ROTATION_PAYLOAD_TYPE, current_key)
    data = parse_signed_payload(payload)
    check_canonical(payload, data)
    request = validate_payload(RotationPayload, data, "key rotation")
    try:
        new_key = decode_public_key(request.new_public_key)
    except ValueError as exc:
        raise MalformedPayload(f"new_public_key: {exc}") from exc
    new_id = key_id(new_key)

    def new_key_only(kid: str) -> VerifyKey:
        if kid != new_id:
            raise KeyMismatch("the proof must be signed with the new key")
        return new_key

    _, proved_payload = verify(proved, KEY_ROTATION_PAYLOAD_TYPE, new_key_only)
    if proved_payload != payload:
        raise KeyMismatch("the proof signs a different payload than the announcement")
    row = current[signer]
    if request.current_key_id != signer or row.node_id != request.node_id:
        raise KeyMismatch(f"the signing key is not node {request.node_id}'s key {signer}")
    check_fresh(request.created_at, now, MAX_AGE, MAX_FUTURE_SKEW)
    node = session.get(NodeRow, request.node_id)
    if node is None or node.status != NodeStatus.ACTIVE:
        raise NodeNotActive(f"node {request.node_id} is not active")

    existing = session.get(NodeKeyRow, new_id)
    if existing is not None:
        if existing.node_id == request.node_id and existing.revoked_at is None:
            return Rotated(request.node_id, new_id, "unchanged", row.valid_until)
        raise Conflict(f"key {new_id} is already registered")
    wanted = (
        max_overlap
        if request.overlap_seconds is None
        else min(max_overlap, timedelta(seconds=request.overlap_seconds))
    )
    try:
        add_node(
            session,
            node_id=request.node_id,
            country=node.country,
            public_key_b64=request.new_public_key,
            now=now,
            overlap=wanted,
            actor=f"node:{request.node_id}",
        )
    except RegistryError as exc:  # a concurrent copy of this request won
        raise Conflict(str(exc)) from exc
    session.refresh(row)
    return Rotated(request.node_id, new_id, "rotated", row.valid_until)
